// Connection tracking through the engine: hits and misses from both directions, deletion, a full
// table's eviction order, and expiry by the kernel's default timeouts (nf_conntrack_*_timeout*).
import assert from "node:assert/strict";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, run, runOne, expectVerdict, Verdict } from "../pipeline/setup.js";
import { Note, CT_F_SPORT } from "../../../src/engine/index.js";

const VIP = "10.96.0.10", BE = "10.244.1.10";
const syn = (sport: number, src = "10.244.1.5") => packet({ src, dst: VIP }, { proto: "tcp", sport, dport: 80, flags: TCP.SYN });
const ack = (sport: number, src = "10.244.1.5") => packet({ src, dst: VIP }, { proto: "tcp", sport, dport: 80, flags: TCP.ACK });
const synAck = (dport: number, dst = "10.244.1.5") => packet({ src: BE, dst }, { proto: "tcp", sport: 8080, dport, flags: TCP.SYN | TCP.ACK });
const udp = (sport: number) => packet({ src: "10.244.1.5", dst: VIP }, { proto: "udp", sport, dport: 53 });
const udpReply = (dport: number) => packet({ src: BE, dst: "10.244.1.5" }, { proto: "udp", sport: 5353, dport });

function setup(cap = 1024): ReturnType<typeof newEngine> {
  const e = newEngine({ conntrackCapacity: cap });
  commit(e, clusterRoutes()
    .service({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: [{ ip: BE, port: 8080 }] })
    .service({ vip: VIP, port: 53, proto: "udp", id: 2, backends: [{ ip: BE, port: 5353 }] }));
  return e;
}

/** Client ports of the flows in the table. */
function flowPorts(e: ReturnType<typeof newEngine>): number[] {
  const v = e.view(), out: number[] = [];
  for (let i = 0; i < e.exports.ctCapacity(); i++) {
    const r = e.exports.ctRecord(i);
    if (r) out.push(v.getUint16(r + CT_F_SPORT, true));
  }
  return out.sort((a, b) => a - b);
}

