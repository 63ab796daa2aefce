// loadBalancerSourceRanges in the core: an entry with source ranges (the model gives them to
// LoadBalancer IPs) takes a new flow only from a source inside one of them; any other new flow is
// dropped as SourceNotAllowed, silently (kube-proxy's firewall chain drops: no RST, no ICMP), and
// before any endpoint is looked at. The check is made once per flow, in both datapath modes.
import assert from "node:assert/strict";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { OpWriter, type TestService } from "../../helpers/ops.js";
import { newEngine, clusterRoutes, commit, run, runOne, expectVerdict, Verdict, Drop } from "./setup.js";
import { ServiceKind } from "../../../src/engine/index.js";

const LB = "198.51.100.10", LB6 = "2001:db8:100::10";
const lb = (ranges: string[], extra: Partial<TestService> = {}): TestService => ({
  vip: LB, port: 80, proto: "tcp", kind: ServiceKind.LoadBalancer, id: 3, ranges,
  backends: [{ ip: "10.244.1.10", port: 8080 }], ...extra,
});
const syn = (src: string, sport: number, dst = LB) => packet({ src, dst }, { proto: "tcp", sport, dport: 80, flags: TCP.SYN, seq: 7000 });
const ack = (src: string, sport: number) => packet({ src, dst: LB }, { proto: "tcp", sport, dport: 80, flags: TCP.ACK, seq: 7001, ack: 1 });
const udp = (src: string, sport: number) => packet({ src, dst: LB }, { proto: "udp", sport, dport: 53, payload: new Uint8Array(8).fill(1) });

