// What a daemon restart hands over in full-wasm mode (src/daemon/flow-journal.ts): the flows one
// engine recorded go into another engine (another process: another seed) with their backends,
// reverse NAT and ages; and a flow the second engine never heard of still reaches the backend the
// first one chose, because backend choice is a hash of the flow, not a draw.
import assert from "node:assert/strict";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, run, runOne, Verdict } from "../pipeline/setup.js";
import { CT_REC_SIZE, CtClass, CtState, FlowFlag, Note, type Engine } from "../../../src/engine/index.js";
import { parseIp } from "../../../src/model/addr.js";

const VIP = "10.96.0.10", CLIENT = "10.244.1.5";
const BACKENDS = ["10.244.1.10", "10.244.1.11", "10.244.1.12"];

function engineWithService(seed: number): Engine {
  const e = newEngine({ seed });
  commit(e, clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: BACKENDS.map((ip) => ({ ip, port: 8080 })) }));
  return e;
}
const syn = (sport: number, src = CLIENT) => packet({ src, dst: VIP }, { proto: "tcp", sport, dport: 80, flags: TCP.SYN });
const ack = (sport: number, src = CLIENT) => packet({ src, dst: VIP }, { proto: "tcp", sport, dport: 80, flags: TCP.ACK });
/** The table's records as the flow journal writes them: the views one after another. */
const recordsOf = (e: Engine) => Buffer.concat(e.flowRecordViews());
const backendOf = (e: Engine, p: Uint8Array, now = 100) => parse(runOne(e, p, now).bytes).dst;

