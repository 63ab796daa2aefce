// SCTP services, as kube-proxy serves them: a new association to VIP:port goes to a backend on its
// target port and its replies come back from VIP:port, with the CRC32c (RFC 9260 §6.8) right after
// every rewrite (tshark judges, with its CRC 32c check on); flows are tracked as UDP's; a service
// without backends rejects with ICMP port unreachable; ICMP errors about an SCTP flow are
// translated; offload mode hands the flow to the kernel (protocol 132).
import assert from "node:assert/strict";
import { packet, parse } from "../../helpers/packets.js";
import { dissect, CHECKSUM_GOOD } from "../../helpers/tshark.js";
import { newEngine, clusterRoutes, commit, run, runOne, expectVerdict, referenceValid, Verdict, Drop, MASQ4 } from "./setup.js";
import { CT_STATE_NAMES, Note, ServiceFlag, ServiceKind } from "../../../src/engine/index.js";
import type { TestService } from "../../helpers/ops.js";

const CLIENT = "10.244.1.5", VIP = "10.96.0.20", BE = "10.244.1.10";
const svc = (extra: Partial<TestService> = {}): TestService =>
  ({ vip: VIP, port: 9000, proto: "sctp", id: 4, backends: [{ ip: BE, port: 9900 }], ...extra });

/** CRC32c bit by bit (RFC 9260 Appendix A), the tests' own. */
function crc32c(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) { c ^= x; for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1; }
  return (c ^ 0xffffffff) >>> 0;
}

/** An SCTP packet src:sport -> dst:dport (IPv4 or IPv6) carrying one chunk: INIT (vtag 0) or
 *  INIT ACK (vtag = the INIT's tag), with a right CRC32c. */
function sctp(src: string, sport: number, dst: string, dport: number, chunk: "init" | "init-ack" = "init"): Uint8Array {
  const body = new Uint8Array(12 + 20), v = new DataView(body.buffer);
  v.setUint16(0, sport); v.setUint16(2, dport); v.setUint32(4, chunk === "init" ? 0 : 0x11223344);
  body.set([chunk === "init" ? 1 : 2, 0, 0, 20], 12);
  v.setUint32(16, chunk === "init" ? 0x11223344 : 0x55667788); v.setUint32(20, 106496); v.setUint16(24, 10); v.setUint16(26, 10); v.setUint32(28, 1);
  v.setUint32(8, crc32c(body), true);
  // the helper builds the IP header around a UDP datagram; the protocol and the L4 bytes are replaced
  const udp = packet({ src, dst }, { proto: "udp", sport, dport, payload: new Uint8Array(body.length - 8) });
  const p = udp.slice(), six = (p[0]! >> 4) === 6, l4 = six ? 40 : 20;
  p.set(body, l4);
  if (six) p[6] = 132;
  else {
    p[9] = 132; p[10] = 0; p[11] = 0;
    let s = 0; for (let i = 0; i < 20; i += 2) s += (p[i]! << 8) | p[i + 1]!;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    p[10] = (~s >> 8) & 0xff; p[11] = ~s & 0xff;
  }
  return p;
}
const ports = (b: Uint8Array) => { const p = parse(b), d = new DataView(b.buffer, b.byteOffset); return { src: p.src, dst: p.dst, sport: d.getUint16(p.l4Off), dport: d.getUint16(p.l4Off + 2) }; };
const crcStatus = (packets: Uint8Array[]) => dissect(packets, undefined, ["-o", "sctp.checksum:CRC 32c"]).map((t) => t.get("sctp.checksum.status"));

