// The reloadable tables (services, backends, Maglev tables, routes, local addresses) in two
// generations: commits are all-or-nothing, hundreds of services stay findable through upserts,
// deletes and full reloads, and live flows survive the switch.
import assert from "node:assert/strict";
import { expectChildOk, runChild } from "../../helpers/child.js";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { OpWriter, type TestService } from "../../helpers/ops.js";
import { newEngine, clusterRoutes, commit, run, runOne, expectVerdict, Verdict, Drop } from "../pipeline/setup.js";
import { CommitResult } from "../../../src/engine/index.js";

const vip = (i: number) => `10.96.${1 + (i >> 8)}.${i & 255}`;
const svc = (i: number, select = i % 2): TestService => ({
  vip: vip(i), port: 80, proto: "tcp", id: i, select,
  backends: [0, 1, 2].map((k) => ({ ip: `10.244.1.${(i * 3 + k) % 250 + 2}`, port: 8000 + (i % 1000) })),
});
const syn = (dst: string, sport: number) => packet({ src: "10.244.2.200", dst }, { proto: "tcp", sport, dport: 80, flags: TCP.SYN });

describe("table/generation", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => { e = newEngine({ maxServices: 1024, maxBackends: 4096, conntrackCapacity: 4096 }); });

  /** Sends a SYN to each service i in `ids` and checks it lands on one of that service's backends. */
  function reachable(ids: number[], now: number): void {
    for (let b = 0; b < ids.length; b += 64) {
      const chunk = ids.slice(b, b + 64);
      const outs = run(e, chunk.map((i) => syn(vip(i), 20000 + (now % 1000) * 7 + (b / 64))), now);
      outs.forEach((o, k) => {
        const i = chunk[k]!, q = parse(o.bytes);
        assert.equal(o.slot.verdict, Verdict.Tun, `service ${i}: ${Drop[o.slot.reason]}`);
        assert.ok(svc(i).backends.some((x) => x.ip === q.dst && x.port === q.dport), `service ${i} -> ${q.dst}:${q.dport}`);
        assert.equal(o.slot.service, i + 1);
      });
    }
  }

  it("500 services upserted in one commit are all findable and reachable", () => {
    const w = clusterRoutes();
    for (let i = 0; i < 500; i++) w.service(svc(i));
    commit(e, w);
    assert.equal(e.exports.serviceCount(), 500);
    assert.equal(e.checkInvariants(), 0);
    reachable([...Array(500).keys()], 100);
  });

  it("deleting half of them: the deleted VIPs are rejected (NoService), the rest still reachable", () => {
    const w = clusterRoutes();
    for (let i = 0; i < 500; i++) w.service(svc(i));
    commit(e, w);
    const d = new OpWriter();
    for (let i = 0; i < 500; i += 2) d.deleteService(vip(i), 80, "tcp");
    commit(e, d);
    assert.equal(e.exports.serviceCount(), 250);
    assert.equal(e.checkInvariants(), 0);
    reachable([...Array(250).keys()].map((k) => k * 2 + 1), 101);
    const outs = run(e, [0, 2, 498].map((i) => syn(vip(i), 999)), 102);
    for (const o of outs) assert.equal(o.slot.reason, Drop.NoService);
  });

  it("upserting an existing service replaces its backends; repeated reloads keep the count and invariants", () => {
    for (let round = 0; round < 5; round++) {
      const w = clusterRoutes();
      for (let i = 0; i < 300; i++) w.service(svc(i, round % 2));
      commit(e, w);
      assert.equal(e.exports.serviceCount(), 300);
      assert.equal(e.checkInvariants(), 0, `round ${round}`);
    }
    commit(e, new OpWriter().service({ vip: vip(7), port: 80, proto: "tcp", id: 7, backends: [{ ip: "10.244.1.222", port: 9999 }] }));
    assert.equal(e.exports.serviceCount(), 300);
    const o = runOne(e, syn(vip(7), 4242), 200);
    assert.deepEqual([parse(o.bytes).dst, parse(o.bytes).dport], ["10.244.1.222", 9999]);
    assert.equal(e.exports.generation(), 6);
    assert.equal(e.counters().named.generation, 6);
  });

  it("a commit that does not fit (ServicesFull) changes nothing: the old generation stays in force", () => {
    const small = newEngine({ maxServices: 8 });
    const w = clusterRoutes();
    for (let i = 0; i < 8; i++) w.service(svc(i));
    assert.equal(small.commitOps(w.bytes()), CommitResult.Ok);
    const gen = small.exports.generation();
    const more = new OpWriter().deleteService(vip(0), 80, "tcp");
    for (let i = 8; i < 12; i++) more.service(svc(i));
    assert.equal(small.commitOps(more.bytes()), CommitResult.ServicesFull);
    assert.equal(small.exports.generation(), gen);
    assert.equal(small.exports.serviceCount(), 8);
    assert.equal(small.checkInvariants(), 0);
    const o = runOne(small, syn(vip(0), 5000));
    expectVerdict(o, Verdict.Tun);
    assert.equal(o.slot.service, 1, "service 0 was not deleted by the refused commit");
  });

  it("a malformed op (bad size, unknown code) is BadOp and changes nothing", () => {
    commit(e, clusterRoutes().service(svc(1)));
    const bad = new OpWriter().service(svc(2)).bytes();
    const withJunk = new Uint8Array(bad.length + 8); withJunk.set(bad); withJunk[bad.length] = 99; withJunk[bad.length + 4] = 8;
    assert.equal(e.commitOps(withJunk), CommitResult.BadOp);
    const oddSize = new OpWriter().service(svc(3)).bytes(); oddSize[4] = 6;
    assert.equal(e.commitOps(oddSize), CommitResult.BadOp);
    assert.equal(e.exports.serviceCount(), 1);
    assert.equal(e.exports.generation(), 1);
    assert.equal(e.checkInvariants(), 0);
  });

  describe("Maglev table sizes from the host", () => {
    const commitIn = (size: number, n: number) => {
      const r = runChild(new URL("./maglev-commit.child.ts", import.meta.url), [size, n], 20000);
      assert.equal(r.signal, null, `the commit of size ${size} with ${n} backends did not finish (killed by ${r.signal})`);
      return r.stdout;
    };

    it("a table size that is not a prime is refused (BadOp) instead of looping forever (Maglev needs a prime size)", () => {
      assert.equal(commitIn(100, 10), `${CommitResult.BadOp} 0`);
    });

    it("a prime size, even smaller than the backend count, is accepted", () => {
      assert.equal(commitIn(101, 10), `${CommitResult.Ok} 0`);
      assert.equal(commitIn(7, 10), `${CommitResult.Ok} 0`);
    });
  });

  it("random and damaged op streams (fast-check, seeded): invariants hold, refused commits change nothing, no hang", () => {
    expectChildOk(new URL("./ops-fuzz.child.ts", import.meta.url), [20261123, 400], 40000, "commits", 12);
  });

  it("routes: upsert and delete hundreds, counts and lookups follow", () => {
    const w = new OpWriter().clear();
    for (let i = 0; i < 200; i++) w.route(`172.${16 + (i >> 8)}.${i & 255}.0`, 24, 1, 0xc0a86400 + (i % 50) + 2);
    commit(e, w);
    assert.equal(e.exports.routeCount(), 200);
    const d = new OpWriter();
    for (let i = 0; i < 200; i += 2) d.deleteRoute(`172.${16 + (i >> 8)}.${i & 255}.0`, 24);
    commit(e, d);
    assert.equal(e.exports.routeCount(), 100);
    const outs = run(e, [0, 1, 198, 199].map((i) => packet({ src: "10.244.1.5", dst: `172.16.${i}.9` }, { proto: "udp", sport: 1, dport: 2 })));
    assert.deepEqual(outs.map((o) => Verdict[o.slot.verdict]), ["Host", "Overlay", "Host", "Overlay"]);
    assert.equal(outs[1]!.slot.peer, 0xc0a86400 + 1 + 2);
    assert.equal(e.checkInvariants(), 0);
  });

  it("live flows survive ten generation switches and keep their backends", () => {
    const w = clusterRoutes();
    for (let i = 0; i < 50; i++) w.service(svc(i));
    commit(e, w);
    const first = run(e, [...Array(50).keys()].map((i) => syn(vip(i), 30000 + i)), 100).map((o) => parse(o.bytes).dst);
    for (let g = 0; g < 10; g++) {
      const u = new OpWriter();
      for (let i = 0; i < 50; i++) u.service({ ...svc(i), backends: [...svc(i).backends, { ip: `10.244.1.${240 + g}`, port: 1 }] });
      commit(e, u);
      const now = run(e, [...Array(50).keys()].map((i) =>
        packet({ src: "10.244.2.200", dst: vip(i) }, { proto: "tcp", sport: 30000 + i, dport: 80, flags: TCP.ACK })), 101 + g);
      assert.deepEqual(now.map((o) => parse(o.bytes).dst), first, `generation ${g}`);
      assert.equal(e.checkInvariants(), 0);
    }
  });
});