describe("pipeline: loadBalancerSourceRanges (source ranges on an entry)", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => { e = newEngine(); });

  it("a SYN from inside a range is DNATed to the backend; from outside every range it is dropped as SourceNotAllowed, with no RST", () => {
    commit(e, clusterRoutes().service(lb(["203.0.113.0/24", "192.0.2.128/25"])));
    const [inside, inside2, outside, edge] = run(e, [syn("203.0.113.7", 40000), syn("192.0.2.200", 40001), syn("198.18.0.1", 40002), syn("192.0.2.127", 40003)]);
    expectVerdict(inside!, Verdict.Tun);
    assert.deepEqual([parse(inside!.bytes).dst, parse(inside!.bytes).dport], ["10.244.1.10", 8080]);
    expectVerdict(inside2!, Verdict.Tun);
    expectVerdict(outside!, Verdict.Drop, Drop.SourceNotAllowed);
    expectVerdict(edge!, Verdict.Drop, Drop.SourceNotAllowed); // 192.0.2.127 is just below 192.0.2.128/25
    assert.equal(outside!.slot.service, 4, "the drop names the entry it hit");
    assert.equal(e.counters().drops["source_not_allowed"], 2, "counted by reason");
  });

  it("UDP from outside is dropped the same way (no ICMP port unreachable), from inside served", () => {
    commit(e, clusterRoutes().service(lb(["203.0.113.0/24"], { port: 53, proto: "udp", backends: [{ ip: "10.244.1.10", port: 5353 }] })));
    const [inside, outside] = run(e, [udp("203.0.113.9", 5000), udp("198.18.0.9", 5001)]);
    expectVerdict(inside!, Verdict.Tun);
    assert.equal(parse(inside!.bytes).dport, 5353);
    expectVerdict(outside!, Verdict.Drop, Drop.SourceNotAllowed);
  });

  it("the check comes before the endpoints: an entry without backends drops an outsider silently and rejects only an allowed source", () => {
    commit(e, clusterRoutes().service(lb(["203.0.113.0/24"], { backends: [] })));
    const [inside, outside] = run(e, [syn("203.0.113.7", 40010), syn("198.18.0.1", 40011)]);
    assert.equal(Drop[inside!.slot.reason], "NoBackend", "an allowed source is rejected for lack of endpoints");
    expectVerdict(outside!, Verdict.Drop, Drop.SourceNotAllowed);
  });

  it("an entry without ranges takes every source, and a /0 range is every source of its family", () => {
    commit(e, clusterRoutes().service(lb([])).service(lb(["0.0.0.0/0"], { vip: "198.51.100.11", id: 4 })));
    const [a, b] = run(e, [syn("198.18.0.1", 40020), syn("198.18.0.1", 40021, "198.51.100.11")]);
    expectVerdict(a!, Verdict.Tun);
    expectVerdict(b!, Verdict.Tun);
  });

  it("IPv6: a range of 2001:db8:1::/48 holds 2001:db8:1:2::5 and not 2001:db8:2::5; an IPv4 source does not match an IPv6 range (the model sends each entry its family's ranges only)", () => {
    commit(e, clusterRoutes().service(lb(["2001:db8:1::/48"], { vip: LB6, backends: [{ ip: "fd44:0:0:1::10", port: 8080 }] })));
    const [inside, outside] = run(e, [syn("2001:db8:1:2::5", 40030, LB6), syn("2001:db8:2::5", 40031, LB6)]);
    expectVerdict(inside!, Verdict.Tun);
    assert.equal(parse(inside!.bytes).dst, "fd44:0:0:1:0:0:0:10", "the IPv6 backend (the parser writes every group)");
    expectVerdict(outside!, Verdict.Drop, Drop.SourceNotAllowed);
    commit(e, new OpWriter().service(lb(["2001:db8::/32"], { id: 5 })));
    expectVerdict(runOne(e, syn("203.0.113.7", 40032)), Verdict.Drop, Drop.SourceNotAllowed);
  });

  it("only new flows are checked: a flow that began before a reload narrowed the ranges goes on; a new one from the same source is dropped", () => {
    commit(e, clusterRoutes().service(lb(["203.0.113.0/24"])));
    expectVerdict(runOne(e, syn("203.0.113.7", 40040), 100), Verdict.Tun);
    commit(e, new OpWriter().service(lb(["192.0.2.0/24"])));
    const cont = runOne(e, ack("203.0.113.7", 40040), 101);
    expectVerdict(cont, Verdict.Tun);
    assert.equal(parse(cont.bytes).dst, "10.244.1.10", "the tracked flow keeps its backend");
    expectVerdict(runOne(e, syn("203.0.113.7", 40041), 102), Verdict.Drop, Drop.SourceNotAllowed);
  });

  it("offload mode: an outsider's SYN is dropped before any conntrack request is queued; an allowed one is offloaded", () => {
    const o = newEngine({ offload: true });
    commit(o, clusterRoutes().service(lb(["203.0.113.0/24"])));
    expectVerdict(runOne(o, syn("198.18.0.1", 40050)), Verdict.Drop, Drop.SourceNotAllowed);
    assert.equal(o.offloadRequests().count, 0, "no ctnetlink request for a refused source");
    expectVerdict(runOne(o, syn("203.0.113.7", 40051)), Verdict.Tun);
    assert.equal(o.offloadRequests().count, 2, "DELETE and NEW for the allowed flow");
  });

  it("ranges are stored beside the backends: many ranges, a reload that changes them, a delete; the tables stay consistent", () => {
    const many = Array.from({ length: 200 }, (_, i) => `10.${100 + (i >> 8)}.${i & 255}.0/24`);
    commit(e, clusterRoutes().service(lb(many)));
    expectVerdict(runOne(e, syn("10.100.199.3", 40060)), Verdict.Tun);
    expectVerdict(runOne(e, syn("10.100.200.3", 40061)), Verdict.Drop, Drop.SourceNotAllowed);
    commit(e, new OpWriter().service(lb(["10.100.200.0/24"])));
    expectVerdict(runOne(e, syn("10.100.200.3", 40062)), Verdict.Tun);
    commit(e, new OpWriter().deleteService(LB, 80, "tcp"));
    assert.equal(e.checkInvariants(), 0);
  });

  it("a range longer than 128 bits is a malformed op (BadOp) and changes nothing", () => {
    commit(e, clusterRoutes().service(lb(["203.0.113.0/24"])));
    const bad = new OpWriter().service(lb(["::/0"])).bytes();
    bad[52 + 20 + 16] = 129;
    assert.equal(e.commitOps(bad), 1, "CommitResult.BadOp");
    expectVerdict(runOne(e, syn("198.18.0.1", 40070)), Verdict.Drop, Drop.SourceNotAllowed);
  });
});
