// IPv6 (RFC 8200) as the core parses it: extension headers on the way to TCP/UDP, truncated ones,
// service DNAT with IPv6 VIP and backends (checksums over the RFC 8200 §8.1 pseudo-header), ICMPv6
// echo (RFC 4443).
import assert from "node:assert/strict";
import { packet, ipv6, parse, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, run, runOne, expectVerdict, tsharkValid, referenceValid, Verdict, Drop } from "../pipeline/setup.js";
import { HeaderBench, IPV6_FIELDS, hex, toHex } from "./hooks.js";

const POD = "fd44:0:0:1::5", POD_F = "fd44:0:0:1:0:0:0:5";
const VIP = "fd96::10", VIP_F = "fd96:0:0:0:0:0:0:10";
const BE = "fd44:0:0:1::20", BE_F = "fd44:0:0:1:0:0:0:20";

const HOP = 0, DEST = 60, FRAG = 44;
/** An 8-byte option header (hop-by-hop or destination options) holding one PadN option. */
const optsHeader = (next: number) => [next, 0, 1, 4, 0, 0, 0, 0];
const fragHeader = (next: number, offset8: number, more: boolean, id: number) =>
  [next, 0, (offset8 << 3) >> 8, ((offset8 << 3) & 0xf8) | (more ? 1 : 0), id >>> 24, (id >>> 16) & 255, (id >>> 8) & 255, id & 255];

/** The same upper-layer segment behind a chain of extension headers (its checksum does not change:
 *  the pseudo-header holds the final addresses, the upper-layer length and the upper protocol). */
function withExt(src: string, dst: string, seg: Uint8Array, chain: number[][], first: number): Uint8Array {
  const ext = chain.flat();
  const body = new Uint8Array(ext.length + seg.length); body.set(ext); body.set(seg, ext.length);
  return ipv6({ src, dst }, first, body);
}

