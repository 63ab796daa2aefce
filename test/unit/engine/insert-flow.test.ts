// Engine.insertFlow (the core's ctInsert): a flow the host describes, as `wasp conntrack` prints one,
// goes into the table and then serves packets from both directions as one the core made itself;
// a tuple some flow already holds, or a value out of range, is refused and the table stays whole.
import assert from "node:assert/strict";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, runOne, Verdict } from "../pipeline/setup.js";
import { CtClass, CtState, FlowFlag, Note } from "../../../src/engine/index.js";
import { parseIp } from "../../../src/model/addr.js";

const VIP = "10.96.0.10", LIVE = "10.244.1.77", CLIENT = "10.244.1.5";

function setup() {
  const e = newEngine();
  commit(e, clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: [{ ip: "10.244.1.10", port: 8080 }] }));
  return e;
}
const flow = (over: Partial<Parameters<ReturnType<typeof newEngine>["insertFlow"]>[0]> = {}) => ({
  proto: 6, src: parseIp(CLIENT)!, sport: 41000, dst: parseIp(VIP)!, dport: 80, replySrc: parseIp(LIVE)!, replySport: 8080,
  replyDst: parseIp(CLIENT)!, replyDport: 41000, state: CtState.Established, cls: CtClass.TcpEstablished,
  flags: FlowFlag.DNAT | FlowFlag.REPLIED, service: 2, lastSec: 100, ...over,
});

describe("engine: insertFlow (core ctInsert)", () => {
  it("an inserted ESTABLISHED flow takes the client's segment to its backend and reverse-NATs the backend's reply, with no new flow", () => {
    const e = setup();
    assert.equal(e.insertFlow(flow()), true);
    const [f] = [...e.flows()];
    assert.deepEqual([f!.sport, f!.replySport, f!.state, f!.service], [41000, 8080, CtState.Established, 2]);
    const fwd = runOne(e, packet({ src: CLIENT, dst: VIP }, { proto: "tcp", sport: 41000, dport: 80, flags: TCP.ACK }), 101);
    assert.equal(fwd.slot.verdict, Verdict.Tun);
    assert.ok(fwd.slot.note & Note.CT_HIT && !(fwd.slot.note & Note.NEW_FLOW), `Note.CT_HIT without NEW_FLOW (note ${fwd.slot.note})`);
    assert.deepEqual([parse(fwd.bytes).dst, parse(fwd.bytes).dport], [LIVE, 8080]);
    const back = runOne(e, packet({ src: LIVE, dst: CLIENT }, { proto: "tcp", sport: 8080, dport: 41000, flags: TCP.ACK }), 102);
    assert.deepEqual([parse(back.bytes).src, parse(back.bytes).sport], [VIP, 80]);
    assert.equal(e.flowCount(), 1);
    assert.equal(e.checkInvariants(), 0);
  });

  it("a tuple already tracked (either direction), a class or flag the core does not know, or a port over 65535 is refused and changes nothing", () => {
    const e = setup();
    assert.equal(e.insertFlow(flow()), true);
    assert.equal(e.insertFlow(flow({ sport: 42000, replyDport: 42000 })), true);
    assert.equal(e.insertFlow(flow()), false, "the same forward tuple");
    assert.equal(e.insertFlow(flow({ sport: 43000 })), false, "another forward tuple, but the first flow's reply tuple");
    assert.equal(e.insertFlow(flow({ sport: 44000, replyDport: 44000, cls: 9 as CtClass })), false, "class 9 does not exist");
    assert.equal(e.insertFlow(flow({ sport: 44000, replyDport: 44000, flags: FlowFlag.USED })), false, "USED is the table's own bit");
    assert.equal(e.insertFlow(flow({ sport: 70000, replyDport: 44000 })), false, "port 70000");
    assert.equal(e.flowCount(), 2);
    assert.equal(e.checkInvariants(), 0);
  });
});
