// wasp replay for operators, without a daemon: pcapng in and out (tshark and mergecap are the
// reference), the capture filter (tcpdump selects the same packets), frame ranges, the interface and
// direction a packet came in on, LINKTYPE_USER0 captures with a virtio header (a TSO super-packet cut
// as the kernel's tcp_gso_segment cuts it, checked by tshark), and a capture taken mid-flow replayed
// with the live node's flows (`wasp conntrack --json`).
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CliError, EXIT } from "../../../src/cli/client.js";
import { parseFilter, parseRange, matchIp } from "../../../src/cli/capture-filter.js";
import { readCapture, LINKTYPE_LINUX_SLL2, LINKTYPE_USER0 } from "../../../src/cli/pcap.js";
import { pcapngBytes } from "../../../src/cli/pcapng.js";
import { runReplay } from "../../../src/cli/replay.js";
import { ipv4, ipv6, packet, TCP } from "../../helpers/packets.js";
import { LINKTYPE_ETHERNET, LINKTYPE_RAW, pcapBytes } from "../../helpers/pcap.js";
import { CHECKSUM_GOOD, dissect } from "../../helpers/tshark.js";

const tshark = (file: string, fields: string[], extra: string[] = []): string[][] =>
  execFileSync("tshark", ["-r", file, ...extra, "-T", "fields", "-E", "separator=|", ...fields.flatMap((f) => ["-e", f])], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
    .trim().split("\n").filter(Boolean).map((l) => l.split("|"));

const usage = (re: RegExp) => (e: unknown) => e instanceof CliError && e.exitCode === EXIT.USAGE && re.test(e.message);

describe("wasp replay for operators (unit)", () => {
  let dir = "";
  before(() => { dir = mkdtempSync(join(tmpdir(), "wasp-replay-unit-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, bytes: Uint8Array) => { const p = join(dir, name); writeFileSync(p, bytes); return p; };

  describe("pcapng", () => {
    it("reads what mergecap writes: two captures become two interfaces, each packet on the interface and at the time tshark reports", () => {
      const a = [0, 1, 2].map((i) => packet({ src: "10.244.1.5", dst: "10.96.0.10" }, { proto: "tcp", sport: 40000 + i, dport: 80 }));
      const eth = (p: Uint8Array) => Uint8Array.from([...Array(12).fill(2), 0x08, 0x00, ...p]);
      const b = [eth(packet({ src: "10.99.0.2", dst: "10.99.0.1" }, { proto: "udp", sport: 5, dport: 8472 }))];
      const pa = file("a.pcap", pcapBytes(a, LINKTYPE_RAW)), pb = file("b.pcap", pcapBytes(b, LINKTYPE_ETHERNET));
      const merged = join(dir, "m.pcapng");
      execFileSync("mergecap", ["-F", "pcapng", "-w", merged, pa, pb], { stdio: "ignore" });
      const cap = readCapture(readFileSync(merged), merged);
      assert.equal(cap.format, "pcapng");
      assert.deepEqual(cap.interfaces.map((i) => i.linktype), [LINKTYPE_RAW, LINKTYPE_ETHERNET]);
      const ref = tshark(merged, ["frame.interface_id", "frame.time_epoch", "frame.len"]);
      assert.deepEqual(cap.records.map((r) => [String(r.iface), `${r.sec}.${String(r.usec).padStart(6, "0")}000`, String(r.data.length)]), ref);
      assert.deepEqual(cap.records.map((r) => r.linktype), ref.map(([i]) => (i === "0" ? LINKTYPE_RAW : LINKTYPE_ETHERNET)));
    });

    it("writes pcapng that tshark reads: interface names, a comment per packet and the direction; reads its own back", () => {
      const p = packet({ src: "10.244.1.5", dst: "10.96.0.10" }, { proto: "udp", sport: 1, dport: 53 });
      const f = file("w.pcapng", pcapngBytes([{ linktype: LINKTYPE_RAW, name: "wasp0" }, { linktype: LINKTYPE_RAW, name: "eth0" }], [
        { iface: 0, sec: 1_700_000_000, usec: 250, data: p, comment: "wasp: #1; verdict tun", direction: "out" },
        { iface: 1, sec: 1_700_000_001, usec: 0, data: p.subarray(0, 28), direction: "in" },
        { iface: 0, sec: 1_700_000_002, usec: 999_999, data: p, comment: "ünïcode ok" },
      ]));
      // tshark 4.0: frame.packet_flags_direction 1 inbound, 2 outbound
      assert.deepEqual(tshark(f, ["frame.interface_name", "frame.comment", "frame.packet_flags_direction", "frame.time_epoch"]), [
        ["wasp0", "wasp: #1; verdict tun", "0x00000002", "1700000000.000250000"], ["eth0", "", "0x00000001", "1700000001.000000000"], ["wasp0", "ünïcode ok", "", "1700000002.999999000"],
      ]);
      const cap = readCapture(readFileSync(f), f);
      assert.deepEqual(cap.interfaces.map((i) => i.name), ["wasp0", "eth0"]);
      assert.deepEqual(cap.records.map((r) => [r.iface, r.direction, r.comment, r.usec]), [[0, "out", "wasp: #1; verdict tun", 250], [1, "in", undefined, 0], [0, undefined, "ünïcode ok", 999_999]]);
    });

    it("a cut block, a packet naming an interface its section never described, and a snaplen-truncated packet are named", () => {
      const p = packet({ src: "10.244.1.5", dst: "10.96.0.10" }, { proto: "udp", sport: 1, dport: 53 });
      const good = pcapngBytes([{ linktype: LINKTYPE_RAW, name: "x" }], [{ iface: 0, sec: 1, usec: 0, data: p }]);
      assert.throws(() => readCapture(good.subarray(0, good.length - 6), "cut.pcapng"), /cut\.pcapng: the pcapng block at offset \d+ is cut short/);
      const noIf = pcapngBytes([{ linktype: LINKTYPE_RAW, name: "x" }], [{ iface: 3, sec: 1, usec: 0, data: p }]);
      assert.throws(() => readCapture(noIf, "n.pcapng"), /names interface 3, which its section never described/);
      const trunc = Buffer.from(good), epb = good.length - (28 + p.length + 4);
      trunc.writeUInt32LE(p.length + 10, epb + 24); // original length > captured
      assert.throws(() => readCapture(trunc, "t.pcapng"), /packet 1 was truncated by the capture's snaplen/);
    });
  });

  describe("choosing what to replay", () => {
    // a little of everything, frame i stamped 1_700_000_000 + i - 1 (tcpdump -tt prints it back)
    const hopByHop = (next: number, body: Uint8Array) => Uint8Array.from([next, 0, 1, 4, 0, 0, 0, 0, ...body]);
    const tcp6 = packet({ src: "fd00::5", dst: "fd00::a" }, { proto: "tcp", sport: 40001, dport: 80 });
    const mix = [
      packet({ src: "10.244.1.5", dst: "10.96.0.10" }, { proto: "tcp", sport: 40000, dport: 80 }),
      packet({ src: "10.244.1.6", dst: "10.96.0.53" }, { proto: "udp", sport: 5353, dport: 53 }),
      packet({ src: "10.244.1.5", dst: "10.244.2.9" }, { proto: "icmp" }),
      packet({ src: "fd00::5", dst: "fd00::a" }, { proto: "tcp", sport: 40001, dport: 443 }),
      packet({ src: "fd00::5", dst: "fd00::9" }, { proto: "icmp" }),
      ipv4({ src: "10.244.1.6", dst: "10.96.0.53", fragOffset: 185 }, 17, new Uint8Array(40).fill(0x35)),
      ipv6({ src: "fd00::5", dst: "fd00::a" }, 0, hopByHop(6, tcp6.subarray(40))),
      packet({ src: "10.99.0.2", dst: "10.99.0.1" }, { proto: "udp", sport: 33333, dport: 8472 }),
      packet({ src: "10.99.0.7", dst: "10.99.0.1" }, { proto: "tcp", sport: 50000, dport: 30080 }),
      packet({ src: "10.96.0.10", dst: "10.244.1.5" }, { proto: "tcp", sport: 80, dport: 40000, flags: TCP.SYN | TCP.ACK }),
    ];
    const EXPRESSIONS = [
      "tcp", "udp", "icmp", "icmp6", "ip", "ip6", "host 10.96.0.10", "src host 10.244.1.5", "dst host fd00::a", "net 10.244.0.0/16",
      "src net 10.99.0.0/24", "port 80", "dst port 53", "src port 5353", "tcp port 80", "udp port 53", "portrange 30000-32767",
      "not tcp", "tcp or udp", "host 10.96.0.10 or 10.96.0.53", "port 80 or 443", "ip6 and tcp", "not (tcp and port 80)", "ip proto 17",
      "proto 58", "src or dst host 10.99.0.1", "udp and dst port 8472", "!icmp && !icmp6", "ip6 proto 6", "dst net 10.96.0.0/16 and not udp",
      "src 10.244.1.6", "tcp src port 80 or dst port 30080",
    ];

    it("--filter selects the frames tcpdump selects on the same capture, for each of 32 expressions", () => {
      const f = file("mix.pcap", pcapBytes(mix, LINKTYPE_RAW));
      const cap = readCapture(readFileSync(f), f);
      for (const expr of EXPRESSIONS) {
        const out = execFileSync("tcpdump", ["-tt", "-n", "-r", f, expr], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
        const want = out.trim().split("\n").filter((l) => /^\d+\.\d+ /.test(l)).map((l) => Math.round(Number(l.split(" ")[0])) - 1_700_000_000 + 1);
        const m = parseFilter(expr);
        const got = cap.records.map((r, i) => (matchIp(m, r.data) ? i + 1 : 0)).filter(Boolean);
        assert.deepEqual(got, want, `--filter ${JSON.stringify(expr)}`);
      }
    });

    it("a filter or range that cannot be read is a usage error (exit 2) naming what is wrong", () => {
      assert.throws(() => parseFilter("host"), usage(/"host": host needs a value/));
      assert.throws(() => parseFilter("port eighty"), usage(/"eighty" is not a port/));
      assert.throws(() => parseFilter("(tcp"), usage(/a '\(' is not closed/));
      assert.throws(() => parseFilter("tcp udp"), usage(/"udp" is left over/));
      assert.throws(() => parseFilter("ether host 1"), usage(/"ether" is not a primitive wasp knows/));
      assert.throws(() => parseRange("5-2"), usage(/"5-2" ends before it starts/));
      assert.throws(() => parseRange("0"), usage(/"0" is not N, N-M/));
      const r = parseRange("2-3,7,9-");
      assert.deepEqual([1, 2, 3, 4, 7, 8, 9, 100].map(r), [false, true, true, false, true, false, true, true]);
    });

    it("--packets and --filter replay only the frames chosen (numbered as tshark numbers them) and count the rest by why", async () => {
      const f = file("mix2.pcap", pcapBytes(mix, LINKTYPE_RAW));
      const s = await runReplay(f, undefined, undefined, { packets: "1-4", filter: "ip", records: true });
      assert.deepEqual(s.packets!.map((p) => p.frame), [1, 2, 3]);
      assert.deepEqual(s.skippedBy, { range: 6, filter: 1 });
      assert.equal(s.replayed + s.skipped, mix.length);
    });

    it("a capture of wasp0 in both directions replays only what the kernel sent into wasp0 (pcapng epb_flags, Linux cooked v2 packet type); --interface and --from set roles", async () => {
      const syn = packet({ src: "10.244.1.20", dst: "10.96.0.10", ttl: 63 }, { proto: "tcp", sport: 41000, dport: 80, flags: TCP.SYN });
      const natted = packet({ src: "10.244.1.20", dst: "10.244.1.10", ttl: 62 }, { proto: "tcp", sport: 41000, dport: 8080, flags: TCP.SYN });
      const other = packet({ src: "10.99.0.7", dst: "10.99.0.1" }, { proto: "tcp", sport: 50000, dport: 22 });
      const ng = file("dir.pcapng", pcapngBytes([{ linktype: LINKTYPE_RAW, name: "wasp0" }, { linktype: LINKTYPE_RAW, name: "eth0" }], [
        { iface: 0, sec: 1, usec: 0, data: syn, direction: "out" },   // the kernel hands it to the engine
        { iface: 0, sec: 1, usec: 5, data: natted, direction: "in" }, // what the engine wrote back
        { iface: 1, sec: 1, usec: 9, data: other, direction: "in" },  // the underlay: not VXLAN, not the engine's
      ]));
      const a = await runReplay(ng, undefined, undefined, { interfaces: ["eth0=underlay"], records: true });
      assert.deepEqual(a.packets!.map((p) => [p.frame, p.interface, p.verdict]), [[1, "wasp0", "tun"]]);
      assert.deepEqual(a.skippedBy, { engine_output: 1, not_for_engine: 1 });
      const b = await runReplay(ng, undefined, undefined, { from: "skip", interfaces: ["0=pod"] });
      assert.deepEqual([b.replayed, b.skippedBy], [1, { engine_output: 1, interface: 1 }]);
      // tcpdump -i any -y LINUX_SLL2: protocol, reserved, ifindex, hatype, packet type (4 outgoing), addr len, addr
      const sll2 = (p: Uint8Array, ifindex: number, pkttype: number) => Uint8Array.from([0x08, 0x00, 0, 0, 0, 0, 0, ifindex, 0xff, 0xfe, pkttype, 0, ...Array(8).fill(0), ...p]);
      const any = file("any.pcap", pcapBytes([sll2(syn, 7, 4), sll2(natted, 7, 0), sll2(natted, 9, 4)], LINKTYPE_LINUX_SLL2));
      const c = await runReplay(any, undefined, undefined, { from: "skip", interfaces: ["ifindex:7=pod"], records: true });
      assert.deepEqual(c.packets!.map((p) => p.frame), [1]);
      assert.deepEqual(c.skippedBy, { engine_output: 1, interface: 1 });
      await assert.rejects(runReplay(any, undefined, undefined, { interfaces: ["wasp0"] }), usage(/--interface "wasp0" is not ID=ROLE/));
    });
  });

  describe("what became of each packet", () => {
    it("--json gives one record per replayed packet (verdict, reason, service entry, tuple before and after, what the engine made, its frames in --out); --out is pcapng whose comments tshark shows", async () => {
      const syn = packet({ src: "10.244.1.20", dst: "10.96.0.10", ttl: 63 }, { proto: "tcp", sport: 41000, dport: 80, flags: TCP.SYN });
      const noSvc = packet({ src: "10.244.1.20", dst: "10.96.0.10", ttl: 63 }, { proto: "tcp", sport: 41001, dport: 81, flags: TCP.SYN });
      const bad = packet({ src: "10.244.1.20", dst: "10.244.1.12", ttl: 63 }, { proto: "udp", sport: 5, dport: 53 });
      bad[10] = bad[10]! ^ 0xff;
      const f = file("three.pcap", pcapBytes([syn, noSvc, bad], LINKTYPE_RAW)), out = join(dir, "three-out.pcapng");
      const s = await runReplay(f, undefined, out, { records: true });
      const [p1, p2, p3] = s.packets!;
      assert.equal(p1!.verdict, "tun");
      assert.equal(p1!.service, "default/web:80");
      assert.deepEqual(p1!.before, { proto: "tcp", src: "10.244.1.20", sport: 41000, dst: "10.96.0.10", dport: 80, text: "tcp 10.244.1.20:41000 > 10.96.0.10:80 [S]" });
      assert.ok(["10.244.1.10", "10.244.1.11"].includes(p1!.after!.dst) && p1!.after!.dport === 8080, JSON.stringify(p1));
      assert.ok(p1!.notes.includes("dnat") && p1!.notes.includes("new_flow"), JSON.stringify(p1!.notes));
      assert.deepEqual([p2!.reason, p2!.made, p2!.after!.src, p2!.after!.sport], ["no_service", "tcp_rst", "10.96.0.10", 81]);
      assert.deepEqual([p3!.verdict, p3!.reason, p3!.made], ["drop", "bad_ipv4_checksum", undefined]);
      assert.deepEqual(s.packets!.map((p) => p.out), [[1], [2], [3]]);
      assert.deepEqual(s.out, { file: out, packets: 2, dropped: 1 });
      const rows = tshark(out, ["frame.number", "frame.interface_name", "frame.comment", "ip.dst", "tcp.flags.reset"]);
      assert.equal(rows.length, 3);
      assert.match(rows[0]![2]!, /^wasp: #1; verdict tun; service default\/web:80; dnat new_flow$/);
      assert.equal(rows[0]![3], p1!.after!.dst);
      assert.deepEqual([rows[1]![2], rows[1]![4]], ["wasp: #2; verdict tun (no_service); made by the engine: tcp_rst", "1"]);
      assert.deepEqual([rows[2]![1], rows[2]![2]], ["input dropped by the engine", "wasp: #3; drop: bad_ipv4_checksum"]);
    });

    it("a packet whose checksum was left to offload (only the pseudo-header sum in the field, as captured on a veth or TUN) leaves with the new pseudo-header's sum there, for the kernel to complete", async () => {
      const p = packet({ src: "10.244.1.20", dst: "10.96.0.53", ttl: 63 }, { proto: "tcp", sport: 41000, dport: 53, flags: TCP.ACK, payload: new Uint8Array(9).fill(7) });
      const pseudo = (b: Uint8Array) => {
        let s = 6 + (b.length - 20);
        for (let i = 12; i < 20; i += 2) s += (b[i]! << 8) | b[i + 1]!;
        while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
        return s;
      };
      p[36] = pseudo(p) >> 8; p[37] = pseudo(p) & 0xff; // tcp_v4_send_check with CHECKSUM_PARTIAL
      const f = file("partial.pcap", pcapBytes([p], LINKTYPE_RAW)), out = join(dir, "partial-out.pcapng");
      const s = await runReplay(f, undefined, out, { records: true });
      assert.deepEqual([s.packets![0]!.after!.dst, s.packets![0]!.after!.dport], ["10.244.1.12", 53]);
      const o = readCapture(readFileSync(out), out).records[0]!.data;
      assert.equal((o[36]! << 8) | o[37]!, pseudo(o), "the checksum field holds the partial sum of the rewritten pseudo-header");
    });

    // A pod's TSO packet as a TUN with IFF_VNET_HDR (and TUNSETVNETHDRSZ 12) reads it: virtio_net_hdr_v1
    // (flags NEEDS_CSUM, gso_type TCPV4, hdr_len, gso_size, csum_start, csum_offset, num_buffers) then the IP packet.
    function tso(dst: string, payload: number, mss: number): Uint8Array {
      const body = new Uint8Array(payload).map((_, i) => (i * 7 + 3) & 255);
      const p = packet({ src: "10.244.1.5", dst, id: 1000, df: true, ttl: 64 }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.ACK | TCP.PSH, seq: 5000, ack: 1, payload: body });
      const h = Buffer.alloc(12);
      h[0] = 1; h[1] = 1; h.writeUInt16LE(40, 2); h.writeUInt16LE(mss, 4); h.writeUInt16LE(20, 6); h.writeUInt16LE(16, 8); h.writeUInt16LE(0, 10);
      return Uint8Array.from([...h, ...p]);
    }
    const remoteConfig = () => {
      const c = join(dir, "two-nodes.json");
      writeFileSync(c, JSON.stringify({
        node: { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" },
        services: [{ name: "web", clusterIP: "10.96.0.10", ports: [{ port: 80, targetPort: 8080 }], backends: [{ ip: "10.244.1.10" }] }],
        nodes: [{ name: "node-b", underlayIP: "10.99.0.2", podCIDR: "10.244.2.0/24" }],
      }));
      return c;
    };

    it("LINKTYPE_USER0 with a 12-byte virtio header: a TSO packet to a remote pod becomes gso_size segments, next to each other in --out (tshark: VXLAN, contiguous sequence numbers, valid checksums); one to a service stays one GSO packet, DNATed", async () => {
      const mss = 1398, payload = 20_000, n = Math.ceil(payload / mss);
      const small = packet({ src: "10.244.1.5", dst: "10.244.2.9", ttl: 64 }, { proto: "udp", sport: 9, dport: 9 });
      const f = file("vnet.pcap", pcapBytes([tso("10.244.2.9", payload, mss), Uint8Array.from([...new Uint8Array(12), ...small]), tso("10.96.0.10", 8000, 1448)], LINKTYPE_USER0));
      const out = join(dir, "vnet-out.pcapng");
      const s = await runReplay(f, remoteConfig(), out, { records: true });
      const [big, one, svc] = s.packets!;
      assert.deepEqual(big!.gso, { type: "tcpv4", size: mss });
      assert.equal(big!.verdict, "overlay");
      assert.deepEqual(big!.via, { node: "10.99.0.2", vni: 1 });
      assert.deepEqual(big!.out, Array.from({ length: n }, (_, i) => i + 1), "the segments, in order, before the next input's output");
      assert.deepEqual(one!.out, [n + 1]);
      assert.deepEqual([svc!.verdict, svc!.after?.dst, svc!.after?.dport, svc!.out], ["tun", "10.244.1.10", 8080, [n + 2]]);
      assert.ok(svc!.notes.includes("gso"), JSON.stringify(svc!.notes));
      const rows = tshark(out, ["frame.number", "vxlan.vni", "tcp.seq_raw", "tcp.len", "ip.checksum.status", "tcp.checksum.status", "frame.comment"],
        ["-d", "udp.port==8472,vxlan", "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"]);
      const segs = rows.slice(0, n);
      let seq = 5000, got = 0;
      for (const [k, r] of segs.entries()) {
        assert.equal(r[1], "1", `segment ${k}: VNI`);
        assert.equal(Number(r[2]), seq, `segment ${k}: sequence number`);
        assert.ok(Number(r[3]) <= mss, `segment ${k}: ${r[3]} bytes of TCP payload, gso_size ${mss}`);
        assert.deepEqual([r[4]!.split(",").pop(), r[5]], [CHECKSUM_GOOD, CHECKSUM_GOOD], `segment ${k}: inner IPv4 and TCP checksums`);
        assert.match(r[6]!, new RegExp(`segment ${k + 1} of ${n} \\(GSO tcpv4, size ${mss}\\)`));
        seq += Number(r[3]); got += Number(r[3]);
      }
      assert.equal(got, payload);
      // the super-packet to the service: one packet, its destination rewritten (the kernel segments it later)
      const d = dissect([readCapture(readFileSync(out), out).records[n + 1]!.data]);
      assert.deepEqual([d[0]!.get("ip.dst"), d[0]!.get("tcp.dstport"), d[0]!.get("ip.len")], ["10.244.1.10", "8080", String(20 + 20 + 8000)]);
    });

    it("--conntrack: a capture taken mid-flow keeps the live node's backend and reverse NAT; without it the client's segment is taken up anew and the backend's reply goes on un-NATed", async () => {
      // the live node had sent this connection to 10.244.1.77 (a backend its tables had then)
      const flows = file("flows.json", new TextEncoder().encode(JSON.stringify({ entries: 1, capacity: 262144, matched: 1, shown: 1, flows: [{
        proto: "tcp", src: "10.244.1.20", sport: 41000, dst: "10.96.0.10", dport: 80, backend: "10.244.1.77", backendPort: 8080,
        replyDst: "10.244.1.20", replyDport: 41000, state: "ESTABLISHED", dnat: true, snat: false, replied: true,
        service: "default/web:80 (10.96.0.10:80/TCP)", ageSec: 30, expiresInSec: 431970,
      }] })));
      const data = packet({ src: "10.244.1.20", dst: "10.96.0.10", ttl: 63 }, { proto: "tcp", sport: 41000, dport: 80, flags: TCP.ACK | TCP.PSH, seq: 100, ack: 200, payload: new Uint8Array(10) });
      const answer = packet({ src: "10.244.1.77", dst: "10.244.1.20", ttl: 63 }, { proto: "tcp", sport: 8080, dport: 41000, flags: TCP.ACK, seq: 200, ack: 110 });
      const f = file("midflow.pcap", pcapBytes([data, answer], LINKTYPE_RAW));
      const seeded = await runReplay(f, undefined, join(dir, "mid-out.pcapng"), { conntrack: flows, records: true });
      assert.deepEqual([seeded.seeded!.inserted, seeded.seeded!.refused], [1, []]);
      assert.deepEqual(seeded.packets!.map((p) => [p.after?.src, p.after?.sport, p.after?.dst, p.after?.dport, p.service]), [
        ["10.244.1.20", 41000, "10.244.1.77", 8080, "default/web:80"], ["10.96.0.10", 80, "10.244.1.20", 41000, "default/web:80"],
      ]);
      assert.equal(seeded.newFlows, 0);
      const outs = readCapture(readFileSync(join(dir, "mid-out.pcapng")), "mid-out").records.map((r) => r.data);
      const d = dissect(outs);
      assert.deepEqual(d.map((x) => [x.get("ip.src"), x.get("tcp.srcport"), x.get("tcp.checksum.status")]), [["10.244.1.20", "41000", CHECKSUM_GOOD], ["10.96.0.10", "80", CHECKSUM_GOOD]]);
      const fresh = await runReplay(f, undefined, undefined, { records: true });
      assert.ok(["10.244.1.10", "10.244.1.11"].includes(fresh.packets![0]!.after!.dst), "a new backend from today's tables");
      assert.equal(fresh.newFlows, 1);
      assert.equal(fresh.packets![1]!.after!.src, "10.244.1.77", "no flow knows the reply: it goes on as it came");
      // a flow the engine cannot take is reported, not fatal
      const twice = file("twice.json", new TextEncoder().encode(JSON.stringify({ flows: [JSON.parse(readFileSync(flows, "utf8")).flows[0], JSON.parse(readFileSync(flows, "utf8")).flows[0], { proto: "sctp" }] })));
      const r = await runReplay(f, undefined, undefined, { conntrack: twice });
      assert.deepEqual([r.seeded!.inserted, r.seeded!.refused.map((x) => x.flow)], [1, [1, 2]]);
      assert.match(r.seeded!.refused[1]!.why, /proto "sctp" is not tcp, udp or icmp/);
      await assert.rejects(runReplay(f, undefined, undefined, { conntrack: join(dir, "none.json") }), /cannot read the flows in .*none\.json: ENOENT; write them on the node with: wasp conntrack --json/);
    });
  });
});