describe("engine: flows handed to the next process (flowRecordViews, restoreFlows)", () => {
  it("restored flows take the client's next segment to the same backend and reverse-NAT the backend's reply first, with no new flow", () => {
    const a = engineWithService(1);
    const chosen = [40001, 40002, 40003, 40004].map((sport) => backendOf(a, syn(sport)));
    const b = engineWithService(2);
    const r = b.restoreFlows(recordsOf(a), 100, 3, 5000, (s) => s);
    assert.deepEqual(r, { restored: 4, expired: 0, refused: 0 });
    // the backend's SYN-ACK comes before the client says anything to the new process
    const reply = runOne(b, packet({ src: chosen[0]!, dst: CLIENT }, { proto: "tcp", sport: 8080, dport: 40001, flags: TCP.SYN | TCP.ACK }), 5001);
    assert.equal(reply.slot.verdict, Verdict.Tun);
    assert.deepEqual([parse(reply.bytes).src, parse(reply.bytes).sport], [VIP, 80], "reverse-NATed to the VIP");
    [40001, 40002, 40003, 40004].forEach((sport, i) => {
      const o = runOne(b, ack(sport), 5002);
      assert.ok(!(o.slot.note & Note.NEW_FLOW), `flow ${sport} is known (note ${o.slot.note})`);
      assert.equal(parse(o.bytes).dst, chosen[i], `flow ${sport} keeps its backend`);
    });
    assert.equal(b.flowCount(), 4);
    assert.equal(b.checkInvariants(), 0);
  });

  it("a flow past its timeout on the old clock plus the time between is left out; the service entry is mapped to the new process's", () => {
    const a = engineWithService(1);
    runOne(a, syn(40001), 100);                // SYN_SENT: 120 s, as the kernel's nf_conntrack_tcp_timeout_syn_sent
    runOne(a, syn(40002), 190);
    const services: number[] = [];
    const b = engineWithService(2);
    // recorded at 200 on the old clock, restored 50 s later: the first is 150 s old, the second 60 s
    const r = b.restoreFlows(recordsOf(a), 200, 50, 7000, (s) => { services.push(s); return 9; });
    assert.deepEqual(r, { restored: 1, expired: 1, refused: 0 });
    const [f] = [...b.flows()];
    assert.deepEqual([f!.sport, f!.service, f!.lastSec], [40002, 9, 7000 - 60]);
    assert.deepEqual(services, [2], "the old entry's id + 1, as the core stores it");
  });

  it("a mid-flow segment no engine recorded goes to the backend a SYN of the same flow got in another process; 300 flows spread over all 3 backends", () => {
    const a = engineWithService(1), b = engineWithService(77);
    const counts = new Map<string, number>();
    for (let sport = 20000; sport < 20300; sport++) {
      const first = backendOf(a, syn(sport));
      assert.equal(backendOf(b, ack(sport)), first, `flow ${sport}`);
      counts.set(first, (counts.get(first) ?? 0) + 1);
    }
    // uniform: each of 3 backends gets 100 ± 40 of 300 (binomial sd 8.2: about 5 sd)
    for (const ip of BACKENDS) assert.ok(Math.abs((counts.get(ip) ?? 0) - 100) <= 40, `${ip}: ${counts.get(ip)} of 300`);
  });

  it("records that are not whole flows restore nothing and leave the table whole", () => {
    const a = engineWithService(1);
    run(a, [syn(40001), syn(40002)], 100);
    const records = recordsOf(a);
    const b = engineWithService(2);
    assert.deepEqual(b.restoreFlows(records.subarray(0, records.length - 1), 100, 0, 100, (s) => s), { restored: 1, expired: 0, refused: 0 });
    assert.deepEqual(b.restoreFlows(records, 100, 0, 100, (s) => s), { restored: 1, expired: 0, refused: 1 }, "the one already there is refused");
    assert.equal(b.flowCount(), 2);
    assert.equal(b.checkInvariants(), 0);
  });

  it("flowChanges moves with each flow made, seen or removed, and stays (with the records) while no packet comes", () => {
    const a = engineWithService(1);
    const c0 = a.flowChanges();
    runOne(a, syn(40001), 100);
    const c1 = a.flowChanges();
    assert.notEqual(c1, c0, "a new flow");
    const before = recordsOf(a);
    a.process(0, 101);
    assert.equal(a.flowChanges(), c1, "an empty batch changes no flow");
    assert.deepEqual(recordsOf(a), before, "and the records are as they were");
    // the backend's SYN-ACK in the same second: the flow's state moves (SYN_RECV, REPLIED), its second does not
    const backend = backendOf(a, syn(40002));
    const c2 = a.flowChanges();
    runOne(a, packet({ src: backend, dst: CLIENT }, { proto: "tcp", sport: 8080, dport: 40002, flags: TCP.SYN | TCP.ACK }), 100);
    assert.notEqual(a.flowChanges(), c2, "a reply in the flow's second");
    const c3 = a.flowChanges();
    a.flushFlows();
    assert.notEqual(a.flowChanges(), c3, "flows removed");
  });

  it("a removed flow's record stays in the views as a free one; restoring them puts back only the live flow", () => {
    const a = engineWithService(1);
    runOne(a, syn(40001), 100);
    runOne(a, syn(40002), 200);
    assert.equal(a.sweep(221, 100), 1, "the first SYN_SENT flow is past its 120 s");
    const records = recordsOf(a);
    assert.equal(records.length, 2 * CT_REC_SIZE, "both records, one of them free");
    const b = engineWithService(2);
    assert.deepEqual(b.restoreFlows(records, 221, 0, 221, (s) => s), { restored: 1, expired: 0, refused: 0 });
    assert.deepEqual([...b.flows()].map((f) => f.sport), [40002]);
  });

  it("5,000 flows, more than a new table's first 4,096 records, are all restored: the table grows as they come", () => {
    const a = newEngine({ conntrackCapacity: 8192 });
    for (let i = 0; i < 5000; i++) {
      if (i % 1000 === 0) a.process(0, 100);   // the table grows between batches
      const client = parseIp(`10.244.1.${1 + (i >> 8)}`)!, port = 20000 + (i & 255);
      assert.ok(a.insertFlow({ proto: 6, src: client, sport: port, dst: parseIp(VIP)!, dport: 80, replySrc: parseIp(BACKENDS[0]!)!, replySport: 8080,
        replyDst: client, replyDport: port, state: CtState.Established, cls: CtClass.TcpEstablished, flags: FlowFlag.DNAT, service: 2, lastSec: 100 }), `flow ${i}`);
    }
    const b = newEngine({ conntrackCapacity: 8192, seed: 9 });
    assert.equal(b.flowCapacity(), 4096, "a new engine's table starts at one chunk");
    assert.deepEqual(b.restoreFlows(recordsOf(a), 100, 0, 100, (s) => s), { restored: 5000, expired: 0, refused: 0 });
    assert.equal(b.flowCount(), 5000);
    assert.equal(b.checkInvariants(), 0);
  });
});