describe("table/conntrack", () => {
  it("a miss creates a flow; the same tuple hits it; the reply tuple hits it from the other side", () => {
    const e = setup();
    assert.ok(runOne(e, syn(1000)).slot.note & Note.NEW_FLOW, "the SYN makes a flow (Note.NEW_FLOW)");
    assert.ok(runOne(e, ack(1000), 101).slot.note & Note.CT_HIT, "the ACK finds it (Note.CT_HIT)");
    const r = runOne(e, synAck(1000), 102);
    assert.ok(r.slot.note & Note.CT_HIT && r.slot.note & Note.REVERSE_NAT, "Note.CT_HIT and Note.REVERSE_NAT set");
    assert.equal(e.exports.ctCount(), 1);
    assert.equal(e.counters().named.ct_entries, 1);
    assert.equal(e.checkInvariants(), 0);
  });

  it("a packet from the backend with another port misses: it is routed, not reverse-NATed", () => {
    const e = setup();
    runOne(e, syn(1000));
    const o = runOne(e, synAck(1001), 101);
    expectVerdict(o, Verdict.Tun);
    assert.equal(o.slot.note & Note.REVERSE_NAT, 0);
    assert.equal(parse(o.bytes).src, BE);
  });

  it("after deletion (ctFlush) neither tuple hits, and the counters follow", () => {
    const e = setup();
    run(e, [syn(1000), syn(1001), udp(2000)]);
    assert.equal(e.exports.ctCount(), 3);
    e.exports.ctFlush();
    assert.equal(e.exports.ctCount(), 0);
    assert.equal(e.counters().named.ct_entries, 0);
    assert.equal(runOne(e, synAck(1000), 101).slot.note & Note.REVERSE_NAT, 0);
    assert.equal(e.checkInvariants(), 0);
  });

  it("a full table of 16 evicts the oldest non-established flows first and counts ct_evicted", () => {
    const e = setup(16);
    assert.equal(e.exports.ctCapacity(), 16);
    // four established flows (handshake done), then SYN-only flows, one second apart
    for (let i = 0; i < 4; i++) {
      runOne(e, syn(100 + i), 100); runOne(e, synAck(100 + i), 100); runOne(e, ack(100 + i), 100);
    }
    for (let i = 0; i < 12; i++) { runOne(e, syn(200 + i), 101 + i); assert.equal(e.checkInvariants(), 0); }
    assert.equal(e.exports.ctCount(), 16);
    assert.equal(e.counters().named.ct_evicted, 0);
    for (let i = 0; i < 8; i++) {
      const o = runOne(e, syn(300 + i), 113 + i);
      expectVerdict(o, Verdict.Tun);
      assert.equal(e.checkInvariants(), 0, `invariants after flow ${i}`);
    }
    assert.equal(e.counters().named.ct_evicted, 8);
    assert.equal(e.exports.ctCount(), 16);
    const left = flowPorts(e);
    assert.deepEqual(left, [100, 101, 102, 103, ...Array.from({ length: 4 }, (_, i) => 208 + i), ...Array.from({ length: 8 }, (_, i) => 300 + i)],
      "established flows stay; the oldest SYN flows went first");
  });

  it("a table full of established flows evicts the least recently used one", () => {
    const e = setup(16);
    for (let i = 0; i < 16; i++) { runOne(e, syn(100 + i), 100 + i); runOne(e, synAck(100 + i), 100 + i); runOne(e, ack(100 + i), 100 + i); }
    runOne(e, ack(100), 200);   // flow 100 used again: now the most recent
    runOne(e, syn(999), 201);
    const left = flowPorts(e);
    assert.ok(left.includes(100) && !left.includes(101) && left.includes(999), String(left));
    assert.equal(e.checkInvariants(), 0);
  });

  it("thousands of flows through a 16-entry table keep every invariant", () => {
    const e = setup(16);
    for (let b = 0; b < 50; b++) {
      run(e, Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? udp(10000 + b * 40 + i) : syn(10000 + b * 40 + i))), 100 + b);
      assert.equal(e.checkInvariants(), 0);
      assert.ok(e.exports.ctCount() <= 16, `${e.exports.ctCount()} flows in a table of 16`);
    }
    assert.equal(e.counters().named.new_flows, 2000);
    assert.equal(e.counters().named.ct_evicted + e.counters().named.ct_expired, 2000 - 16);
  });

  describe("a full table is shared fairly between sources", () => {
    const FLOODER = "10.244.1.66", CLIENT = "10.244.2.7";
    const BACKENDS = ["10.244.1.10", "10.244.1.11", "10.244.1.12", "10.244.1.13"];
    const floodUdp = (n: number) => packet({ src: FLOODER, dst: VIP }, { proto: "udp", sport: 1024 + (n % 60000), dport: 53 + Math.floor(n / 60000) });
    /** An established TCP connection from src:sport (SYN, SYN/ACK, ACK at time 100). */
    function establish(e: ReturnType<typeof newEngine>, sport: number, src: string): void {
      runOne(e, syn(sport, src), 100); runOne(e, synAck(sport, src), 100); runOne(e, ack(sport, src), 100);
    }

    function fairSetup(cap: number): ReturnType<typeof newEngine> {
      const e = newEngine({ conntrackCapacity: cap });
      // several backends: a flow that was evicted and made again by its next packet could get another
      const backends = BACKENDS.map((ip) => ({ ip, port: 8080 }));
      const w = clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, backends });
      for (let p = 53; p < 56; p++) w.service({ vip: VIP, port: p, proto: "udp", id: 2 + p, backends });
      commit(e, w);
      return e;
    }

    it("a flood of unique UDP flows from one source through a table of 64: each connection another source opens meanwhile survives the flood batches between its SYN and its SYN/ACK, and keeps its backend", () => {
      const e = fairSetup(64);
      const backendOf = new Map<number, string>();
      let n = 0;
      for (let t = 0; t < 20; t++) {
        const now = 100 + Math.floor(t / 8);   // several batches a second: ties in whole seconds
        const sport = 40000 + t;
        const o = runOne(e, syn(sport, CLIENT), now);
        expectVerdict(o, Verdict.Tun);
        backendOf.set(sport, parse(o.bytes).dst);
        // the flood fills the table twice over before the backend answers
        for (let b = 0; b < 2; b++) run(e, Array.from({ length: 64 }, () => floodUdp(n++)), now);
        const back = runOne(e, packet({ src: backendOf.get(sport)!, dst: CLIENT }, { proto: "tcp", sport: 8080, dport: sport, flags: TCP.SYN | TCP.ACK }), now);
        assert.ok(back.slot.note & Note.REVERSE_NAT, `the SYN/ACK of port ${sport} met its flow (note ${back.slot.note})`);
        runOne(e, ack(sport, CLIENT), now);
        assert.equal(e.checkInvariants(), 0, `invariants after connection ${t}`);
      }
      assert.ok(e.counters().named.ct_evicted >= 20 * 128 - 64, `the flood turned the table over (${e.counters().named.ct_evicted} evicted)`);
      assert.equal(e.counters().named.ct_evicted_share, e.counters().named.ct_evicted, "every eviction took a flood flow (source_share)");
      for (const [sport, be] of backendOf) {
        const o = runOne(e, ack(sport, CLIENT), 105);
        assert.ok(o.slot.note & Note.CT_HIT, `the client's connection from port ${sport} is still tracked`);
        assert.equal(parse(o.bytes).dst, be, `port ${sport} keeps its backend`);
      }
      assert.equal(e.checkInvariants(), 0);
    });

    it("the flooding source keeps turning over only its own flows: the table stays full and the other source holds all it opened", () => {
      const e = fairSetup(32);
      for (let i = 0; i < 6; i++) establish(e, 500 + i, CLIENT);
      for (let b = 0; b < 20; b++) run(e, Array.from({ length: 40 }, (_, i) => floodUdp(b * 40 + i)), 101 + b);
      assert.equal(e.exports.ctCount(), 32);
      assert.deepEqual(flowPorts(e).filter((p) => p >= 500 && p < 506), [500, 501, 502, 503, 504, 505], "the idle established flows of the other source stay");
      assert.equal(e.checkInvariants(), 0);
    });

    it("with every source holding one flow, a SYN made in the same second as idle established flows is not evicted before them (no tie to the half-open class)", () => {
      const e = setup(16);
      for (let i = 0; i < 15; i++) establish(e, 100, `10.244.3.${i + 1}`);
      runOne(e, syn(200, "10.244.4.1"), 100);   // half-open, the 16th flow
      runOne(e, syn(300, "10.244.4.2"), 100);   // table full: something goes
      assert.equal(e.counters().named.ct_evicted_oldest, 1);
      const o = runOne(e, synAck(200, "10.244.4.1"), 100);
      assert.ok(o.slot.note & Note.REVERSE_NAT, "the half-open connection's SYN/ACK is still reverse-NATed");
      assert.equal(e.checkInvariants(), 0);
    });

    it("a SYN unanswered for 2 s or more goes before idle established flows (its client retransmits after 1 s, RFC 6298 2.1)", () => {
      const e = setup(16);
      for (let i = 0; i < 15; i++) establish(e, 100, `10.244.3.${i + 1}`);
      runOne(e, syn(200, "10.244.4.1"), 101);
      runOne(e, syn(300, "10.244.4.2"), 103);
      const o = runOne(e, synAck(200, "10.244.4.1"), 103);
      assert.equal(o.slot.note & Note.REVERSE_NAT, 0, "the stale half-open flow went");
      assert.equal(e.exports.ctCount(), 16);
      assert.equal(e.checkInvariants(), 0);
    });
  });

  describe("expiry (sweep) by the kernel's default timeouts", () => {
    it("UDP unreplied: 30 s (nf_conntrack_udp_timeout)", () => {
      const e = setup();
      runOne(e, udp(2000), 100);
      assert.equal(e.exports.sweep(129, 100), 0);
      assert.equal(e.exports.ctCount(), 1);
      assert.equal(e.exports.sweep(130, 100), 1);
      assert.equal(e.exports.ctCount(), 0);
      assert.equal(e.counters().named.ct_expired, 1);
      assert.equal(e.checkInvariants(), 0);
    });

    it("UDP seen both ways and still active: 120 s (nf_conntrack_udp_timeout_stream)", () => {
      const e = setup();
      runOne(e, udp(2001), 100); runOne(e, udpReply(2001), 101); runOne(e, udp(2001), 105);
      assert.equal(e.exports.sweep(224, 100), 0);
      assert.equal(e.exports.sweep(225, 100), 1);
    });

    it("TCP SYN_SENT: 120 s; ESTABLISHED: 5 days (432000 s)", () => {
      const e = setup();
      runOne(e, syn(1000), 100);
      runOne(e, syn(1001), 100); runOne(e, synAck(1001), 100); runOne(e, ack(1001), 100);
      assert.equal(e.exports.sweep(219, 100), 0);
      assert.equal(e.exports.sweep(220, 100), 1);
      assert.deepEqual(flowPorts(e), [1001]);
      assert.equal(e.exports.sweep(100 + 431999, 100), 0);
      assert.equal(e.exports.sweep(100 + 432000, 100), 1);
    });

    it("TCP CLOSE (after RST): 10 s", () => {
      const e = setup();
      runOne(e, syn(1000), 100); runOne(e, synAck(1000), 100);
      runOne(e, packet({ src: "10.244.1.5", dst: VIP }, { proto: "tcp", sport: 1000, dport: 80, flags: TCP.RST }), 100);
      assert.equal(e.exports.sweep(109, 100), 0);
      assert.equal(e.exports.sweep(110, 100), 1);
    });

    it("sweep removes at most `budget` flows per call", () => {
      const e = setup();
      run(e, Array.from({ length: 10 }, (_, i) => udp(3000 + i)), 100);
      assert.equal(e.exports.sweep(200, 3), 3);
      assert.equal(e.exports.ctCount(), 7);
      assert.equal(e.exports.sweep(200, 100), 7);
      assert.equal(e.checkInvariants(), 0);
    });

    it("an expired flow found by a lookup before the sweep is not used: the packet makes a new flow", () => {
      const e = setup();
      runOne(e, udp(2002), 100);
      const o = runOne(e, udp(2002), 131);
      assert.ok(o.slot.note & Note.NEW_FLOW, "Note.NEW_FLOW set");
      assert.equal(e.exports.ctCount(), 1);
      assert.equal(e.checkInvariants(), 0);
    });

    it("traffic refreshes the timeout", () => {
      const e = setup();
      runOne(e, udp(2003), 100); runOne(e, udp(2003), 125);
      assert.equal(e.exports.sweep(150, 100), 0);
      assert.equal(e.exports.sweep(155, 100), 1);
    });
  });
});
