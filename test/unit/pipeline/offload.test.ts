// Offload mode: the core decides a new flow exactly as it does in full-wasm mode, but hands the NAT
// binding to the kernel (two ctnetlink requests: DELETE of the first packet's own entry, NEW with
// the binding) and returns the packet unchanged; the host's answers decide whether it goes on.
import assert from "node:assert/strict";
import { packet, TCP } from "../../helpers/packets.js";
import { type TestService } from "../../helpers/ops.js";
import { newEngine, clusterRoutes, commit, run, runOne, expectVerdict, Verdict, Drop } from "./setup.js";
import { Note, FlowFlag, OFFLOAD_MARK } from "../../../src/engine/index.js";
import type { Engine } from "../../../src/engine/index.js";

const CLIENT = "10.244.1.5", VIP = "10.96.0.10";
const web = (backends: string[], extra: Partial<TestService> = {}): TestService =>
  ({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: backends.map((ip) => ({ ip, port: 8080 })), ...extra });
const syn = (sport: number, src = CLIENT) => packet({ src, dst: VIP }, { proto: "tcp", sport, dport: 80, flags: TCP.SYN, seq: 5000 });
const udp = (sport: number) => packet({ src: CLIENT, dst: VIP }, { proto: "udp", sport, dport: 53, payload: new Uint8Array(12).fill(5) });

/** The requests of the last batch: [type (low byte of nlmsg_type), seq] each, and their bytes. */
function requests(e: Engine): { list: Array<[number, number]>; bytes: Uint8Array } {
  const r = e.offloadRequests(), b = new Uint8Array(e.memory, r.addr, r.bytes).slice(), v = new DataView(b.buffer);
  const list: Array<[number, number]> = [];
  for (let p = 0; p < b.length; p += v.getUint32(p, true)) list.push([v.getUint16(p + 4, true) & 0xff, v.getUint32(p + 8, true)]);
  assert.equal(list.length, r.count, "offloadCount() counts the messages in offloadBytes()");
  return { list, bytes: b };
}

/** The DNAT address (CTA_NAT_DST's CTA_NAT_V4_MINIP) of the NEW in a batch's requests. */
function natDst(bytes: Uint8Array): number[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const at = v.getUint32(0, true);   // the NEW follows the DELETE
  for (let p = at + 20; p < bytes.length; p += (v.getUint16(p, true) + 3) & ~3) {
    if ((v.getUint16(p + 2, true) & 0x3fff) === 13) return [...bytes.subarray(p + 8, p + 12)];
  }
  throw new Error("no CTA_NAT_DST in the NEW");
}

/** Answers the last batch's requests with the given errnos (0: acked) and finishes it. */
function answer(e: Engine, errnos: number[]): number {
  const res = e.offloadResults(e.offloadRequests().count);
  assert.equal(res.length, errnos.length, "one answer per request");
  res.set(errnos);
  return e.finishOffload();
}

