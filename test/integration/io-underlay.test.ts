// UnderlaySocket between two test namespaces joined by a veth: raw sendmmsg on one side,
// recvmmsg on the other, one flow's packets as a UDP GSO datagram cut back by UDP GRO, and a
// kernel vxlan device as a competing user of the port.
import { strict as assert } from "node:assert";
import { Note, SLOT_NOTE, SlotFlag, Verdict } from "../../src/engine/abi.js";
import { UnderlaySocket } from "../../src/io/index.js";
import { deleteAllNs, inNs, ip, makeNs, veth } from "../helpers/netns.js";
import { startCapture } from "../helpers/topology.js";
import { packet as ipPacket, rfc1071, TCP } from "../helpers/packets.js";
import { ipv4ToU32, layout, packet, put, slot, udp4, waitFor } from "../helpers/batch.js";

const PORT = 8472;

/** 8-byte VXLAN header (RFC 7348 §5: flags 0x08, VNI in bytes 4-6) then a payload naming i. */
function vxlanPayload(i: number): Uint8Array {
  const p = new Uint8Array(8 + 64);
  p[0] = 0x08;
  p[6] = 42; // VNI 42
  for (let j = 8; j < p.length; j++) p[j] = (i * 7 + j) & 255;
  return p;
}

/** A VXLAN frame (VNI 0) with an inner Ethernet header around the inner IPv4 packet. */
function frameOf(inner: Uint8Array): Uint8Array {
  const f = new Uint8Array(22 + inner.length);
  f.set(vxlanPayload(0).subarray(0, 8));
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00], 8);
  f.set(inner, 22);
  return f;
}