describe("pipeline: SCTP services", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => { e = newEngine(); });

  it("an INIT to VIP:9000 goes to the backend on 9900 and the INIT ACK comes back from VIP:9000; both CRC32c good (tshark), IPv4 checksums valid", () => {
    commit(e, clusterRoutes().service(svc()));
    const o = runOne(e, sctp(CLIENT, 40000, VIP, 9000));
    expectVerdict(o, Verdict.Tun);
    assert.deepEqual(ports(o.bytes), { src: CLIENT, sport: 40000, dst: BE, dport: 9900 });
    assert.ok(o.slot.note & Note.DNAT && o.slot.note & Note.NEW_FLOW, "a new flow, DNATed");
    const r = runOne(e, sctp(BE, 9900, CLIENT, 40000, "init-ack"), 101);
    expectVerdict(r, Verdict.Tun);
    assert.deepEqual(ports(r.bytes), { src: VIP, sport: 9000, dst: CLIENT, dport: 40000 });
    assert.ok(r.slot.note & Note.REVERSE_NAT, "reverse NAT");
    referenceValid(o.bytes); referenceValid(r.bytes);
    assert.deepEqual(crcStatus([o.bytes, r.bytes]), [CHECKSUM_GOOD, CHECKSUM_GOOD]);
    const flow = [...e.flows()].find((f) => f.proto === 132);
    assert.ok(flow, "the association is a tracked flow");
    assert.equal(CT_STATE_NAMES[flow.state], "REPLIED", "tracked as UDP is: replied once the backend answered");
  });

  it("without a port change only the addresses change and the CRC32c bytes stay as they came (no pseudo-header)", () => {
    commit(e, clusterRoutes().service(svc({ backends: [{ ip: BE, port: 9000 }] })));
    const p = sctp(CLIENT, 40001, VIP, 9000);
    const o = runOne(e, p);
    expectVerdict(o, Verdict.Tun);
    assert.deepEqual([...o.bytes.subarray(28, 32)], [...p.subarray(28, 32)], "checksum field unchanged");
    assert.deepEqual(crcStatus([o.bytes]), [CHECKSUM_GOOD]);
  });

  it("from outside the cluster to a LoadBalancer IP: masqueraded (source rewritten) and DNATed, CRC32c good both ways", () => {
    const LB = "198.51.100.30";
    commit(e, clusterRoutes().service(svc({ vip: LB, kind: ServiceKind.LoadBalancer, flags: ServiceFlag.MASQUERADE_EXTERNAL })));
    const o = runOne(e, sctp("192.0.2.7", 41000, LB, 9000));
    expectVerdict(o, Verdict.Tun);
    const f = ports(o.bytes);
    assert.deepEqual([f.src, f.dst, f.dport], [MASQ4, BE, 9900]);
    const r = runOne(e, sctp(BE, 9900, MASQ4, f.sport, "init-ack"), 101);
    assert.deepEqual(ports(r.bytes), { src: LB, sport: 9000, dst: "192.0.2.7", dport: 41000 });
    assert.deepEqual(crcStatus([o.bytes, r.bytes]), [CHECKSUM_GOOD, CHECKSUM_GOOD]);
  });

  it("IPv6: an INIT to an IPv6 VIP is DNATed to the IPv6 backend's target port with a good CRC32c", () => {
    commit(e, clusterRoutes().service(svc({ vip: "fd96::20", backends: [{ ip: "fd44:0:0:1::10", port: 9900 }] })));
    const o = runOne(e, sctp("fd44:0:0:1::5", 40002, "fd96::20", 9000));
    expectVerdict(o, Verdict.Tun);
    assert.equal(ports(o.bytes).dport, 9900);
    assert.deepEqual(crcStatus([o.bytes]), [CHECKSUM_GOOD]);
  });

  it("a service without backends rejects an INIT with ICMP port unreachable from the VIP (RFC 792 type 3 code 3)", () => {
    commit(e, clusterRoutes().service(svc({ backends: [] })));
    const o = runOne(e, sctp(CLIENT, 40003, VIP, 9000));
    expectVerdict(o, Verdict.Tun);
    assert.equal(Drop[o.slot.reason], "NoBackend");
    const q = parse(o.bytes);
    assert.deepEqual([q.src, q.dst, q.icmpType, q.icmpCode], [VIP, CLIENT, 3, 3]);
  });

  it("an ICMP error from the backend about a DNATed SCTP packet is translated back: from the VIP, quoting client -> VIP:9000", () => {
    commit(e, clusterRoutes().service(svc()));
    const fwd = runOne(e, sctp(CLIENT, 40004, VIP, 9000)).bytes.slice();
    const err = packet({ src: BE, dst: CLIENT }, { proto: "icmp", type: 3, code: 4, rest: 1400, payload: fwd });
    const o = runOne(e, err, 101);
    expectVerdict(o, Verdict.Tun);
    assert.ok(o.slot.note & Note.ICMP_ERROR_TRANSLATED, "translated");
    assert.equal(parse(o.bytes).src, VIP);
    assert.deepEqual(ports(o.bytes.subarray(28)), { src: CLIENT, sport: 40004, dst: VIP, dport: 9000 });
    referenceValid(o.bytes);
  });

  it("offload mode: the INIT goes back unchanged with its binding queued for the kernel (a new flow of protocol 132)", () => {
    const o = newEngine({ offload: true });
    commit(o, clusterRoutes().service(svc()));
    const p = sctp(CLIENT, 40005, VIP, 9000);
    const out = run(o, [p])[0]!;
    expectVerdict(out, Verdict.Tun);
    assert.deepEqual([...out.bytes], [...p], "the kernel NATs it (and rewrites its CRC32c)");
    assert.ok(out.slot.note & Note.OFFLOADED, "offloaded");
    assert.equal(o.offloadRequests().count, 2, "DELETE and NEW");
  });
});