describe("wire/ipv6", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => {
    e = newEngine();
    commit(e, clusterRoutes()
      .service({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: [{ ip: BE, port: 8080 }] })
      .service({ vip: VIP, port: 53, proto: "udp", id: 2, backends: [{ ip: BE, port: 5353 }] })
      .service({ vip: VIP, port: 0, proto: 0, id: 3, backends: [] }));
  });

  it("DNATs TCP to an IPv6 VIP to an IPv6 backend and reverse-NATs the reply; tshark verifies both", () => {
    const syn = packet({ src: POD, dst: VIP }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.SYN, payload: new Uint8Array(33).fill(9) });
    const o = runOne(e, syn);
    expectVerdict(o, Verdict.Tun);
    const q = parse(o.bytes);
    assert.deepEqual([q.src, q.sport, q.dst, q.dport, q.ttl], [POD_F, 40000, BE_F, 8080, 63]);
    referenceValid(o.bytes);
    const reply = packet({ src: BE, dst: POD }, { proto: "tcp", sport: 8080, dport: 40000, flags: TCP.SYN | TCP.ACK });
    const r = runOne(e, reply, 101);
    expectVerdict(r, Verdict.Tun);
    const rq = parse(r.bytes);
    assert.deepEqual([rq.src, rq.sport, rq.dst, rq.dport], [VIP_F, 80, POD_F, 40000]);
    const [d1, d2] = tsharkValid([o.bytes, r.bytes]);
    assert.equal(d1!.get("ipv6.dst"), BE);
    assert.equal(d1!.get("tcp.checksum.status"), "1");
    assert.equal(d2!.get("ipv6.src"), VIP);
  });

  it("DNATs UDP to an IPv6 VIP with a valid checksum (tshark)", () => {
    const o = runOne(e, packet({ src: POD, dst: VIP }, { proto: "udp", sport: 3333, dport: 53, payload: new Uint8Array(17).fill(1) }));
    expectVerdict(o, Verdict.Tun);
    assert.deepEqual([parse(o.bytes).dst, parse(o.bytes).dport], [BE_F, 5353]);
    referenceValid(o.bytes);
    const [d] = tsharkValid([o.bytes]);
    assert.equal(d!.get("udp.checksum.status"), "1");
  });

  it("skips hop-by-hop and destination options headers to reach TCP, and DNATs it", () => {
    const seg = packet({ src: POD, dst: VIP }, { proto: "tcp", sport: 40001, dport: 80, flags: TCP.SYN }).subarray(40);
    const p = withExt(POD, VIP, seg, [optsHeader(DEST), optsHeader(6)], HOP);
    const o = runOne(e, p);
    expectVerdict(o, Verdict.Tun);
    assert.deepEqual([...o.bytes.subarray(40, 56)], [...p.subarray(40, 56)], "extension headers unchanged");
    const [d] = tsharkValid([o.bytes]);
    assert.deepEqual([d!.get("tcp.srcport"), d!.get("tcp.dstport")], ["40001", "8080"]);
    assert.equal(d!.get("tcp.checksum.status"), "1");
  });

  it("skips a fragment header (atomic fragment, offset 0) to reach UDP, and DNATs it", () => {
    const seg = packet({ src: POD, dst: VIP }, { proto: "udp", sport: 3334, dport: 53, payload: new Uint8Array(8).fill(2) }).subarray(40);
    const p = withExt(POD, VIP, seg, [optsHeader(FRAG), fragHeader(17, 0, false, 0xabcd)], HOP);
    const o = runOne(e, p);
    expectVerdict(o, Verdict.Tun);
    const [d] = tsharkValid([o.bytes]);
    assert.deepEqual([d!.get("udp.srcport"), d!.get("udp.dstport")], ["3334", "5353"]);
    assert.equal(d!.get("udp.checksum.status"), "1");
  });

  it("a fragmented UDP datagram to an IPv6 VIP: every fragment goes to the backend, tshark reassembles a valid datagram", () => {
    const seg = packet({ src: POD, dst: VIP }, { proto: "udp", sport: 3335, dport: 53, payload: Uint8Array.from({ length: 200 }, (_, i) => i) }).subarray(40);
    const f1 = withExt(POD, VIP, seg.subarray(0, 104), [fragHeader(17, 0, true, 0x5151)], FRAG);
    const f2 = withExt(POD, VIP, seg.subarray(104), [fragHeader(17, 13, false, 0x5151)], FRAG);
    const [a, b] = run(e, [f1, f2]);
    expectVerdict(a!, Verdict.Tun); expectVerdict(b!, Verdict.Tun);
    assert.equal(parse(a!.bytes).dst, BE_F);
    assert.equal(parse(b!.bytes).dst, BE_F);
    const ds = tsharkValid([a!.bytes, b!.bytes]);
    assert.equal(ds[1]!.get("udp.dstport"), "5353");
    assert.equal(ds[1]!.get("udp.checksum.status"), "1");
  });

  it("a later IPv6 fragment to a VIP without its first fragment is held, and dropped as FragmentUntracked 3 s later", () => {
    const seg = packet({ src: POD, dst: VIP }, { proto: "udp", sport: 3336, dport: 53, payload: new Uint8Array(200) }).subarray(40);
    expectVerdict(runOne(e, withExt(POD, VIP, seg.subarray(104), [fragHeader(17, 13, false, 0x6161)], FRAG)), Verdict.Drop, Drop.FragmentHeld);
    e.sweep(103, 64);
    assert.equal(e.counters().drops.fragment_untracked, 1);
  });

  it("an IPv6 datagram whose fragments come last first (RFC 8200 §4.5 fragment header): the later fragments are held and delivered after the first, byte-exact; tshark reassembles it", () => {
    const seg = packet({ src: POD, dst: VIP }, { proto: "udp", sport: 3337, dport: 53, payload: Uint8Array.from({ length: 300 }, (_, i) => i) }).subarray(40);
    const frag = (at: number, end: number, more: boolean, dst = VIP, hop = 64) =>
      ipv6({ src: POD, dst, ttl: hop }, FRAG, Uint8Array.from([...fragHeader(17, at / 8, more, 0x7171), ...seg.subarray(at, end)]));
    const [c, b, a] = run(e, [frag(208, 308, false), frag(104, 208, true), frag(0, 104, true)]);
    expectVerdict(c!, Verdict.Drop, Drop.FragmentHeld); expectVerdict(b!, Verdict.Drop, Drop.FragmentHeld);
    expectVerdict(a!, Verdict.Tun);
    const released = e.releasedPackets();
    // built apart from the core: to the backend, hop limit one less; nothing else changes
    assert.deepEqual(released.map((r) => [...r.bytes]).sort(), [[...frag(208, 308, false, BE, 63)], [...frag(104, 208, true, BE, 63)]].sort());
    const ds = tsharkValid([a!.bytes, ...released.map((r) => r.bytes)]);
    const whole = ds.filter((d) => d.get("udp.dstport") !== undefined).at(-1)!;
    assert.equal(whole.get("udp.dstport"), "5353", "reassembled by tshark");
    assert.equal(whole.get("udp.checksum.status"), "1");
  });

  it("drops a hop-by-hop header whose length runs past the packet as BadIpv6Header", () => {
    const seg = packet({ src: POD, dst: VIP }, { proto: "tcp", sport: 40002, dport: 80 }).subarray(40);
    const hbh = optsHeader(6); hbh[1] = 5;    // says 48 bytes; 8 + 20 remain
    expectVerdict(runOne(e, withExt(POD, VIP, seg, [hbh], HOP)), Verdict.Drop, Drop.BadIpv6Header);
  });

  it("drops an extension header cut off after 4 bytes as BadIpv6Header", () => {
    const p = ipv6({ src: POD, dst: VIP }, DEST, Uint8Array.from([6, 0, 1, 0]));
    expectVerdict(runOne(e, p), Verdict.Drop, Drop.BadIpv6Header);
  });

  it("drops a payload length beyond the bytes received as BadIpv6Header, and a 39-byte packet as TooShort", () => {
    const p = packet({ src: POD, dst: VIP }, { proto: "udp", sport: 1, dport: 53 });
    new DataView(p.buffer).setUint16(4, 100);
    expectVerdict(runOne(e, p), Verdict.Drop, Drop.BadIpv6Header);
    expectVerdict(runOne(e, p.slice(0, 39)), Verdict.Drop, Drop.TooShort);
  });

  it("drops a chain of 9 extension headers (beyond what it walks) instead of looping", () => {
    const seg = packet({ src: POD, dst: VIP }, { proto: "udp", sport: 5, dport: 53 }).subarray(40);
    const chain = Array.from({ length: 9 }, (_, i) => optsHeader(i === 8 ? 17 : DEST));
    expectVerdict(runOne(e, withExt(POD, VIP, seg, chain, DEST)), Verdict.Drop, Drop.BadIpv6Header);
  });

  it("answers an ICMPv6 echo request to a VIP with a marker entry by an echo reply (type 129) from the VIP", () => {
    const p = packet({ src: POD, dst: VIP }, { proto: "icmp", type: 128, rest: 0x00420007, payload: new Uint8Array(24).fill(0x61) });
    const o = runOne(e, p);
    expectVerdict(o, Verdict.Tun);
    const q = parse(o.bytes);
    assert.deepEqual([q.src, q.dst, q.icmpType], [VIP_F, POD_F, 129]);
    assert.deepEqual([...o.bytes.subarray(44, 48)], [0, 0x42, 0, 7], "identifier and sequence kept");
    referenceValid(o.bytes);
    const [d] = tsharkValid([o.bytes]);
    assert.equal(d!.get("icmpv6.type"), "129");
    assert.equal(d!.get("icmpv6.checksum.status"), "1");
  });

  it("forwards an ICMPv6 echo between pods unchanged except the hop limit", () => {
    const p = packet({ src: POD, dst: "fd44:0:0:1::6" }, { proto: "icmp", type: 128 });
    const o = runOne(e, p);
    expectVerdict(o, Verdict.Tun);
    assert.equal(parse(o.bytes).ttl, 63);
    assert.deepEqual([...o.bytes.subarray(8)], [...p.subarray(8)]);
  });

  it("an IPv6 service with only IPv4 backends rejects (no family translation)", () => {
    const w = clusterRoutes().service({ vip: VIP, port: 81, proto: "tcp", id: 9, backends: [{ ip: "10.244.1.20", port: 80 }] });
    commit(e, w);
    const [o] = run(e, [packet({ src: POD, dst: VIP }, { proto: "tcp", sport: 1, dport: 81, flags: TCP.SYN })]);
    assert.equal(o!.slot.reason, Drop.NoBackend);
    assert.notEqual(o!.slot.verdict, Verdict.Host);
  });
});

