// Answers the core makes itself, for IPv6 (RFC 4443 errors, RFC 793 RST over IPv6) and for senders
// on other nodes (the answer goes back through the tunnel), and masquerade of external clients.
import assert from "node:assert/strict";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, runOne, expectVerdict, tsharkValid, referenceValid, errorValid, Verdict, Drop, SlotFlag, NODE2, MASQ4 } from "./setup.js";
import { Note } from "../../../src/engine/index.js";
import { parseIpv4 } from "../../../src/model/addr.js";
import { dissectOne } from "../../helpers/tshark.js";

const POD6 = "fd44:0:0:1::5", POD6_F = "fd44:0:0:1:0:0:0:5", VIP6 = "fd96::10", VIP6_F = "fd96:0:0:0:0:0:0:10";
const BE6 = "fd44:0:0:1::20", BE6_F = "fd44:0:0:1:0:0:0:20";

function vxlan(inner: Uint8Array): Uint8Array {
  const b = new Uint8Array(22 + inner.length);
  b[0] = 8; b[6] = 1; b[20] = 0x08; b.set(inner, 22);
  return b;
}

describe("pipeline: answers (IPv6, remote senders) and masquerade", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => {
    e = newEngine();
    commit(e, clusterRoutes()
      .service({ vip: VIP6, port: 80, proto: "tcp", id: 1, backends: [] })
      .service({ vip: VIP6, port: 53, proto: "udp", id: 2, backends: [] })
      .service({ vip: VIP6, port: 443, proto: "tcp", id: 3, backends: [{ ip: BE6, port: 8443 }] })
      .service({ vip: "10.96.0.10", port: 53, proto: "udp", id: 4, backends: [] })
      .service({ vip: "10.96.0.10", port: 0, proto: 0, id: 5, backends: [] }));
  });

  it("IPv6 SYN to a VIP without backends: RST|ACK from [VIP]:80, ack = seq + 1, valid checksum (tshark)", () => {
    const o = runOne(e, packet({ src: POD6, dst: VIP6 }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.SYN, seq: 77 }));
    expectVerdict(o, Verdict.Tun, Drop.NoBackend);
    const q = parse(o.bytes);
    assert.deepEqual([q.src, q.sport, q.dst, q.dport, q.tcpFlags], [VIP6_F, 80, POD6_F, 40000, TCP.RST | TCP.ACK]);
    assert.equal(new DataView(o.bytes.buffer).getUint32(48), 78);
    referenceValid(o.bytes);
    tsharkValid([o.bytes]);
  });

  it("IPv6 UDP to a VIP without backends: ICMPv6 port unreachable (type 1 code 4, RFC 4443 §3.1) from the VIP", () => {
    const p = packet({ src: POD6, dst: VIP6 }, { proto: "udp", sport: 3000, dport: 53, payload: new Uint8Array(20).fill(1) });
    const o = runOne(e, p);
    expectVerdict(o, Verdict.Tun, Drop.NoBackend);
    const q = parse(o.bytes);
    assert.deepEqual([q.src, q.dst, q.proto, q.icmpType, q.icmpCode], [VIP6_F, POD6_F, 58, 1, 4]);
    assert.deepEqual([...o.bytes.subarray(48)], [...p]);
    referenceValid(o.bytes);
    const [d] = tsharkValid([o.bytes]);
    assert.equal(d!.get("icmpv6.checksum.status"), "1");
  });

  it("IPv6 hop limit 1: ICMPv6 time exceeded (type 3 code 0) from the IPv6 masq address", () => {
    const o = runOne(e, packet({ src: POD6, dst: "fd44:0:0:1::9", ttl: 1 }, { proto: "udp", sport: 1, dport: 2 }));
    expectVerdict(o, Verdict.Tun, Drop.TtlExceeded);
    const q = parse(o.bytes);
    assert.deepEqual([q.src, q.dst, q.icmpType, q.icmpCode], ["fd00:0:0:0:0:0:0:2", POD6_F, 3, 0]);
    tsharkValid([o.bytes]);
  });

  it("IPv6 too big for the tunnel: ICMPv6 packet too big (type 2) with MTU = underlay MTU - 50 (RFC 8201)", () => {
    const p = packet({ src: POD6, dst: "fd44:0:0:2::7" }, { proto: "udp", sport: 1, dport: 2, payload: new Uint8Array(1500 - 48 - 40 + 1) });
    const o = runOne(e, p);
    expectVerdict(o, Verdict.Tun, Drop.TooBig);
    const q = parse(o.bytes);
    assert.deepEqual([q.dst, q.icmpType, q.icmpCode], [POD6_F, 2, 0]);
    assert.equal(new DataView(o.bytes.buffer).getUint32(44), 1450);
    assert.equal(o.bytes.length, 1280, "RFC 4443 §2.4(c): as much of the packet as fits the minimum MTU");
    // the quote is cut, so tshark cannot verify the quoted UDP checksum; the ICMPv6 one it can
    const d = dissectOne(o.bytes);
    assert.equal(d.get("icmpv6.checksum.status"), "1");
    assert.equal(d.get("icmpv6.mtu"), "1450");
  });

  it("ICMPv6 packet too big from an IPv6 backend is translated back to the VIP, checksum over the new pseudo-header", () => {
    const o1 = runOne(e, packet({ src: POD6, dst: VIP6 }, { proto: "tcp", sport: 41000, dport: 443, flags: TCP.ACK, payload: new Uint8Array(100) }));
    expectVerdict(o1, Verdict.Tun);
    const seen = o1.bytes.slice(); seen[7] = 64;
    const err = packet({ src: BE6, dst: POD6 }, { proto: "icmp", type: 2, code: 0, rest: 1280, payload: seen });
    const o = runOne(e, err, 101);
    expectVerdict(o, Verdict.Tun);
    assert.ok(o.slot.note & Note.ICMP_ERROR_TRANSLATED, "Note.ICMP_ERROR_TRANSLATED set");
    const q = parse(o.bytes), inner = parse(o.bytes.subarray(48));
    assert.deepEqual([q.src, q.dst], [VIP6_F, POD6_F]);
    assert.deepEqual([inner.src, inner.sport, inner.dst, inner.dport], [POD6_F, 41000, VIP6_F, 443]);
    const d = errorValid(o.bytes, 48);
    assert.equal(d.get("icmpv6.checksum.status"), "1");
  });

  it("a remote pod's UDP to a VIP without backends: the port unreachable goes back through the tunnel to its node", () => {
    const inner = packet({ src: "10.244.2.7", dst: "10.96.0.10" }, { proto: "udp", sport: 5000, dport: 53 });
    const o = runOne(e, vxlan(inner), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
    expectVerdict(o, Verdict.Overlay, Drop.NoBackend);
    assert.equal(o.slot.peer, parseIpv4(NODE2));
    const answer = o.bytes.subarray(50);
    const q = parse(answer);
    assert.deepEqual([q.src, q.dst, q.icmpType, q.icmpCode], ["10.96.0.10", "10.244.2.7", 3, 3]);
    referenceValid(answer);
    tsharkValid([o.bytes]);
  });

  it("a remote pod's echo request to a VIP with a marker: the echo reply goes back through the tunnel", () => {
    const inner = packet({ src: "10.244.2.7", dst: "10.96.0.10" }, { proto: "icmp", type: 8 });
    const o = runOne(e, vxlan(inner), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
    expectVerdict(o, Verdict.Overlay);
    const q = parse(o.bytes.subarray(50));
    assert.deepEqual([q.src, q.dst, q.icmpType], ["10.96.0.10", "10.244.2.7", 0]);
    tsharkValid([o.bytes]);
  });

  it("MASQUERADE_EXTERNAL: a client outside the cluster CIDR is SNATed to the masq address; pods are not", () => {
    commit(e, clusterRoutes().localAddr("192.168.100.1")
      .service({ vip: "any", port: 30080, proto: "tcp", kind: 1, id: 7, flags: 4 | 1, backends: [{ ip: "10.244.1.10", port: 8080 }] }));
    const ext = runOne(e, packet({ src: "203.0.113.9", dst: "192.168.100.1" }, { proto: "tcp", sport: 5555, dport: 30080, flags: TCP.SYN }));
    expectVerdict(ext, Verdict.Tun);
    const q = parse(ext.bytes);
    assert.deepEqual([q.src, q.dst, q.dport], [MASQ4, "10.244.1.10", 8080]);
    const back = runOne(e, packet({ src: "10.244.1.10", dst: MASQ4 }, { proto: "tcp", sport: 8080, dport: q.sport!, flags: TCP.SYN | TCP.ACK }), 101);
    const r = parse(back.bytes);
    assert.deepEqual([r.src, r.sport, r.dst, r.dport], ["192.168.100.1", 30080, "203.0.113.9", 5555]);
    tsharkValid([ext.bytes, back.bytes]);
    const pod = runOne(e, packet({ src: "10.244.1.5", dst: "192.168.100.1" }, { proto: "tcp", sport: 5556, dport: 30080, flags: TCP.SYN }), 102);
    assert.equal(parse(pod.bytes).src, "10.244.1.5", "cluster traffic keeps its source");
  });

  it("two external clients with the same source port through masquerade get distinct reply tuples", () => {
    commit(e, clusterRoutes().localAddr("192.168.100.1")
      .service({ vip: "any", port: 30080, proto: "tcp", kind: 1, id: 7, flags: 4 | 1, backends: [{ ip: "10.244.1.10", port: 8080 }] }));
    const a = parse(runOne(e, packet({ src: "203.0.113.9", dst: "192.168.100.1" }, { proto: "tcp", sport: 5555, dport: 30080, flags: TCP.SYN })).bytes);
    const b = parse(runOne(e, packet({ src: "203.0.113.10", dst: "192.168.100.1" }, { proto: "tcp", sport: 5555, dport: 30080, flags: TCP.SYN })).bytes);
    assert.notEqual(a.sport, b.sport);
    const rb = parse(runOne(e, packet({ src: "10.244.1.10", dst: MASQ4 }, { proto: "tcp", sport: 8080, dport: b.sport!, flags: TCP.SYN | TCP.ACK }), 101).bytes);
    assert.equal(rb.dst, "203.0.113.10");
    assert.equal(e.checkInvariants(), 0);
  });
});