describe("pipeline: offload mode", () => {
  let e: Engine;
  beforeEach(() => { e = newEngine({ offload: true }); });

  it("a SYN to a ClusterIP goes back byte for byte (TTL too) with DELETE then NEW queued for it; acked, it counts as offloaded", () => {
    commit(e, clusterRoutes().service(web(["10.244.1.10"])));
    const p = syn(40000);
    const o = runOne(e, p);
    expectVerdict(o, Verdict.Tun);
    assert.deepEqual([...o.bytes], [...p], "unchanged: the kernel NATs it by the new entry");
    assert.ok(o.slot.note & Note.OFFLOADED && o.slot.note & Note.NEW_FLOW, "Note.OFFLOADED and NEW_FLOW");
    assert.equal(o.slot.note & Note.DNAT, 0, "the core did not rewrite it");
    assert.equal(o.slot.service, 2, "the service entry it matched");
    const { list, bytes } = requests(e);
    assert.deepEqual(list, [[2, 1], [0, 2]], "IPCTNL_MSG_CT_DELETE seq 1, IPCTNL_MSG_CT_NEW seq 2");
    assert.ok(Buffer.from(bytes).includes(Buffer.from([0x77, 0x61, 0x73, 0x70])), "the NEW carries the ct mark 'wasp'");
    assert.equal(OFFLOAD_MARK, 0x77617370);
    assert.equal(answer(e, [0, 0]), 0, "none refused");
    assert.equal(e.counters().named.offloaded, 1);
    expectVerdict({ slot: e.slot(0), bytes: o.bytes }, Verdict.Tun);
  });

  it("a batch of flows gets two requests each, in slot order, with seqs 1..2n", () => {
    commit(e, clusterRoutes().service(web(["10.244.1.10", "10.244.1.11"])));
    run(e, [syn(40001), syn(40002), udp(5000), syn(40003)]);
    assert.deepEqual(requests(e).list.map(([, s]) => s), [1, 2, 3, 4, 5, 6], "UDP to a TCP-only service is no flow: 3 flows");
    assert.equal(answer(e, [0, 0, 0, 0, 0, 0]), 0);
    assert.equal(e.counters().named.offloaded, 3);
  });

  it("a NEW the kernel refuses (EEXIST, ENOMEM) drops that packet as OffloadFailed, counts it and keeps the errno; the others go on", () => {
    commit(e, clusterRoutes().service(web(["10.244.1.10"])));
    run(e, [syn(41001), syn(41002)]);
    // a DELETE that finds nothing (ENOENT) is no failure: only the NEW counts
    assert.equal(answer(e, [2, 17, 0, 0]), 1, "one flow refused");
    assert.equal(Verdict[e.slot(0).verdict], "Drop");
    assert.equal(Drop[e.slot(0).reason], "OffloadFailed");
    assert.equal(e.slot(0).note & Note.OFFLOADED, 0, "no longer noted offloaded");
    assert.equal(Verdict[e.slot(1).verdict], "Tun");
    const c = e.counters();
    assert.deepEqual([c.named.offloaded, c.named.offload_failed, c.named.offload_last_errno, c.drops["offload_failed"]], [1, 1, 17, 1]);
    assert.equal(c.verdicts["drop"], 1, "the verdict counters moved the refused packet to drop");
    assert.equal(c.verdicts["tun"], 1);
  });

  it("a later packet of an offloaded flow (the kernel's entry gone) sends the same binding again, to the same backend", () => {
    commit(e, clusterRoutes().service(web(["10.244.1.10", "10.244.1.11", "10.244.1.12", "10.244.1.13"])));
    runOne(e, syn(42000));
    const first = requests(e).bytes;
    answer(e, [0, 0]);
    const ack = packet({ src: CLIENT, dst: VIP }, { proto: "tcp", sport: 42000, dport: 80, flags: TCP.ACK, seq: 5001, ack: 1 });
    const o = runOne(e, ack, 101);
    expectVerdict(o, Verdict.Tun);
    assert.ok(o.slot.note & Note.CT_HIT, "found in the engine's conntrack");
    const again = requests(e).bytes;
    // the same tuples and NAT; only the TCP state differs (a mid-flow packet: ESTABLISHED)
    assert.equal(again.length, first.length, "the same requests");
    assert.deepEqual(natDst(again), natDst(first), "the same backend");
    answer(e, [0, 0]);
    assert.equal(e.counters().named.offload_resent, 1);
    assert.equal(e.counters().named.new_flows, 1, "one decision");
  });

  it("a SYN that reuses an offloaded flow's tuple (the client's port again) is decided anew by today's tables", () => {
    commit(e, clusterRoutes().service(web(["10.244.1.10", "10.244.1.11"])));
    runOne(e, syn(47000));
    const before = natDst(requests(e).bytes);
    answer(e, [0, 0]);
    const left = before[3] === 10 ? "10.244.1.11" : "10.244.1.10";
    commit(e, clusterRoutes().service(web([left])));
    runOne(e, syn(47000), 102);
    assert.deepEqual(natDst(requests(e).bytes).join("."), left, "the remaining backend, not the removed one");
    answer(e, [0, 0]);
    assert.equal(e.counters().named.new_flows, 2, "two decisions");
  });

  it("the engine's flow record says OFFLOADED", () => {
    commit(e, clusterRoutes().service(web(["10.244.1.10"])));
    runOne(e, syn(43000));
    answer(e, [0, 0]);
    const flows = [...e.flows()];
    assert.equal(flows.length, 1);
    assert.ok(flows[0]!.flags & FlowFlag.OFFLOADED, `flags ${flows[0]!.flags}`);
  });

  it("what is not a new flow to a service is as in full-wasm mode: no request (RST for no backend, pod to pod)", () => {
    commit(e, clusterRoutes().service(web([])).service({ vip: VIP, port: 0, proto: 0, id: 3, backends: [] }));
    const rst = runOne(e, syn(44000));
    expectVerdict(rst, Verdict.Tun, Drop.NoBackend);
    assert.equal(e.offloadRequests().count, 0, "no request for a rejected SYN");
    const pod = runOne(e, packet({ src: CLIENT, dst: "10.244.1.9" }, { proto: "tcp", sport: 1, dport: 2, flags: TCP.SYN, seq: 1 }));
    expectVerdict(pod, Verdict.Tun);
    assert.equal(e.offloadRequests().count, 0, "no request for pod to pod");
  });

  it("a hairpin flow (the client is the backend) still gets its masquerade: the NEW carries CTA_NAT_SRC", () => {
    commit(e, clusterRoutes().service(web([CLIENT])));
    runOne(e, syn(45000));
    const { bytes } = requests(e);
    const v = new DataView(bytes.buffer), newAt = v.getUint32(0, true);
    const types: number[] = [];
    for (let p = newAt + 20; p < bytes.length; p += (v.getUint16(p, true) + 3) & ~3) types.push(v.getUint16(p + 2, true) & 0x3fff);
    assert.ok(types.includes(6), `CTA_NAT_SRC among ${types.join(",")}`);
    answer(e, [0, 0]);
  });

  it("full-wasm mode (offload off) queues no request and NATs itself", () => {
    const w = newEngine();
    commit(w, clusterRoutes().service(web(["10.244.1.10"])));
    const o = runOne(w, syn(46000));
    assert.ok(o.slot.note & Note.DNAT, "NATed by the core");
    assert.equal(w.offloadRequests().count, 0);
  });
});
