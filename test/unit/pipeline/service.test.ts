// Services: DNAT of new flows to a backend, reverse NAT of replies, backend selection (random,
// Maglev), flows across reloads, rejects (RFC 793 RST, RFC 792 port unreachable), hairpin SNAT,
// NodePort on local addresses, echo to a VIP, the TCP state machine.
import assert from "node:assert/strict";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { OpWriter, type TestService } from "../../helpers/ops.js";
import { newEngine, clusterRoutes, commit, run, runOne, expectVerdict, tsharkValid, referenceValid, Verdict, Drop, MASQ4 } from "./setup.js";
import { Note, ServiceFlag, FlowFlag, CT_FLAGS, CT_STATE, CT_STATE_NAMES } from "../../../src/engine/index.js";

const CLIENT = "10.244.1.5", VIP = "10.96.0.10";
const web = (backends: string[], extra: Partial<TestService> = {}): TestService =>
  ({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: backends.map((ip) => ({ ip, port: 8080 })), ...extra });
const dns = (backends: string[], extra: Partial<TestService> = {}): TestService =>
  ({ vip: VIP, port: 53, proto: "udp", id: 2, backends: backends.map((ip) => ({ ip, port: 5353 })), ...extra });
const syn = (sport: number, src = CLIENT, dst = VIP, dport = 80) => packet({ src, dst }, { proto: "tcp", sport, dport, flags: TCP.SYN, seq: 5000 });
const seg = (sport: number, flags: number, src = CLIENT, dst = VIP) => packet({ src, dst }, { proto: "tcp", sport, dport: 80, flags, seq: 5001, ack: 1 });
const udp = (sport: number, src = CLIENT) => packet({ src, dst: VIP }, { proto: "udp", sport, dport: 53, payload: new Uint8Array(12).fill(5) });