describe("pipeline: no ICMP error about a packet to a multicast or broadcast address (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e))", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => { e = newEngine(); commit(e, clusterRoutes()); });

  /** An MLDv2 report (RFC 3810 §5.2) as a pod's kernel sends it: hop limit 1 and a hop-by-hop
   *  router alert (§5), ICMPv6 type 143 to ff02::16, one CHANGE_TO_EXCLUDE record for ff02::fb. */
  function mldv2Report(src: string): Uint8Array {
    const record = [4, 0, 0, 0, 0xff, 0x02, ...new Array<number>(13).fill(0), 0xfb];
    const icmp = packet({ src, dst: "ff02::16", ttl: 1 }, { proto: "icmp", type: 143, code: 0, rest: 1, payload: new Uint8Array(record) });
    // the hop-by-hop header goes between the two: the ICMPv6 checksum's pseudo-header is unchanged
    const hbh = [58, 0, 5, 2, 0, 0, 1, 0]; // next ICMPv6, 8 bytes: router alert (MLD), PadN
    const p = new Uint8Array([...icmp.subarray(0, 40), ...hbh, ...icmp.subarray(40)]);
    p[6] = 0;
    new DataView(p.buffer).setUint16(4, p.length - 40);
    return p;
  }

  it("an MLDv2 report to ff02::16 (hop limit 1, valid per tshark) is dropped as TtlExceeded with no ICMPv6 time exceeded", () => {
    const p = mldv2Report("fe80::5");
    const d = dissectOne(p);
    assert.deepEqual([d.get("icmpv6.type"), d.get("icmpv6.checksum.status")], ["143", "1"], "the input is an MLDv2 report tshark accepts");
    expectVerdict(runOne(e, p), Verdict.Drop, Drop.TtlExceeded);
  });

  it("an IPv6 LLMNR query to ff02::1:3 with hop limit 1 (RFC 4795 §2.5) is dropped with no ICMPv6 error", () => {
    const p = packet({ src: POD6, dst: "ff02::1:3", ttl: 1 }, { proto: "udp", sport: 50000, dport: 5355, payload: new Uint8Array(20) });
    expectVerdict(runOne(e, p), Verdict.Drop, Drop.TtlExceeded);
  });

  it("a TTL 1 datagram to 224.0.0.251 (mDNS) and an LLMNR query to 224.0.0.252 are dropped with no ICMP time exceeded", () => {
    for (const dst of ["224.0.0.251", "224.0.0.252", "239.255.255.250"]) {
      const o = runOne(e, packet({ src: "10.244.1.5", dst, ttl: 1 }, { proto: "udp", sport: 5353, dport: 5353, payload: new Uint8Array(12) }));
      expectVerdict(o, Verdict.Drop, Drop.TtlExceeded);
    }
  });

  it("a TTL 1 datagram to the limited broadcast 255.255.255.255 is dropped with no ICMP time exceeded", () => {
    const o = runOne(e, packet({ src: "10.244.1.5", dst: "255.255.255.255", ttl: 1 }, { proto: "udp", sport: 68, dport: 67 }));
    expectVerdict(o, Verdict.Drop, Drop.TtlExceeded);
  });

  it("the same datagrams to a unicast pod address are still answered with time exceeded (both families)", () => {
    expectVerdict(runOne(e, packet({ src: "10.244.1.5", dst: "10.244.1.6", ttl: 1 }, { proto: "udp", sport: 5353, dport: 5353 })), Verdict.Tun, Drop.TtlExceeded);
    expectVerdict(runOne(e, packet({ src: POD6, dst: "fd44:0:0:1::6", ttl: 1 }, { proto: "udp", sport: 5355, dport: 5355 })), Verdict.Tun, Drop.TtlExceeded);
  });
});
