// TunDevice against the kernel: a TUN inside a test namespace, pinged from that namespace.
import { strict as assert } from "node:assert";
import { type ChildProcess } from "node:child_process";
import { SlotFlag, Verdict, VNET_HDR_LEN } from "../../src/engine/abi.js";
import { TunDevice } from "../../src/io/index.js";
import { deleteAllNs, deleteNs, inNs, ip, makeNs, spawnInNs, stop, sysctl } from "../helpers/netns.js";
import { echoReply, layout, packet, parseIpv4, put, slot, udp4, waitFor } from "../helpers/batch.js";

const nsPath = (ns: string) => `/var/run/netns/${ns}`;

/** Starts `busybox ping` in ns; resolves to its exit code. */
function ping(ns: string, args: string[], started: ChildProcess[]): Promise<number> {
  const child = spawnInNs(ns, "busybox", ["ping", ...args]);
  started.push(child);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code ?? -1)));
}

/** Resolves at the next readiness callback of dev, then stops polling. */
function nextReadable(dev: TunDevice): Promise<void> {
  return new Promise((resolve, reject) => dev.onReadable((err) => {
    dev.stop();
    if (err) reject(err); else resolve();
  }));
}

describe("io: TUN device (integration, needs root)", function () {
  this.timeout(30000);
  let ns = "";
  const devices: TunDevice[] = [];
  const children: ChildProcess[] = [];

  before(() => {
    ns = makeNs("tun");
    // IPv6 would put router solicitations into the TUN; these tests look at IPv4 only.
    sysctl(ns, "net.ipv6.conf.all.disable_ipv6", 1);
    sysctl(ns, "net.ipv6.conf.default.disable_ipv6", 1);
  });
  afterEach(async () => {
    for (const c of children.splice(0)) await stop(c);
    for (const d of devices.splice(0)) d.close();
  });
  after(() => deleteAllNs());

  function open(name: string, up = true, ioUring = false, vnetHdr = false, where = ns): TunDevice {
    const dev = TunDevice.open({ name, ioUring, vnetHdr, netns: nsPath(where) });
    devices.push(dev);
    if (up) {
      ip(where, "addr", "add", "10.77.0.1/24", "dev", name);
      ip(where, "link", "set", name, "up");
    }
    return dev;
  }

  describe("errors name the thing, the errno and the fix", () => {
    it("a nonexistent namespace path gives ENOENT naming the path", () => {
      const path = `/var/run/netns/wasp-t-${process.pid}-missing`;
      assert.throws(() => TunDevice.open({ name: "wt0", netns: path }), (e: Error & { code?: string }) => {
        assert.equal(e.code, "ENOENT");
        assert.equal(e.message, `cannot enter network namespace ${path}: no such file (ENOENT). ` +
          `Create it (ip netns add wasp-t-${process.pid}-missing) or fix the path`);
        return true;
      });
    });

    it("a TUN name another fd holds (no multiQueue) gives EBUSY, as the kernel reports", () => {
      open("wtbusy", false);
      assert.throws(() => TunDevice.open({ name: "wtbusy", netns: nsPath(ns) }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "EBUSY");
          assert.match(e.message, /^cannot create TUN device wtbusy: device or resource busy \(EBUSY\)\. Another process holds it/);
          return true;
        });
    });

    it("without CAP_NET_ADMIN the open fails with EPERM and says to run as root", () => {
      // A child inside the test namespace with CAP_NET_ADMIN removed from its bounding set.
      const io = new URL("../../src/io/index.ts", import.meta.url).pathname;
      const script = `import { TunDevice } from ${JSON.stringify(io)};
        try { TunDevice.open({ name: "wtperm" }); console.log("opened"); }
        catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
      const out = inNs(ns, "setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", process.execPath,
        "--import", "tsx", "--input-type=module", "-e", script);
      const r = JSON.parse(out.trim().split("\n").pop()!) as { code: string; message: string };
      assert.equal(r.code, "EPERM");
      assert.equal(r.message, "cannot create TUN device wtperm: operation not permitted (EPERM). " +
        "Run as root or with CAP_NET_ADMIN (raw sockets: CAP_NET_RAW)");
    });

    it("a name the kernel would cut (over 15 bytes) is refused with EINVAL", () => {
      assert.throws(() => TunDevice.open({ name: "wasp-0123456789ab", netns: nsPath(ns) }), { code: "EINVAL" });
    });

    it("the same name opens twice with multiQueue (one queue per worker)", () => {
      const a = TunDevice.open({ name: "wtmq", multiQueue: true, netns: nsPath(ns) });
      devices.push(a);
      const b = TunDevice.open({ name: "wtmq", multiQueue: true, netns: nsPath(ns) });
      devices.push(b);
      assert.notEqual(a.fd, b.fd);
    });

    it("readBatch with a slot beyond memory refuses the whole batch and writes nothing", async () => {
      const dev = open("wtbound");
      const memory = new WebAssembly.Memory({ initial: 64 });
      const b = layout(memory, 4, 2048);
      const dv = new DataView(memory.buffer);
      const exit = ping(ns, ["-c", "1", "-W", "5", "10.77.0.2"], children);
      await nextReadable(dev); // a packet waits: a read now would fill slot 0
      dv.setUint32(b.slotsAddr + 3 * 32 + 20, memory.buffer.byteLength + 1, true); // slot 3 bufEnd
      const before = new Uint8Array(memory.buffer).slice();
      assert.throws(() => dev.readBatch(memory, b.slotsAddr, 4), (e: Error & { code?: string }) => {
        assert.ok(e instanceof RangeError, `a RangeError, not ${e.constructor.name}`);
        assert.equal(e.code, "EFAULT");
        assert.match(e.message, /^readBatch on device wtbound refused: .* outside the wasm memory \(4194304 bytes\); nothing was transferred/);
        return true;
      });
      // The slot table itself past the end is refused too.
      assert.throws(() => dev.readBatch(memory, memory.buffer.byteLength - 40, 2), { code: "EFAULT" });
      assert.deepEqual(new Uint8Array(memory.buffer), before, "memory changed");
      // The packet was there all along: a valid batch reads it.
      assert.equal(dev.readBatch(memory, b.slotsAddr, 3), 1);
      assert.equal(parseIpv4(packet(b, 0)).dst, "10.77.0.2");
      await stop(children.pop()!);
      await exit;
    });
  });

  for (const ioUring of [false, true]) {
  it(`reads the kernel's ICMP echo request and a written echo reply makes ping succeed (${ioUring ? "io_uring" : "read/write"})`, async () => {
    const dev = open("wtping", true, ioUring);
    const memory = new WebAssembly.Memory({ initial: 64 });
    const b = layout(memory, 8, 2048);
    const exit = ping(ns, ["-c", "1", "-W", "10", "-s", "100", "10.77.0.2"], children);
    let request: Uint8Array | undefined;
    dev.onReadable(() => {
      const n = dev.readBatch(memory, b.slotsAddr, b.count);
      for (let i = 0; i < n && !request; i++) {
        const p = packet(b, i), f = parseIpv4(p);
        if (f.version === 4 && f.proto === 1 && p[f.ihl] === 8) request = p.slice();
      }
    });
    await waitFor(() => request !== undefined, "the echo request in the TUN");
    dev.stop();
    const f = parseIpv4(request!);
    assert.equal(f.version, 4);
    assert.equal(f.ihl, 20);
    assert.equal(f.proto, 1);
    assert.equal(f.src, "10.77.0.1");
    assert.equal(f.dst, "10.77.0.2");
    assert.equal(f.totalLen, 20 + 8 + 100);
    assert.equal(request!.length, f.totalLen, "len is the packet without any header before it");
    assert.ok(f.headerOk, "IPv4 header checksum");
    assert.equal(slot(b, 0).flags & 2, 0, "no VNET flag without vnetHdr");

    // Slot 0: the reply (Tun); slot 1: a copy marked Drop that must not be written.
    const reply = echoReply(request!);
    put(b, 0, reply, Verdict.Tun);
    put(b, 1, reply, Verdict.Drop);
    assert.equal(dev.writeBatch(memory, b.slotsAddr, 2, 1 << Verdict.Tun), 1);
    assert.equal(dev.lastDropped, 0);
    assert.equal(await exit, 0, "busybox ping exit code: the kernel accepted the reply");
  });
  }

  for (const ioUring of [false, true]) {
  it(`writeBatch drops and counts a packet the kernel refuses (EINVAL) and still writes the rest (${ioUring ? "io_uring" : "read/write"})`, async () => {
    const dev = open("wtdrop", true, ioUring, true);
    const memory = new WebAssembly.Memory({ initial: 64 });
    const b = layout(memory, 8, 2048);
    const exit = ping(ns, ["-c", "1", "-W", "10", "10.77.0.2"], children);
    let request: Uint8Array | undefined;
    dev.onReadable(() => {
      const n = dev.readBatch(memory, b.slotsAddr, b.count);
      for (let i = 0; i < n && !request; i++) {
        assert.equal(slot(b, i).flags & SlotFlag.VNET, SlotFlag.VNET);
        const p = packet(b, i), f = parseIpv4(p);
        if (f.version === 4 && f.proto === 1 && p[f.ihl] === 8) request = p.slice();
      }
    });
    await waitFor(() => request !== undefined, "the echo request in the TUN");
    dev.stop();
    const reply = echoReply(request!), dv = new DataView(memory.buffer);
    put(b, 0, reply, Verdict.Tun);
    put(b, 1, reply, Verdict.Tun);
    // virtio_net_hdr of slot 0: an unknown gso_type, which virtio_net_hdr_to_skb rejects.
    new Uint8Array(memory.buffer, slot(b, 0).data - VNET_HDR_LEN, VNET_HDR_LEN).fill(0);
    dv.setUint8(slot(b, 0).data - VNET_HDR_LEN + 1, 0x7f);
    new Uint8Array(memory.buffer, slot(b, 1).data - VNET_HDR_LEN, VNET_HDR_LEN).fill(0);
    assert.equal(dev.writeBatch(memory, b.slotsAddr, 2, 1 << Verdict.Tun), 1);
    assert.equal(dev.lastDropped, 1);
    assert.equal(dev.lastDropCode, "EINVAL");
    assert.equal(await exit, 0, "the second (valid) reply reached ping");
  });
  }

  // These turn forwarding on and reverse-path filtering off: in a namespace of their own, so that
  // the other tests keep the defaults whether these pass or fail.
  describe("packets the kernel forwards back into the TUN", () => {
    let fwd = "";
    before(() => {
      fwd = makeNs("tunfwd");
      sysctl(fwd, "net.ipv6.conf.all.disable_ipv6", 1);
      sysctl(fwd, "net.ipv6.conf.default.disable_ipv6", 1);
    });
    after(() => deleteNs(fwd));

    for (const ioUring of [false, true]) {
    it(`300 packets (more than one io_uring submission) written in one batch all come back through the kernel (${ioUring ? "io_uring" : "read/write"})`, async () => {
      const dev = open("wtmany", true, ioUring, false, fwd);
      // The kernel forwards what we write to 10.96.0.0/16 straight back into the same TUN.
      sysctl(fwd, "net.ipv4.ip_forward", 1);
      for (const d of ["all", "default", "wtmany"]) sysctl(fwd, `net.ipv4.conf.${d}.rp_filter`, 0);
      ip(fwd, "route", "add", "10.96.0.0/16", "dev", "wtmany");
      const memory = new WebAssembly.Memory({ initial: 64 });
      const out = layout(memory, 300, 256, 1024);
      const inb = layout(memory, 300, 512, 1024 + 300 * 32 + 300 * 512);
      for (let i = 0; i < 300; i++) {
        const payload = Uint8Array.of(i >> 8, i & 255, 0xab, 0xcd);
        put(out, i, udp4("10.244.9.2", "10.96.0.1", 12345, 80, payload), Verdict.Tun);
      }
      assert.equal(dev.writeBatch(memory, out.slotsAddr, 300, 1 << Verdict.Tun), 300);
      assert.equal(dev.lastDropped, 0);
      const seen = new Set<number>();
      let got = 0;
      await waitFor(() => {
        got += dev.readBatch(memory, inb.slotsAddr + got * 32, 300 - got);
        return got === 300;
      }, "300 forwarded packets");
      for (let i = 0; i < 300; i++) {
        const p = packet(inb, i), f = parseIpv4(p);
        assert.equal(f.dst, "10.96.0.1");
        assert.equal(f.ttl, 63, "forwarded once by the kernel");
        assert.deepEqual([...p.subarray(30, 32)], [0xab, 0xcd]);
        seen.add((p[28]! << 8) | p[29]!);
      }
      assert.equal(seen.size, 300, "every packet exactly once");
    });
    }
  });

  it("a TAP device reads the kernel's ARP request as an Ethernet frame, flagged ETHERNET", async () => {
    const dev = TunDevice.open({ name: "wtap", tap: true, netns: nsPath(ns) });
    devices.push(dev);
    ip(ns, "addr", "add", "10.78.0.1/24", "dev", "wtap");
    ip(ns, "link", "set", "wtap", "up");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const b = layout(memory, 8, 2048);
    const exit = ping(ns, ["-c", "1", "-W", "1", "10.78.0.2"], children);
    let arp: Uint8Array | undefined, flags = 0;
    dev.onReadable(() => {
      const n = dev.readBatch(memory, b.slotsAddr, b.count);
      for (let i = 0; i < n && !arp; i++) {
        const f = packet(b, i);
        // RFC 826 over Ethernet II: ethertype 0x0806, opcode 1 (request) at 14 + 6.
        if (f[12] === 0x08 && f[13] === 0x06 && f[21] === 1) { arp = f.slice(); flags = slot(b, i).flags; }
      }
    });
    await waitFor(() => arp !== undefined, "the ARP request in the TAP");
    dev.stop();
    assert.equal(flags & SlotFlag.ETHERNET, SlotFlag.ETHERNET);
    assert.equal(flags & SlotFlag.VNET, 0);
    assert.deepEqual([...arp!.subarray(0, 6)], [255, 255, 255, 255, 255, 255], "broadcast");
    assert.deepEqual([...arp!.subarray(38, 42)], [10, 78, 0, 2], "target protocol address");
    await exit;
  });

  it("onReadable fires when a packet is queued, and the event loop keeps turning while idle", async () => {
    const dev = open("wtpoll");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const b = layout(memory, 4, 2048);
    let ticks = 0, spinning = true, fired = 0, ticksAtFire = -1;
    const spin = () => { ticks++; if (spinning) setImmediate(spin); };
    setImmediate(spin);
    try {
      dev.onReadable(() => {
        fired++;
        if (ticksAtFire < 0) ticksAtFire = ticks;
        while (dev.readBatch(memory, b.slotsAddr, b.count) > 0) { /* drain */ }
      });
      // Idle with an armed poller: setImmediate callbacks still run (nothing blocks the loop).
      await waitFor(() => ticks >= 200, "200 setImmediate turns while polling an idle TUN");
      assert.equal(fired, 0, "no readiness without a packet");
      const exit = ping(ns, ["-c", "1", "-W", "1", "10.77.0.2"], children);
      await waitFor(() => fired > 0, "the readiness callback");
      const after = ticks;
      await waitFor(() => ticks >= after + 200, "the loop to keep turning after the callback");
      assert.ok(ticksAtFire >= 200, `the callback came after the 200 idle turns, at turn ${ticksAtFire}`);
      await exit; // no reply is written: ping gives up after 1 s
    } finally {
      spinning = false;
      dev.stop();
    }
  });

  it("onReadable after stop() calls the new callback, not the old one", async () => {
    const dev = open("wtcb");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const b = layout(memory, 4, 2048);
    let old = 0, now = 0;
    dev.onReadable(() => { old++; });
    dev.stop();
    dev.onReadable(() => { now++; while (dev.readBatch(memory, b.slotsAddr, b.count) > 0) { /* drain */ } });
    try {
      const exit = ping(ns, ["-c", "1", "-W", "1", "10.77.0.2"], children);
      await waitFor(() => now > 0, "the second callback");
      assert.equal(old, 0);
      await exit;
    } finally {
      dev.stop();
    }
  });

  it("close() stops polling and the kernel removes the device", async () => {
    const dev = open("wtclose");
    dev.onReadable(() => undefined);
    dev.close();
    dev.close(); // twice is harmless
    assert.throws(() => ip(ns, "link", "show", "wtclose"), /does not exist/);
  });
});