describe("pipeline: services", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => { e = newEngine(); });

  it("DNATs a SYN to a ClusterIP to a backend; the reply comes from VIP:port; both verify under tshark", () => {
    commit(e, clusterRoutes().service(web(["10.244.1.10", "10.244.1.11"])));
    const o = runOne(e, syn(40000));
    expectVerdict(o, Verdict.Tun);
    const q = parse(o.bytes);
    assert.ok(["10.244.1.10", "10.244.1.11"].includes(q.dst), q.dst);
    assert.deepEqual([q.src, q.sport, q.dport, q.ttl], [CLIENT, 40000, 8080, 63]);
    assert.equal(o.slot.service, 2, "service id + 1");
    assert.ok(o.slot.note & Note.DNAT && o.slot.note & Note.NEW_FLOW, "Note.DNAT and Note.NEW_FLOW set");
    const reply = packet({ src: q.dst, dst: CLIENT }, { proto: "tcp", sport: 8080, dport: 40000, flags: TCP.SYN | TCP.ACK, seq: 9000, ack: 5001 });
    const r = runOne(e, reply, 101);
    expectVerdict(r, Verdict.Tun);
    const rq = parse(r.bytes);
    assert.deepEqual([rq.src, rq.sport, rq.dst, rq.dport], [VIP, 80, CLIENT, 40000]);
    assert.ok(r.slot.note & Note.REVERSE_NAT, "Note.REVERSE_NAT set");
    referenceValid(o.bytes); referenceValid(r.bytes);
    const [d1, d2] = tsharkValid([o.bytes, r.bytes]);
    assert.equal(d1!.get("tcp.checksum.status"), "1");
    assert.equal(d2!.get("ip.src"), VIP);
  });

  it("later packets of a flow hit conntrack and keep the backend", () => {
    commit(e, clusterRoutes().service(web(["10.244.1.10", "10.244.1.11", "10.244.1.12"])));
    const first = parse(runOne(e, syn(40001)).bytes).dst;
    for (let i = 0; i < 20; i++) {
      const o = runOne(e, seg(40001, TCP.ACK), 101 + i);
      assert.equal(parse(o.bytes).dst, first);
      assert.ok(o.slot.note & Note.CT_HIT, "Note.CT_HIT set");
    }
    assert.equal(e.counters().named.new_flows, 1);
  });

  it("random selection spreads 400 flows over both backends (each gets 35-65%)", () => {
    commit(e, clusterRoutes().service(web(["10.244.1.10", "10.244.1.11"])));
    const seen = new Map<string, number>();
    for (let b = 0; b < 10; b++) {
      const outs = run(e, Array.from({ length: 40 }, (_, i) => syn(20000 + b * 40 + i)), 100 + b);
      for (const o of outs) { const d = parse(o.bytes).dst; seen.set(d, (seen.get(d) ?? 0) + 1); }
    }
    assert.deepEqual([...seen.keys()].sort(), ["10.244.1.10", "10.244.1.11"]);
    for (const n of seen.values()) assert.ok(n >= 140 && n <= 260, `${[...seen.entries()]}`);
    assert.equal(e.checkInvariants(), 0);
  });

  it("one client port to two VIPs sharing a backend: both connections live, each reply comes from its own VIP", () => {
    // Linux may reuse a source port towards different destinations; both DNAT to the same backend,
    // so their reply tuples would clash. The kernel makes the second unique with another port.
    commit(e, clusterRoutes().service(web(["10.244.1.10"]))
      .service({ vip: "10.96.0.20", port: 80, proto: "tcp", id: 9, backends: [{ ip: "10.244.1.10", port: 8080 }] }));
    const a = runOne(e, syn(45000, CLIENT, VIP));
    const b = runOne(e, syn(45000, CLIENT, "10.96.0.20"), 101);
    const qa = parse(a.bytes), qb = parse(b.bytes);
    assert.notDeepEqual([qa.src, qa.sport], [qb.src, qb.sport], "the two connections are told apart at the backend");
    const reply = (q: typeof qa) => parse(runOne(e, packet({ src: q.dst, dst: q.src }, { proto: "tcp", sport: 8080, dport: q.sport!, flags: TCP.SYN | TCP.ACK }), 102).bytes);
    const ra = reply(qa), rb = reply(qb);
    assert.deepEqual([ra.src, ra.sport, ra.dst, ra.dport], [VIP, 80, CLIENT, 45000]);
    assert.deepEqual([rb.src, rb.sport, rb.dst, rb.dport], ["10.96.0.20", 80, CLIENT, 45000]);
    assert.equal(e.exports.ctCount(), 2);
    assert.equal(e.checkInvariants(), 0);
  });

  it("a closed flow holding the same reply tuple gives way: the new connection keeps its client port", () => {
    commit(e, clusterRoutes().service(web(["10.244.1.10"]))
      .service({ vip: "10.96.0.20", port: 80, proto: "tcp", id: 9, backends: [{ ip: "10.244.1.10", port: 8080 }] }));
    runOne(e, syn(45001, CLIENT, VIP));
    runOne(e, packet({ src: "10.244.1.10", dst: CLIENT }, { proto: "tcp", sport: 8080, dport: 45001, flags: TCP.RST | TCP.ACK }), 101);
    const b = parse(runOne(e, syn(45001, CLIENT, "10.96.0.20"), 102).bytes);
    assert.deepEqual([b.src, b.sport], [CLIENT, 45001]);
    assert.equal(e.exports.ctCount(), 1);
  });

  describe("Maglev selection (Eisenbud et al., NSDI 2016)", () => {
    const five = ["10.244.1.10", "10.244.1.11", "10.244.1.12", "10.244.2.13", "10.244.2.14"];
    const maglev = (bs: string[]) => web(bs, { select: 1 });
    function assign(eng: ReturnType<typeof newEngine>, n: number, now: number): string[] {
      const out: string[] = [];
      for (let b = 0; b < n / 50; b++) {
        const outs = run(eng, Array.from({ length: 50 }, (_, i) => syn(10000 + b * 50 + i, `10.244.1.${100 + (i % 7)}`)), now);
        for (const o of outs) {
          const p = o.slot.verdict === Verdict.Overlay ? o.bytes.subarray(50) : o.bytes;
          out.push(parse(p).dst);
        }
      }
      return out;
    }

    it("the same 5-tuple gets the same backend after a table reload and a conntrack flush, and in another engine", () => {
      commit(e, clusterRoutes().service(maglev(five)));
      const a = assign(e, 1000, 100);
      e.exports.ctFlush();
      commit(e, clusterRoutes().service(maglev(five)));
      const b = assign(e, 1000, 200);
      assert.deepEqual(b, a);
      const other = newEngine({ seed: 7 });
      commit(other, clusterRoutes().service(maglev(five)));
      assert.deepEqual(assign(other, 1000, 100), a, "another node (another random seed) picks the same backends");
      assert.equal(new Set(a).size, 5, "every backend used");
    });

    it("removing one of 5 backends moves only its own flows (about 1/5), the rest stay", () => {
      commit(e, clusterRoutes().service(maglev(five)));
      const before = assign(e, 2000, 100);
      e.exports.ctFlush();
      commit(e, clusterRoutes().service(maglev(five.filter((b) => b !== "10.244.1.12"))));
      const after = assign(e, 2000, 200);
      let moved = 0, movedOthers = 0;
      before.forEach((b, i) => {
        if (after[i] !== b) { moved++; if (b !== "10.244.1.12") movedOthers++; }
      });
      const share = before.filter((b) => b === "10.244.1.12").length / before.length;
      assert.ok(share > 0.12 && share < 0.28, `removed backend held ${share}`);
      assert.ok(!after.includes("10.244.1.12"), "no flow goes to the removed backend 10.244.1.12");
      // the paper's minimal disruption: few flows of surviving backends move (table size >= 100 N)
      assert.ok(movedOthers / before.length < 0.05, `${movedOthers} flows of surviving backends moved`);
      assert.ok(Math.abs(moved / before.length - 0.2) < 0.09, `moved ${moved / before.length}`);
    });
  });

  describe("flows across a generation switch", () => {
    it("a TCP flow keeps its backend when the list changes around it, and even when its backend is removed", () => {
      commit(e, clusterRoutes().service(web(["10.244.1.10", "10.244.1.11"])));
      const b = parse(runOne(e, syn(40100)).bytes).dst;
      const other = b === "10.244.1.10" ? "10.244.1.11" : "10.244.1.10";
      commit(e, clusterRoutes().service(web([b, other, "10.244.1.12", "10.244.1.13"])));
      assert.equal(parse(runOne(e, seg(40100, TCP.ACK), 101).bytes).dst, b);
      commit(e, clusterRoutes().service(web([other])));
      const o = runOne(e, seg(40100, TCP.ACK | TCP.PSH), 102);
      expectVerdict(o, Verdict.Tun);
      assert.equal(parse(o.bytes).dst, b, "established TCP stays on a removed backend until it ends");
      assert.equal(parse(runOne(e, syn(40101), 103).bytes).dst, other, "new flows only to the live backend");
      assert.equal(e.checkInvariants(), 0);
    });

    it("a UDP flow to a removed backend is flushed (stale_udp_flushed) and its next packet picks a live backend", () => {
      commit(e, clusterRoutes().service(dns(["10.244.1.10", "10.244.1.11"])));
      const b = parse(runOne(e, udp(3000)).bytes).dst;
      const other = b === "10.244.1.10" ? "10.244.1.11" : "10.244.1.10";
      commit(e, clusterRoutes().service(dns([b, other, "10.244.1.12"])));
      assert.equal(parse(runOne(e, udp(3000), 101).bytes).dst, b, "kept while the backend lives");
      assert.equal(e.counters().named.stale_udp_flushed, 0);
      commit(e, clusterRoutes().service(dns([other])));
      const o = runOne(e, udp(3000), 102);
      expectVerdict(o, Verdict.Tun);
      assert.equal(parse(o.bytes).dst, other);
      assert.equal(e.counters().named.stale_udp_flushed, 1);
      assert.ok(o.slot.note & Note.NEW_FLOW, "Note.NEW_FLOW set");
      assert.equal(e.exports.ctCount(), 1);
      assert.equal(e.checkInvariants(), 0);
    });

    it("a backend that becomes terminating (listed, not eligible) keeps its UDP flow but takes no new ones", () => {
      commit(e, clusterRoutes().service(dns(["10.244.1.10"])));
      runOne(e, udp(3002));
      commit(e, clusterRoutes().service(dns(["10.244.1.11", "10.244.1.10"], { eligible: 1 })));
      const o = runOne(e, udp(3002), 101);
      assert.equal(parse(o.bytes).dst, "10.244.1.10", "the flow stays on its terminating backend");
      assert.equal(e.counters().named.stale_udp_flushed, 0);
      for (let i = 0; i < 20; i++) assert.equal(parse(runOne(e, udp(3100 + i), 102).bytes).dst, "10.244.1.11");
    });

    it("a UDP flow whose service is deleted is flushed too, and the VIP then gets NoService", () => {
      commit(e, clusterRoutes().service(dns(["10.244.1.10"])));
      runOne(e, udp(3001));
      commit(e, clusterRoutes());
      const o = runOne(e, udp(3001), 101);
      assert.equal(o.slot.reason, Drop.NoService);
      assert.equal(e.counters().named.stale_udp_flushed, 1);
    });
  });

  describe("a Local traffic policy that leaves this node no endpoint (kube-proxy: DROP, not REJECT)", () => {
    beforeEach(() => commit(e, clusterRoutes().service(web([], { flags: ServiceFlag.DROP_WHEN_EMPTY })).service(dns([], { flags: ServiceFlag.DROP_WHEN_EMPTY }))));

    it("drops a SYN silently as NoLocalBackend: no RST is made", () => {
      const o = runOne(e, syn(40300));
      expectVerdict(o, Verdict.Drop, Drop.NoLocalBackend);
      assert.equal(e.counters().drops.no_local_backend, 1);
      assert.equal(e.counters().named.replies_made, 0);
    });

    it("drops UDP silently as NoLocalBackend: no ICMP port unreachable", () => {
      expectVerdict(runOne(e, udp(3300)), Verdict.Drop, Drop.NoLocalBackend);
    });
  });

  it("a client that reuses a port of a finished VIP connection to reach the backend directly gets the backend's SYN/ACK un-NATed", () => {
    const B = "10.244.1.10";
    commit(e, clusterRoutes().service(web([B])));
    const synAck = (t = 101) => runOne(e, packet({ src: B, dst: CLIENT }, { proto: "tcp", sport: 8080, dport: 40600, flags: TCP.SYN | TCP.ACK, seq: 9000, ack: 5001 }), t);
    // The connection through the VIP: SYN DNATed to the backend, its SYN/ACK reverse-NATed to the VIP.
    assert.equal(parse(runOne(e, syn(40600)).bytes).dst, B);
    assert.equal(parse(synAck().bytes).src, VIP);
    // The same client port, now straight to the backend (a new 4-tuple for the client's kernel).
    const direct = runOne(e, syn(40600, CLIENT, B, 8080), 102);
    assert.deepEqual([parse(direct.bytes).src, parse(direct.bytes).dst], [CLIENT, B]);
    assert.equal(direct.slot.note & Note.DNAT, 0);
    // The backend's answer belongs to the direct connection: it must not come from the VIP.
    const answer = synAck(103);
    assert.deepEqual([parse(answer.bytes).src, parse(answer.bytes).sport], [B, 8080]);
    assert.equal(answer.slot.note & Note.REVERSE_NAT, 0);
  });

  describe("a service without backends", () => {
    beforeEach(() => commit(e, clusterRoutes().service(web([])).service(dns([]))));

    it("answers a SYN with RST|ACK from VIP:port, seq 0, ack = seq + 1 (RFC 793 §3.4)", () => {
      const o = runOne(e, syn(40200));
      expectVerdict(o, Verdict.Tun, Drop.NoBackend);
      const q = parse(o.bytes);
      assert.deepEqual([q.src, q.sport, q.dst, q.dport], [VIP, 80, CLIENT, 40200]);
      assert.equal(q.tcpFlags, TCP.RST | TCP.ACK);
      const d = new DataView(o.bytes.buffer);
      assert.equal(d.getUint32(24), 0, "seq");
      assert.equal(d.getUint32(28), 5001, "ack = SYN's seq + 1");
      referenceValid(o.bytes);
      const [t] = tsharkValid([o.bytes]);
      assert.equal(t!.get("tcp.flags.reset"), "1");
      assert.equal(t!.get("tcp.ack_raw"), "5001");
      assert.equal(e.counters().drops.no_backend, 1);
    });

    it("answers a segment with ACK by a RST whose seq is that ACK number (RFC 793 §3.4)", () => {
      const p = packet({ src: CLIENT, dst: VIP }, { proto: "tcp", sport: 40201, dport: 80, flags: TCP.ACK, seq: 7, ack: 123456 });
      const o = runOne(e, p);
      const q = parse(o.bytes), d = new DataView(o.bytes.buffer);
      assert.equal(q.tcpFlags, TCP.RST);
      assert.equal(d.getUint32(24), 123456);
      tsharkValid([o.bytes]);
    });

    it("never answers a RST (RFC 793): dropped as NoBackend", () => {
      expectVerdict(runOne(e, seg(40202, TCP.RST)), Verdict.Drop, Drop.NoBackend);
    });

    it("answers UDP with ICMP port unreachable (type 3 code 3) from the VIP quoting the datagram", () => {
      const p = udp(3100);
      const o = runOne(e, p);
      expectVerdict(o, Verdict.Tun, Drop.NoBackend);
      const q = parse(o.bytes);
      assert.deepEqual([q.src, q.dst, q.icmpType, q.icmpCode], [VIP, CLIENT, 3, 3]);
      assert.deepEqual([...o.bytes.subarray(28)], [...p]);
      referenceValid(o.bytes);
      const [t] = tsharkValid([o.bytes]);
      assert.deepEqual(t!.all("udp.srcport"), ["3100"], "the quoted datagram");
    });
  });

  it("hairpin: a pod reaching itself through the VIP is SNATed to the masq address and the reply is reversed", () => {
    const POD = "10.244.1.10";
    commit(e, clusterRoutes().service(web([POD])));
    const o = runOne(e, syn(40300, POD));
    expectVerdict(o, Verdict.Tun);
    const q = parse(o.bytes);
    assert.deepEqual([q.src, q.dst, q.dport], [MASQ4, POD, 8080]);
    assert.ok(o.slot.note & Note.SNAT, "Note.SNAT set");
    const reply = packet({ src: POD, dst: MASQ4 }, { proto: "tcp", sport: 8080, dport: q.sport!, flags: TCP.SYN | TCP.ACK });
    const r = runOne(e, reply, 101);
    expectVerdict(r, Verdict.Tun);
    const rq = parse(r.bytes);
    assert.deepEqual([rq.src, rq.sport, rq.dst, rq.dport], [VIP, 80, POD, 40300]);
    tsharkValid([o.bytes, r.bytes]);
  });

  describe("NodePort on any local address", () => {
    const NODE_IP = "192.168.100.1";
    beforeEach(() => commit(e, clusterRoutes().localAddr(NODE_IP)
      .service({ vip: "any", port: 30080, proto: "tcp", kind: 1, id: 5, flags: 4, backends: [{ ip: "10.244.1.10", port: 8080 }] })));

    it("matches a packet to a local address and DNATs it", () => {
      const o = runOne(e, syn(40400, CLIENT, NODE_IP, 30080));
      expectVerdict(o, Verdict.Tun);
      assert.deepEqual([parse(o.bytes).dst, parse(o.bytes).dport], ["10.244.1.10", 8080]);
      const r = runOne(e, packet({ src: "10.244.1.10", dst: CLIENT }, { proto: "tcp", sport: 8080, dport: 40400, flags: TCP.SYN | TCP.ACK }), 101);
      assert.deepEqual([parse(r.bytes).src, parse(r.bytes).sport], [NODE_IP, 30080]);
      tsharkValid([o.bytes, r.bytes]);
    });

    it("does not match a packet to the unspecified address :: (the key of 'any' entries, RFC 4291 §2.5.2)", () => {
      const p = packet({ src: "fd44:0:0:2::7", dst: "::" }, { proto: "tcp", sport: 1234, dport: 30080, flags: TCP.SYN });
      const o = runOne(e, p);
      assert.equal(o.slot.service, 0, "no service matched");
      assert.equal(o.slot.note & Note.DNAT, 0);
      assert.notEqual(o.slot.reason, Drop.NoBackend);
    });

    it("does not match a packet to 0.0.0.0 (the IPv4 'any' key, ::ffff:0.0.0.0)", () => {
      const o = runOne(e, syn(40402, CLIENT, "0.0.0.0", 30080));
      assert.equal(o.slot.service, 0, "no service matched");
      assert.equal(o.slot.note & Note.DNAT, 0);
    });

    it("an IPv6 packet to a local IPv6 address matches the IPv6 entry (::), not the IPv4 one", () => {
      commit(e, clusterRoutes().localAddr(NODE_IP).localAddr("fd99::1")
        .service({ vip: "any", port: 30080, proto: "tcp", kind: 1, id: 5, flags: 4, backends: [{ ip: "10.244.1.10", port: 8080 }] })
        .service({ vip: "any6", port: 30080, proto: "tcp", kind: 1, id: 6, flags: 4, backends: [{ ip: "fd00:10:244:1::a", port: 8080 }] }));
      const o6 = runOne(e, packet({ src: "fd44:0:0:2::7", dst: "fd99::1" }, { proto: "tcp", sport: 1234, dport: 30080, flags: TCP.SYN }));
      assert.deepEqual([o6.slot.service, parse(o6.bytes).dst], [7, "fd00:10:244:1:0:0:0:a"]);
      const o4 = runOne(e, syn(40403, CLIENT, NODE_IP, 30080), 101);
      assert.deepEqual([o4.slot.service, parse(o4.bytes).dst], [6, "10.244.1.10"]);
    });

    it("does not match the same port on an address that is not local", () => {
      const o = runOne(e, syn(40401, CLIENT, "192.168.100.7", 30080));
      expectVerdict(o, Verdict.Host);
      assert.equal(parse(o.bytes).dst, "192.168.100.7");
      assert.equal(o.slot.service, 0);
    });
  });

  describe("ICMP echo to a VIP", () => {
    const ping = (dst = VIP) => packet({ src: CLIENT, dst }, { proto: "icmp", type: 8, rest: 0x12340001, payload: new Uint8Array(16).fill(0x55) });

    it("is answered with an echo reply from the VIP when the marker entry (port 0, proto 0) exists", () => {
      commit(e, clusterRoutes().service(web(["10.244.1.10"])).service({ vip: VIP, port: 0, proto: 0, id: 9, backends: [] }));
      const o = runOne(e, ping());
      expectVerdict(o, Verdict.Tun);
      const q = parse(o.bytes);
      assert.deepEqual([q.src, q.dst, q.icmpType], [VIP, CLIENT, 0]);
      const [t] = tsharkValid([o.bytes]);
      assert.equal(t!.get("icmp.type"), "0");
    });

    it("is not echoed without the marker entry, and never sent back unchanged", () => {
      commit(e, clusterRoutes().service(web(["10.244.1.10"])));
      const o = runOne(e, ping());
      assert.notEqual(o.slot.verdict, Verdict.Host);
      if (o.slot.verdict !== Verdict.Drop) assert.notEqual(parse(o.bytes).icmpType, 0);
    });
  });

  describe("service CIDR addresses without a service", () => {
    beforeEach(() => commit(e, clusterRoutes().service(web(["10.244.1.10"]))));

    it("UDP is rejected as NoService with port unreachable, never routed back to the TUN unchanged", () => {
      const o = runOne(e, packet({ src: CLIENT, dst: "10.96.0.99" }, { proto: "udp", sport: 1, dport: 2 }));
      assert.equal(o.slot.reason, Drop.NoService);
      assert.equal(parse(o.bytes).proto, 1);
      assert.equal(parse(o.bytes).icmpType, 3);
    });

    it("TCP to a VIP on a port without a service is rejected with RST (NoService)", () => {
      const o = runOne(e, syn(40500, CLIENT, VIP, 81));
      assert.equal(o.slot.reason, Drop.NoService);
      assert.equal(parse(o.bytes).tcpFlags! & TCP.RST, TCP.RST);
      assert.equal(parse(o.bytes).src, VIP);
    });
  });

  describe("TCP state", () => {
    /** The state of the only flow, in the kernel's words (as `wasp conntrack` prints it). */
    const state = (eng: ReturnType<typeof newEngine>) => {
      for (let i = 0; i < eng.exports.ctCapacity(); i++) {
        const r = eng.exports.ctRecord(i);
        if (r) return CT_STATE_NAMES[new Uint8Array(eng.memory)[r + CT_STATE]!];
      }
      return "no flow";
    };
    let be: string;
    const back = (flags: number, sport = 40600) => packet({ src: be, dst: CLIENT }, { proto: "tcp", sport: 8080, dport: sport, flags });
    beforeEach(() => {
      commit(e, clusterRoutes().service(web(["10.244.1.10"])));
      be = "10.244.1.10";
    });

    it("follows SYN, SYN-ACK, ACK to ESTABLISHED; a RST moves the flow to CLOSE", () => {
      runOne(e, syn(40600)); assert.equal(state(e), "SYN_SENT");
      runOne(e, back(TCP.SYN | TCP.ACK), 101); assert.equal(state(e), "SYN_RECV");
      runOne(e, seg(40600, TCP.ACK), 102); assert.equal(state(e), "ESTABLISHED");
      runOne(e, back(TCP.RST), 103); assert.equal(state(e), "CLOSE");
    });

    it("a new SYN reusing the client port after CLOSE makes a new flow", () => {
      runOne(e, syn(40600)); runOne(e, back(TCP.SYN | TCP.ACK), 101); runOne(e, seg(40600, TCP.RST), 102);
      assert.equal(state(e), "CLOSE");
      const o = runOne(e, syn(40600), 103);
      expectVerdict(o, Verdict.Tun);
      assert.ok(o.slot.note & Note.NEW_FLOW, "Note.NEW_FLOW set");
      assert.equal(state(e), "SYN_SENT");
      assert.equal(e.exports.ctCount(), 1);
      assert.equal(e.counters().named.new_flows, 2);
    });

    it("FIN both ways then ACK reaches TIME_WAIT, and a new SYN on the same port makes a new flow", () => {
      runOne(e, syn(40600)); runOne(e, back(TCP.SYN | TCP.ACK), 101); runOne(e, seg(40600, TCP.ACK), 102);
      runOne(e, seg(40600, TCP.FIN | TCP.ACK), 103);
      runOne(e, back(TCP.FIN | TCP.ACK), 104);
      runOne(e, seg(40600, TCP.ACK), 105);
      assert.equal(state(e), "TIME_WAIT");
      const o = runOne(e, syn(40600), 106);
      assert.ok(o.slot.note & Note.NEW_FLOW, "Note.NEW_FLOW set");
      assert.equal(state(e), "SYN_SENT");
      assert.equal(e.checkInvariants(), 0);
    });

    it("records each side's FIN in the flow's flags (FlowFlag.FIN_ORIG, then FIN_REPLY), beside DNAT and REPLIED", () => {
      const flags = () => {
        for (let i = 0; i < e.exports.ctCapacity(); i++) {
          const r = e.exports.ctRecord(i);
          if (r) return new Uint8Array(e.memory)[r + CT_FLAGS]!;
        }
        return -1;
      };
      const named = () => Object.entries(FlowFlag).filter(([, bit]) => (flags() & bit) !== 0).map(([k]) => k).sort();
      runOne(e, syn(40600)); runOne(e, back(TCP.SYN | TCP.ACK), 101); runOne(e, seg(40600, TCP.ACK), 102);
      assert.deepEqual(named(), ["DNAT", "REPLIED", "USED"]);
      runOne(e, seg(40600, TCP.FIN | TCP.ACK), 103);
      assert.deepEqual([state(e), named()], ["FIN_WAIT", ["DNAT", "FIN_ORIG", "REPLIED", "USED"]]);
      runOne(e, back(TCP.FIN | TCP.ACK), 104);
      assert.deepEqual([state(e), named()], ["FIN_WAIT", ["DNAT", "FIN_ORIG", "FIN_REPLY", "REPLIED", "USED"]]);
      runOne(e, seg(40600, TCP.ACK), 105);
      assert.equal(state(e), "TIME_WAIT");
    });
  });
});