describe("io: underlay socket (integration, needs root)", function () {
  this.timeout(30000);
  let a = "", b = "";
  const sockets: UnderlaySocket[] = [];

  before(() => {
    a = makeNs("ula");
    b = makeNs("ulb");
    veth(a, "va", b, "vb");
    ip(a, "addr", "add", "10.98.0.1/24", "dev", "va");
    ip(b, "addr", "add", "10.98.0.2/24", "dev", "vb");
  });
  afterEach(() => { for (const s of sockets.splice(0)) s.close(); });
  after(() => deleteAllNs());

  function open(ns: string, bindIp: string): UnderlaySocket {
    const s = UnderlaySocket.open({ bindIp, port: PORT, netns: `/var/run/netns/${ns}` });
    sockets.push(s);
    return s;
  }

  /** Sender a and receiver b (inner MTU 1450) over a jumbo link: the raw IP_HDRINCL path refuses
   *  packets over the link MTU, and these frames carry a whole TSO packet. */
  async function overJumboLink(f: (sa: UnderlaySocket, sb: UnderlaySocket, memory: WebAssembly.Memory) => Promise<void>): Promise<void> {
    for (const [ns, dev] of [[a, "va"], [b, "vb"]] as const) ip(ns, "link", "set", dev, "mtu", "9000");
    try {
      const sa = open(a, "10.98.0.1");
      const sb = UnderlaySocket.open({ bindIp: "10.98.0.2", port: PORT, netns: `/var/run/netns/${b}`, innerMtu: 1450 });
      sockets.push(sb);
      await f(sa, sb, new WebAssembly.Memory({ initial: 64 }));
    } finally {
      for (const [ns, dev] of [[a, "va"], [b, "vb"]] as const) ip(ns, "link", "set", dev, "mtu", "1500");
    }
  }

  it("a batch of 32 raw IPv4/UDP packets sent with sendBatch arrives as 32, peer and payload intact", async () => {
    const sa = open(a, "10.98.0.1"), sb = open(b, "10.98.0.2");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const out = layout(memory, 34, 2048, 1024);
    const inb = layout(memory, 32, 2048, 1024 + 34 * 32 + 34 * 2560);
    for (let i = 0; i < 32; i++) {
      put(out, i, udp4("10.98.0.1", "10.98.0.2", 40000 + i, PORT, vxlanPayload(i)), Verdict.Overlay,
        ipv4ToU32("10.98.0.2"));
    }
    // Not selected by the mask: must not be sent.
    put(out, 32, udp4("10.98.0.1", "10.98.0.2", 41000, PORT, vxlanPayload(99)), Verdict.Drop, ipv4ToU32("10.98.0.2"));
    put(out, 33, udp4("10.98.0.1", "10.98.0.2", 41001, PORT, vxlanPayload(98)), Verdict.Tun, ipv4ToU32("10.98.0.2"));
    assert.equal(sa.sendBatch(memory, out.slotsAddr, 34, 1 << Verdict.Overlay), 32);
    assert.equal(sa.lastDropped, 0);

    let got = 0, calls = 0;
    const firstCall: number[] = [];
    await waitFor(() => {
      // Each call fills the slots after those already filled.
      const n = sb.recvBatch(memory, inb.slotsAddr + got * 32, 32 - got);
      calls++;
      if (calls === 1) firstCall.push(n);
      got += n;
      return got >= 32;
    }, "32 datagrams on 10.98.0.2:8472");
    assert.equal(got, 32);
    for (let i = 0; i < 32; i++) {
      const s = slot(inb, i);
      assert.equal(s.peer, ipv4ToU32("10.98.0.1"), `slot ${i} peer`);
      assert.equal(s.flags & SlotFlag.FROM_OVERLAY, SlotFlag.FROM_OVERLAY);
      assert.deepEqual(packet(inb, i), vxlanPayload(i), `slot ${i} payload (VXLAN header on)`);
    }
    // Nothing else arrived (the Drop and Tun slots stayed home).
    assert.equal(sb.recvBatch(memory, inb.slotsAddr, 32), 0);
    console.log(`      recvBatch calls for 32 datagrams: ${calls}; first call returned ${firstCall[0]}`);
  });

  /** One flow (one outer source port): 9 packets with 1,000-byte payloads and a 400-byte last one. */
  const flow = (n = 10) => Array.from({ length: n }, (_, i) => {
    const p = vxlanPayload(i);
    const big = new Uint8Array(i === n - 1 ? 400 : 1000);
    big.set(p);
    for (let j = p.length; j < big.length; j++) big[j] = (i * 13 + j) & 255;
    return big;
  });
  const BIG_ROOM = 65536 + 64; // the engine's slots (SLOT_PACKET_ROOM)

  it("one flow's equal-size packets leave as ONE UDP GSO datagram on the link, and UDP GRO + recvBatch cut it back into the same packets in order", async () => {
    const sa = open(a, "10.98.0.1"), sb = open(b, "10.98.0.2");
    const memory = new WebAssembly.Memory({ initial: 64 }); // 4 MiB
    const payloads = flow();
    const out = layout(memory, 10, 2048, 1024);
    const inb = layout(memory, 16, BIG_ROOM, 1024 + 10 * 32 + 10 * 2560);
    payloads.forEach((p, i) => put(out, i, udp4("10.98.0.1", "10.98.0.2", 50000, PORT, p), Verdict.Overlay, ipv4ToU32("10.98.0.2")));
    const cap = await startCapture(b, "vb", "udp port 8472");
    assert.equal(sa.sendBatch(memory, out.slotsAddr, 10, 1 << Verdict.Overlay), 10);
    let got = 0;
    await waitFor(() => (got += sb.recvBatch(memory, inb.slotsAddr + got * 32, 16 - got)) >= 10, "10 packets");
    const frames = await cap.stop();
    assert.equal(got, 10);
    payloads.forEach((p, i) => {
      assert.deepEqual(packet(inb, i), p, `packet ${i}`);
      assert.equal(slot(inb, i).peer, ipv4ToU32("10.98.0.1"));
    });
    // veth hands the GSO datagram on whole: tcpdump sees one frame carrying all ten (UDP length
    // 8 + 9 x 1000 + 400), where the raw path would show ten.
    assert.equal(frames.length, 1, `${frames.length} frames on the link`);
    assert.equal(frames[0]!.orig, 14 + 20 + 8 + 9 * 1000 + 400);
  });

  it("a datagram with more segments than the batch has slots: the rest waits (hasPending) and the next recvBatch delivers it first, in order", async () => {
    const sa = open(a, "10.98.0.1"), sb = open(b, "10.98.0.2");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const payloads = flow();
    const out = layout(memory, 10, 2048, 1024);
    const inb = layout(memory, 4, BIG_ROOM, 1024 + 10 * 32 + 10 * 2560);
    payloads.forEach((p, i) => put(out, i, udp4("10.98.0.1", "10.98.0.2", 50001, PORT, p), Verdict.Overlay, ipv4ToU32("10.98.0.2")));
    assert.equal(sa.sendBatch(memory, out.slotsAddr, 10, 1 << Verdict.Overlay), 10);
    const seen: Uint8Array[] = [];
    await waitFor(() => {
      const n = sb.recvBatch(memory, inb.slotsAddr, 4);
      for (let i = 0; i < n; i++) seen.push(packet(inb, i).slice());
      if (n === 4 && seen.length < 10) assert.ok(sb.hasPending(), `pending after ${seen.length}`);
      return seen.length >= 10;
    }, "10 packets in batches of 4");
    assert.equal(seen.length, 10);
    assert.ok(!sb.hasPending(), "nothing pending once all 10 are read");
    payloads.forEach((p, i) => assert.deepEqual(seen[i], p, `packet ${i}`));
  });

  it("one VXLAN frame carrying an unsegmented TCP packet (a Linux vxlan sender's TSO over a veth) is cut into frames of the inner MTU as RFC 793/791 say a segmenter must; a frame whose inner length disagrees arrives untouched", async () => {
    await overJumboLink(async (sa, sb, memory) => {
      const data = new Uint8Array(3000).map((_, i) => (i * 13) & 255);
      const inner = ipPacket({ src: "10.244.7.2", dst: "10.244.1.2", id: 0x1234, df: true },
        { proto: "tcp", sport: 40000, dport: 5001, seq: 0xfffff000, flags: TCP.ACK | TCP.PSH, payload: data });
      const frame = frameOf(inner);
      const liar = frame.slice(); new DataView(liar.buffer).setUint16(22 + 2, inner.length - 8); // inner total length says less
      const out = layout(memory, 2, 8192, 1024);
      put(out, 0, udp4("10.98.0.1", "10.98.0.2", 50003, PORT, frame), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
      put(out, 1, udp4("10.98.0.1", "10.98.0.2", 50004, PORT, liar), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
      const inb = layout(memory, 8, BIG_ROOM, 1024 + 2 * 32 + 2 * 8192 + 4096);
      assert.equal(sa.sendBatch(memory, out.slotsAddr, 2, 1 << Verdict.Overlay), 2);
      let got = 0;
      await waitFor(() => (got += sb.recvBatch(memory, inb.slotsAddr + got * 32, 8 - got)) >= 4, "3 frames and the liar");
      assert.equal(got, 4);
      // 3000 bytes at MSS 1450 - 20 - 20 = 1410: 1410, 1410, 180
      const sizes = [1410, 1410, 180];
      let offset = 0;
      for (const [k, size] of sizes.entries()) {
        const f = packet(inb, k), dv = new DataView(f.buffer, f.byteOffset, f.byteLength), ipAt = 22, tcpAt = 42;
        assert.equal(f.length, 22 + 40 + size, `frame ${k} length`);
        assert.deepEqual([...f.subarray(0, 22)], [...frame.subarray(0, 22)], "VXLAN and inner Ethernet repeated");
        assert.equal(dv.getUint16(ipAt + 2), 40 + size, "IPv4 total length");
        assert.equal(dv.getUint16(ipAt + 4), 0x1234 + k, "IPv4 ID numbered as TSO numbers them");
        assert.equal(rfc1071(f.subarray(ipAt, ipAt + 20)), 0, "IPv4 header checksum (RFC 791)");
        assert.equal(dv.getUint32(tcpAt + 4), (0xfffff000 + offset) >>> 0, "sequence number (RFC 793, wraps)");
        assert.equal(f[tcpAt + 13], k === 2 ? TCP.ACK | TCP.PSH : TCP.ACK, "PSH only on the last");
        assert.deepEqual([...f.subarray(62)], [...data.subarray(offset, offset + size)], "payload in order");
        // left as the partial sum a NIC would finish: the pseudo-header sum over this segment, folded
        let pseudo = 10 * 256 + 244 + 7 * 256 + 2 + 10 * 256 + 244 + 1 * 256 + 2 + 6 + 20 + size;
        while (pseudo > 0xffff) pseudo = (pseudo & 0xffff) + (pseudo >>> 16);
        assert.equal(dv.getUint16(tcpAt + 16), pseudo, "TCP checksum field: the partial sum");
        offset += size;
      }
      assert.deepEqual([...packet(inb, 3)], [...liar], "not one TSO packet: delivered as it came");
    });
  });

  it("keepWhole: the unsegmented TCP packet whose checksum is still the partial sum stays one datagram (the engine passes it on as GSO); one with a full checksum is still cut", async () => {
    await overJumboLink(async (sa, sb, memory) => {
      const data = new Uint8Array(3000).map((_, i) => (i * 11) & 255);
      const full = ipPacket({ src: "10.244.7.2", dst: "10.244.1.2", id: 7, df: true },
        { proto: "tcp", sport: 40000, dport: 5001, seq: 1, flags: TCP.ACK, payload: data });
      // the partial sum a TSO sender leaves (RFC 793 pseudo-header over the whole TCP length, folded)
      const partial = full.slice();
      let pseudo = 10 * 256 + 244 + 7 * 256 + 2 + 10 * 256 + 244 + 1 * 256 + 2 + 6 + 20 + data.length;
      while (pseudo > 0xffff) pseudo = (pseudo & 0xffff) + (pseudo >>> 16);
      new DataView(partial.buffer).setUint16(20 + 16, pseudo);
      const out = layout(memory, 2, 8192, 1024);
      put(out, 0, udp4("10.98.0.1", "10.98.0.2", 50005, PORT, frameOf(partial)), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
      put(out, 1, udp4("10.98.0.1", "10.98.0.2", 50006, PORT, frameOf(full)), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
      const inb = layout(memory, 8, BIG_ROOM, 1024 + 2 * 32 + 2 * 8192 + 4096);
      assert.equal(sa.sendBatch(memory, out.slotsAddr, 2, 1 << Verdict.Overlay), 2);
      let got = 0;
      await waitFor(() => (got += sb.recvBatch(memory, inb.slotsAddr + got * 32, 8 - got, true)) >= 4, "the whole one and 3 frames");
      assert.equal(got, 4);
      assert.deepEqual([...packet(inb, 0)], [...frameOf(partial)], "untouched, one datagram");
      assert.deepEqual([1, 2, 3].map((k) => packet(inb, k).length), [22 + 40 + 1410, 22 + 40 + 1410, 22 + 40 + 180]);
    });
  });

  it("tunnelTap: a TAP with accept_local, no reverse-path check and no IPv6 is made beside the socket and goes with it; strict rp_filter for all interfaces keeps it off, saying why", () => {
    const name = "wasptnl0";
    const sa = UnderlaySocket.open({ bindIp: "10.98.0.1", port: PORT, netns: `/var/run/netns/${a}`, tunnelTap: name });
    sockets.push(sa);
    if (!sa.tunnel) {
      // a kernel before 6.17: the socket works without it, and says so
      assert.match(sa.tunnelOff, /UDP-tunnel GSO/);
      return;
    }
    assert.match(sa.tunnel.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    const link = ip(a, "-d", "link", "show", name);
    assert.match(link, /tun type tap/);
    assert.match(link, /state (UP|UNKNOWN)/);
    assert.ok(link.includes(sa.tunnel.mac), link);
    const conf = (f: string, fam = "ipv4") => inNs(a, "cat", `/proc/sys/net/${fam}/conf/${name}/${f}`).trim();
    assert.deepEqual([conf("accept_local"), conf("rp_filter"), conf("disable_ipv6", "ipv6")], ["1", "0", "1"]);
    sa.close();
    assert.throws(() => ip(a, "link", "show", name), "gone with the fd");
    inNs(b, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1");
    try {
      const sb = UnderlaySocket.open({ bindIp: "10.98.0.2", port: PORT, netns: `/var/run/netns/${b}`, tunnelTap: name });
      sockets.push(sb);
      assert.equal(sb.tunnel, undefined);
      assert.match(sb.tunnelOff, /rp_filter is 1/);
    } finally {
      inNs(b, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0");
    }
  });

  it("slots smaller than 64 KiB turn UDP GRO off: one flow's packets still arrive whole, one per slot", async () => {
    const sa = open(a, "10.98.0.1"), sb = open(b, "10.98.0.2");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const payloads = flow();
    const out = layout(memory, 10, 2048, 1024);
    const inb = layout(memory, 16, 2048, 1024 + 10 * 32 + 10 * 2560);
    assert.equal(sb.recvBatch(memory, inb.slotsAddr, 16), 0); // the receiver's slots are known before anything arrives
    payloads.forEach((p, i) => put(out, i, udp4("10.98.0.1", "10.98.0.2", 50002, PORT, p), Verdict.Overlay, ipv4ToU32("10.98.0.2")));
    assert.equal(sa.sendBatch(memory, out.slotsAddr, 10, 1 << Verdict.Overlay), 10);
    let got = 0;
    await waitFor(() => (got += sb.recvBatch(memory, inb.slotsAddr + got * 32, 16 - got)) >= 10, "10 packets");
    payloads.forEach((p, i) => assert.deepEqual(packet(inb, i), p, `packet ${i}`));
  });

  it("onReadable fires for a datagram sent to the socket", async () => {
    const sa = open(a, "10.98.0.1"), sb = open(b, "10.98.0.2");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const out = layout(memory, 1, 2048, 1024), inb = layout(memory, 4, 2048, 8192);
    let received = 0;
    sb.onReadable(() => { received += sb.recvBatch(memory, inb.slotsAddr, 4); });
    try {
      put(out, 0, udp4("10.98.0.1", "10.98.0.2", 40000, PORT, vxlanPayload(1)), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
      assert.equal(sa.sendBatch(memory, out.slotsAddr, 1, 1 << Verdict.Overlay), 1);
      await waitFor(() => received === 1, "the readiness callback to receive the datagram");
    } finally {
      sb.stop();
    }
  });

  it("a port a kernel vxlan device holds gives EADDRINUSE with the fix", () => {
    ip(b, "link", "add", "vx0", "type", "vxlan", "id", "7", "dstport", String(PORT), "local", "10.98.0.2", "dev", "vb");
    ip(b, "link", "set", "vx0", "up");
    try {
      assert.throws(() => open(b, "10.98.0.2"), (e: Error & { code?: string }) => {
        assert.equal(e.code, "EADDRINUSE");
        assert.match(e.message, /^cannot bind underlay UDP socket to 10\.98\.0\.2:8472: address already in use \(EADDRINUSE\)\. Another VXLAN endpoint/);
        return true;
      });
    } finally {
      ip(b, "link", "del", "vx0");
    }
  });

  it("an address that is not IPv4 is refused before any socket is made", () => {
    assert.throws(() => UnderlaySocket.open({ bindIp: "10.98.0", port: PORT }), { code: "EINVAL" });
  });

  it("sendBatch reports its own drops: a packet to a peer with no route (ENETUNREACH) and a tunnel frame with no tunnel TAP (EBADF, refused) are counted, the good packet still leaves; each batch counts only its own", async () => {
    const sa = open(a, "10.98.0.1"), sb = open(b, "10.98.0.2");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const out = layout(memory, 3, 2048, 1024), inb = layout(memory, 4, 2048, 16384);
    const good = vxlanPayload(5);
    put(out, 0, udp4("10.98.0.1", "10.98.0.2", 40005, PORT, good), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
    // 203.0.113.0/24 (RFC 5737): namespace a has a route for 10.98.0.0/24 only.
    put(out, 1, udp4("10.98.0.1", "203.0.113.9", 40006, PORT, vxlanPayload(6)), Verdict.Overlay, ipv4ToU32("203.0.113.9"));
    put(out, 2, frameOf(new Uint8Array(40)), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
    new DataView(memory.buffer).setUint32(out.slotsAddr + 2 * 32 + SLOT_NOTE, Note.TUNNEL_GSO, true);
    assert.equal(sa.sendBatch(memory, out.slotsAddr, 2, 1 << Verdict.Overlay), 1);
    assert.deepEqual([sa.lastDropped, sa.lastDropCode, sa.lastTunnelRefused], [1, "ENETUNREACH", 0]);
    assert.equal(sa.sendBatch(memory, out.slotsAddr, 3, 1 << Verdict.Overlay), 1);
    assert.deepEqual([sa.lastDropped, sa.lastDropCode, sa.lastTunnelRefused], [2, "EBADF", 1]);
    assert.equal(sa.sendBatch(memory, out.slotsAddr, 1, 1 << Verdict.Overlay), 1);
    assert.deepEqual([sa.lastDropped, sa.lastDropCode, sa.lastTunnelRefused], [0, "", 0]);
    let got = 0;
    await waitFor(() => (got += sb.recvBatch(memory, inb.slotsAddr + got * 32, 4 - got)) >= 3, "the good datagram 3 times");
    assert.equal(got, 3);
    for (let i = 0; i < 3; i++) assert.deepEqual(packet(inb, i), good, `datagram ${i}`);
  });

  it("sendBatch with a packet past the end of memory sends nothing, not even the good slots", async () => {
    const sa = open(a, "10.98.0.1"), sb = open(b, "10.98.0.2");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const out = layout(memory, 2, 2048, 1024), inb = layout(memory, 4, 2048, 8192);
    const dv = new DataView(memory.buffer), bad = out.slotsAddr + 32;
    put(out, 0, udp4("10.98.0.1", "10.98.0.2", 40000, PORT, vxlanPayload(1)), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
    put(out, 1, udp4("10.98.0.1", "10.98.0.2", 40001, PORT, vxlanPayload(2)), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
    dv.setUint32(bad, memory.buffer.byteLength - 4, true); // data: 100 bytes from 4 before the end
    dv.setUint32(bad + 4, 100, true);
    assert.throws(() => sa.sendBatch(memory, out.slotsAddr, 2, 1 << Verdict.Overlay), { code: "EFAULT" });
    // A marker sent afterwards is the first datagram to arrive: slot 0 above was never sent.
    const marker = vxlanPayload(77);
    put(out, 0, udp4("10.98.0.1", "10.98.0.2", 40077, PORT, marker), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
    assert.equal(sa.sendBatch(memory, out.slotsAddr, 1, 1 << Verdict.Overlay), 1);
    let n = 0;
    await waitFor(() => (n = sb.recvBatch(memory, inb.slotsAddr, 4)) > 0, "the marker datagram");
    assert.equal(n, 1);
    assert.deepEqual(packet(inb, 0), marker);
  });
});
