// ICMP errors about NATed flows are translated as the kernel's nf_nat_icmp_reply_translation does:
// path MTU discovery (RFC 1191) must work through a service VIP.
import assert from "node:assert/strict";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, runOne, expectVerdict, tsharkValid, referenceValid, errorValid, Verdict, Drop } from "./setup.js";
import { Note } from "../../../src/engine/index.js";

const CLIENT = "10.244.1.5", VIP = "10.96.0.10", BE = "10.244.1.10";

describe("pipeline: ICMP error translation", () => {
  let e: ReturnType<typeof newEngine>;
  let dnated: Uint8Array;
  beforeEach(() => {
    e = newEngine();
    commit(e, clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: [{ ip: BE, port: 8080 }] }));
    const o = runOne(e, packet({ src: CLIENT, dst: VIP, df: true }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.ACK | TCP.PSH, seq: 1, ack: 1 }));
    expectVerdict(o, Verdict.Tun);
    dnated = o.bytes.slice();
    dnated[8] = 64;   // as the backend's host saw it before its own stack decided it was too big
    // TTL changed: refresh the quoted header checksum so the quote is exactly what a kernel would send
    dnated[10] = 0; dnated[11] = 0;
    let s = 0; for (let i = 0; i < 20; i += 2) s += (dnated[i]! << 8) | dnated[i + 1]!;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    dnated[10] = (~s >> 8) & 0xff; dnated[11] = ~s & 0xff;
  });

  const fragNeeded = (from: string, quote: Uint8Array) =>
    packet({ src: from, dst: CLIENT }, { proto: "icmp", type: 3, code: 4, rest: 1400, payload: quote });

  it("fragmentation needed from the backend: outer source becomes the VIP, the quote becomes client -> VIP:80, every checksum valid", () => {
    const o = runOne(e, fragNeeded(BE, dnated), 101);
    expectVerdict(o, Verdict.Tun);
    assert.ok(o.slot.note & Note.ICMP_ERROR_TRANSLATED, "Note.ICMP_ERROR_TRANSLATED set");
    assert.equal(e.counters().named.icmp_translated, 1);
    const q = parse(o.bytes);
    assert.deepEqual([q.src, q.dst, q.icmpType, q.icmpCode], [VIP, CLIENT, 3, 4]);
    const inner = parse(o.bytes.subarray(28));
    assert.deepEqual([inner.src, inner.sport, inner.dst, inner.dport], [CLIENT, 40000, VIP, 80]);
    assert.equal(new DataView(o.bytes.buffer).getUint16(26), 1400, "next-hop MTU kept");
    const d = errorValid(o.bytes, 28);
    assert.deepEqual(d.all("ip.src"), [VIP, CLIENT]);
    assert.deepEqual(d.all("ip.dst"), [CLIENT, VIP]);
    assert.equal(d.all("ip.checksum.status").length, 2, "tshark checked the quoted IP header");
    assert.deepEqual([d!.get("tcp.srcport"), d!.get("tcp.dstport")], ["40000", "80"]);
    assert.equal(d!.get("icmp.mtu"), "1400");
  });

  it("an error from a router on the path keeps the router as outer source, still translating the quote", () => {
    const o = runOne(e, fragNeeded("10.244.1.1", dnated), 101);
    expectVerdict(o, Verdict.Tun);
    const q = parse(o.bytes), inner = parse(o.bytes.subarray(28));
    assert.deepEqual([q.src, q.dst], ["10.244.1.1", CLIENT]);
    assert.deepEqual([inner.dst, inner.dport], [VIP, 80]);
    tsharkValid([o.bytes]);
  });

  it("a quote truncated to the IP header plus 8 bytes (RFC 792 minimum) is translated too", () => {
    const o = runOne(e, fragNeeded(BE, dnated.subarray(0, 28)), 101);
    expectVerdict(o, Verdict.Tun);
    const inner = parse(o.bytes.subarray(28));
    assert.deepEqual([inner.src, inner.sport, inner.dst, inner.dport], [CLIENT, 40000, VIP, 80]);
    tsharkValid([o.bytes]);
  });

  it("port unreachable from the client about a reverse-NATed reply goes to the backend, quoting backend -> client", () => {
    commit(e, clusterRoutes().service({ vip: VIP, port: 53, proto: "udp", id: 2, backends: [{ ip: BE, port: 5353 }] }));
    runOne(e, packet({ src: CLIENT, dst: VIP }, { proto: "udp", sport: 4000, dport: 53 }), 101);
    const r = runOne(e, packet({ src: BE, dst: CLIENT }, { proto: "udp", sport: 5353, dport: 4000, payload: new Uint8Array(30).fill(8) }), 102);
    assert.deepEqual([parse(r.bytes).src, parse(r.bytes).sport], [VIP, 53]);
    const quote = r.bytes.slice(); quote[8] = 64; quote[10] = 0; quote[11] = 0;
    let s = 0; for (let i = 0; i < 20; i += 2) s += (quote[i]! << 8) | quote[i + 1]!;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    quote[10] = (~s >> 8) & 0xff; quote[11] = ~s & 0xff;
    const err = packet({ src: CLIENT, dst: VIP }, { proto: "icmp", type: 3, code: 3, rest: 0, payload: quote });
    const o = runOne(e, err, 103);
    expectVerdict(o, Verdict.Tun);
    const q = parse(o.bytes), inner = parse(o.bytes.subarray(28));
    assert.deepEqual([q.src, q.dst], [CLIENT, BE]);
    assert.deepEqual([inner.src, inner.sport, inner.dst, inner.dport], [BE, 5353, CLIENT, 4000]);
    const d = errorValid(o.bytes, 28);
    assert.equal(d.all("ip.checksum.status").length, 2);
    assert.equal(d.get("udp.checksum.status"), "1", "quoted UDP checksum");
  });

  it("an error about a flow nobody tracked is routed unchanged", () => {
    const stranger = packet({ src: CLIENT, dst: "10.244.1.77" }, { proto: "udp", sport: 1, dport: 2 });
    const p = fragNeeded("10.244.1.77", stranger);
    const o = runOne(e, p, 101);
    expectVerdict(o, Verdict.Tun);
    assert.deepEqual([...o.bytes.subarray(12)], [...p.subarray(12)], "only TTL and header checksum change");
    assert.equal(o.bytes[8], p[8]! - 1);
  });

  it("an error with a quote too short to hold an IP header is dropped as BadIcmpError", () => {
    expectVerdict(runOne(e, fragNeeded(BE, dnated.subarray(0, 12)), 101), Verdict.Drop, Drop.BadIcmpError);
  });
});
