// The tables grow with what is loaded (table/region.ts, generation.ts's genResize, conntrack.ts's
// ctGrow): no ceiling is given here, as a daemon gives none. A load of 30,000 services and 100,000
// backends fits in one commit; 100,000 flows fit without an eviction or a drop while the flow table
// doubles under them; flows keep their backend and their reverse NAT while either table moves.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { expectChildOk } from "../../helpers/child.js";
import { packet, parse } from "../../helpers/packets.js";
import { OpWriter, type TestService } from "../../helpers/ops.js";
import { clusterRoutes, expectVerdict, MASQ4, NODE1, run, Verdict, Drop } from "../pipeline/setup.js";
import { CommitResult, Engine, Note } from "../../../src/engine/index.js";

/** An engine as the daemon makes one: no table size or ceiling given. */
function growingEngine(): Engine {
  return new Engine({
    maxBatch: 256, underlayIp: NODE1, seed: 7, masqAddr4: MASQ4,
    serviceCidr4: "10.96.0.0/12", clusterCidr4: "10.244.0.0/16",
  });
}

const vip = (i: number) => `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
/** Backend k of service i: pods of this node (10.244.1.0/24), told apart by port as well. */
const smallBackend = (i: number, k: number) => ({ ip: `10.244.1.${2 + ((2 * i + k) % 250)}`, port: 8000 + ((2 * i + k) % 1000) });
const BIG = 40, BIG_BACKENDS = 1000, SMALL = 30000;
const bigVip = (j: number) => `10.111.0.${j + 1}`;
const bigBackend = (j: number, k: number) => ({ ip: `10.244.1.${2 + ((j + k) % 250)}`, port: 9000 + k });

/** 30,000 services of 2 backends and 40 of 1,000: 100,000 backends in all. */
function bigLoad(): { w: OpWriter; services: TestService[] } {
  const w = clusterRoutes(), services: TestService[] = [];
  for (let i = 0; i < SMALL; i++) services.push({ vip: vip(i), port: 80, proto: "tcp", id: i, backends: [smallBackend(i, 0), smallBackend(i, 1)] });
  for (let j = 0; j < BIG; j++) {
    services.push({ vip: bigVip(j), port: 443, proto: "tcp", id: SMALL + j, select: j % 2,
      backends: Array.from({ length: BIG_BACKENDS }, (_, k) => bigBackend(j, k)) });
  }
  for (const s of services) w.service(s);
  return { w, services };
}

const syn = (dst: string, dport: number, sport: number, src = "10.244.1.5") =>
  packet({ src, dst }, { proto: "tcp", sport, dport, flags: 0x02 });

describe("tables grow with what is loaded", () => {
  it("30,000 services of 2 backends and 40 of 1,000 (100,000 backends in all) load in one commit with no size given; sampled ones reach their backends", () => {
    const e = growingEngine();
    const { w, services } = bigLoad();
    assert.equal(CommitResult[e.commitOps(w.bytes())], "Ok");
    assert.equal(e.exports.serviceCount(), SMALL + BIG);
    assert.equal(e.checkInvariants(), 0);
    const sample = [0, 1, 255, 256, 4095, 4096, 16383, 16384, 29998, 29999, ...Array.from({ length: BIG }, (_, j) => SMALL + j)];
    const outs = run(e, sample.map((i, n) => syn(services[i]!.vip, services[i]!.port, 10000 + n)), 100);
    outs.forEach((o, n) => {
      const s = services[sample[n]!]!, q = parse(o.bytes);
      expectVerdict(o, Verdict.Tun);
      assert.ok(s.backends.some((b) => b.ip === q.dst && b.port === q.dport), `service ${sample[n]} (${s.vip}) went to ${q.dst}:${q.dport}, not one of its backends`);
      assert.equal(o.slot.service, s.id + 1);
    });
  });

  it("100,000 flows: the flow table starts small and doubles under them with no flow evicted and no packet dropped; each flow keeps its backend and its replies come back from the VIP", () => {
    const e = growingEngine();
    const backends = Array.from({ length: 500 }, (_, k) => ({ ip: `10.244.1.${k % 250 + 2}`, port: 5000 + k }));
    assert.equal(e.commitOps(clusterRoutes().service({ vip: "10.96.0.53", port: 53, proto: "udp", id: 0, backends }).bytes()), 0);
    const first = e.flowCapacity();
    assert.ok(first <= 4096, `the flow table starts small (${first} records)`);
    const FLOWS = 100_000, chosen: string[] = new Array(FLOWS);
    const flow = (f: number) => ({ src: `10.244.1.${2 + (f % 200)}`, sport: 1024 + Math.floor(f / 200) });
    const send = (pass: number) => {
      for (let b = 0; b < FLOWS; b += 256) {
        const ids = Array.from({ length: Math.min(256, FLOWS - b) }, (_, k) => b + k);
        const outs = run(e, ids.map((f) => packet({ src: flow(f).src, dst: "10.96.0.53" }, { proto: "udp", sport: flow(f).sport, dport: 53 })), 100 + pass);
        outs.forEach((o, k) => {
          const f = ids[k]!;
          assert.equal(Verdict[o.slot.verdict], "Tun", `flow ${f}, pass ${pass}: ${Drop[o.slot.reason]}`);
          const q = parse(o.bytes), to = `${q.dst}:${q.dport}`;
          if (pass === 0) chosen[f] = to;
          else assert.equal(to, chosen[f], `flow ${f} kept its backend`);
        });
      }
    };
    send(0);
    assert.equal(e.flowCount(), FLOWS);
    assert.equal(e.counters().named.ct_evicted, 0, "no flow was evicted while the table grew");
    assert.ok(e.flowCapacity() >= 131072, `the table grew to hold them (${e.flowCapacity()} records)`);
    assert.equal(e.checkInvariants(), 0);
    send(1);
    // A reply from each of a spread of flows' backends is reverse-NATed to come from the VIP.
    const some = Array.from({ length: 256 }, (_, k) => k * 389);
    const replies = run(e, some.map((f) => {
      const [ip, port] = chosen[f]!.split(":");
      return packet({ src: ip!, dst: flow(f).src }, { proto: "udp", sport: Number(port), dport: flow(f).sport });
    }), 102);
    replies.forEach((o, k) => {
      const q = parse(o.bytes);
      assert.deepEqual([q.src, q.sport, q.dst], ["10.96.0.53", 53, flow(some[k]!).src], `the reply of flow ${some[k]}`);
    });
  });

  it("established flows keep their backend and reverse NAT while 30,000 more services move the generations to a bigger region", () => {
    const e = growingEngine();
    const target: TestService = { vip: "10.96.200.1", port: 80, proto: "tcp", id: 0, backends: [{ ip: "10.244.1.10", port: 8080 }, { ip: "10.244.1.11", port: 8080 }] };
    assert.equal(e.commitOps(clusterRoutes().service(target).bytes()), 0);
    const opened = run(e, Array.from({ length: 64 }, (_, k) => syn(target.vip, 80, 30000 + k)), 100).map((o) => parse(o.bytes));
    const w = new OpWriter();
    for (let i = 0; i < SMALL; i++) w.service({ vip: vip(i), port: 80, proto: "tcp", id: i + 1, backends: [smallBackend(i, 0), smallBackend(i, 1)] });
    assert.equal(CommitResult[e.commitOps(w.bytes())], "Ok");
    assert.equal(e.exports.serviceCount(), SMALL + 1);
    const again = run(e, Array.from({ length: 64 }, (_, k) => packet({ src: "10.244.1.5", dst: target.vip }, { proto: "tcp", sport: 30000 + k, dport: 80, flags: 0x10 })), 101);
    again.forEach((o, k) => {
      const q = parse(o.bytes);
      assert.ok(o.slot.note & Note.CT_HIT, `flow ${k}'s packet found its flow (Note.CT_HIT)`);
      assert.equal(`${q.dst}:${q.dport}`, `${opened[k]!.dst}:${opened[k]!.dport}`, `flow ${k} kept its backend`);
    });
    const back = run(e, opened.map((q, k) => packet({ src: q.dst, dst: "10.244.1.5" }, { proto: "tcp", sport: q.dport, dport: 30000 + k, flags: 0x12 })), 102);
    for (const o of back) assert.equal(`${parse(o.bytes).src}:${parse(o.bytes).sport}`, `${target.vip}:80`, "the reply comes from the VIP");
    assert.equal(e.checkInvariants(), 0);
  });

  it("random loads and flows, with no ceiling or a small memory ceiling (fast-check, seeded): invariants hold, refused commits change nothing, flows keep their backends while the tables move", () => {
    expectChildOk(new URL("./growth-fuzz.child.ts", import.meta.url), [20261207, 30], 120000, "loads", 16);
  });

  it("nothing grows inside process(): no memory.grow is reachable from the process export (build/wasp.wat call graph)", () => {
    const wat = readFileSync(new URL("../../../build/wasp.wat", import.meta.url), "utf8");
    const bodies = new Map<string, string>();
    for (const m of wat.matchAll(/^ \(func (\$\S+)([\s\S]*?)(?=^ \(func |^ \(export |^ \(data |^ \(elem |^\)$)/gm)) bodies.set(m[1]!, m[2]!);
    const exported = /\(export "process" \(func (\$\S+)\)\)/.exec(wat)?.[1];
    assert.ok(exported && bodies.has(exported), "the wat names the process export's function");
    const seen = new Set<string>([exported]), todo = [exported];
    while (todo.length) {
      const f = todo.pop()!, body = bodies.get(f) ?? "";
      assert.doesNotMatch(body, /memory\.grow/, `${f}, reachable from process, grows memory`);
      for (const c of body.matchAll(/\bcall (\$[^\s)]+)/g)) if (!seen.has(c[1]!)) { seen.add(c[1]!); todo.push(c[1]!); }
    }
    assert.ok(seen.size > 10, `walked the call graph (${seen.size} functions)`);
    assert.match(wat, /memory\.grow/, "memory.grow is there, outside process()");
  });
});