describe("wire/ipv6: one literal packet through the Ipv6 view, checkIpv6's walk and emitIpv6 (no tables)", () => {
  // The first fragment of a UDP datagram, fd00::5 -> fd00::6: fixed header, a fragment header, 8 bytes
  // of UDP. tshark 4.0 decodes traffic class 0, flow label 0, payload length 16, next header 44,
  // hop limit 64; fragment header: next header 17, offset 0, more fragments, id 0xdeadbeef.
  const FIXED = hex("6000 0000 0010 2c40 fd00 0000 0000 0000 0000 0000 0000 0005 fd00 0000 0000 0000 0000 0000 0000 0006");
  const PACKET = new Uint8Array([...FIXED, ...hex("1100 0001 dead beef"), ...hex("9c40 0035 0018 0000")]);
  const b = new HeaderBench();

  it("decodes the fixed header and the fragment header as tshark does, and emitIpv6 writes the same 40 bytes", () => {
    assert.equal(b.check("ipv6DecodeForTest", PACKET.length, PACKET), "None", "checkIpv6");
    const f = b.fields(IPV6_FIELDS);
    assert.deepEqual(f, {
      version: 6, payloadLen: 16, next: 44, hopLimit: 64, src: 8, dst: 24,
      l4: 48, proto: 17, isFragment: 1, fragOffset: 0, moreFragments: 1, fragId: 0xdeadbeef,
    });
    const addr = (off: number) => toHex(b.bytes(b.at + off, 16));
    assert.deepEqual([addr(f.src), addr(f.dst)], ["fd000000000000000000000000000005", "fd000000000000000000000000000006"]);
    b.put(b.scratch + 64, PACKET.subarray(8, 40));   // source and destination for the emit
    b.hooks.ipv6EmitForTest(b.scratch, 16, 44, 64, b.scratch + 64, b.scratch + 80);
    assert.equal(toHex(b.bytes(b.scratch, 40)), toHex(FIXED));
  });
});
