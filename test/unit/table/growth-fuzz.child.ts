// Run by growth.test.ts in a child process with a timeout (a hang must fail, not freeze the runner):
// random loads (upserts of up to 300 backends, random or Maglev, deletes, Clears) with flows opened
// between them, on engines with no ceiling or a small memory ceiling. After every step the
// invariants hold, a refused commit changed nothing, and every flow opened so far (TCP, so a reload
// never takes it away; a sample of them when they are many) still reaches the backend it was given
// while the tables moved under it.
import fc from "fast-check";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { OpWriter, type TestService } from "../../helpers/ops.js";
import { clusterRoutes, MASQ4, NODE1 } from "../pipeline/setup.js";
import { Engine, Verdict } from "../../../src/engine/index.js";

const seed = Number(process.argv[2] ?? 1), runs = Number(process.argv[3] ?? 20);
const KEYS = 400;
const vip = (k: number) => `10.96.${k >> 8}.${k & 255}`;
const step = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.record({ k: fc.nat(KEYS - 1), n: fc.oneof(fc.nat(3), fc.nat(300)), select: fc.nat(1), base: fc.nat(200) }), { minLength: 1, maxLength: 120 })
    .map((ups) => ({ kind: "upsert" as const, ups })) },
  { weight: 2, arbitrary: fc.array(fc.nat(KEYS - 1), { minLength: 1, maxLength: 80 }).map((dels) => ({ kind: "delete" as const, dels })) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 5000 }).map((n) => ({ kind: "flows" as const, n })) },
  { weight: 1, arbitrary: fc.constant({ kind: "clear" as const }) },
);

fc.assert(fc.property(fc.constantFrom(0, 15, 16, 17), fc.array(step, { minLength: 1, maxLength: 25 }), (limitMiB, steps) => {
  const e = new Engine({ maxBatch: 64, underlayIp: NODE1, seed: 3, masqAddr4: MASQ4, serviceCidr4: "10.96.0.0/12", clusterCidr4: "10.244.0.0/16",
    ...(limitMiB ? { memoryLimitMiB: limitMiB } : {}) });
  if (e.commitOps(clusterRoutes().bytes()) !== 0) throw new Error("routes refused");
  const held = new Map<number, TestService>();   // what the tables hold, by key
  const flows: Array<{ src: string; sport: number; dst: string; to: string }> = [];
  let sport = 1024, client = 0;
  const check = (what: string) => {
    const c = e.checkInvariants();
    if (c !== 0) throw new Error(`invariant ${c} broken after ${what}`);
  };
  for (const s of steps) {
    if (s.kind === "flows") {
      const live = [...held.values()].filter((x) => x.backends.length > 0);
      if (!live.length) continue;
      for (let b = 0; b < s.n; b += 64) {
        const pk = [], meta = [];
        for (let i = b; i < Math.min(s.n, b + 64); i++) {
          const svc = live[(i * 7919) % live.length]!, src = `10.244.1.${2 + (client++ % 200)}`;
          if (++sport > 65000) sport = 1024;
          pk.push(packet({ src, dst: svc.vip }, { proto: "tcp", sport, dport: 80, flags: TCP.SYN }));
          meta.push({ src, sport, dst: svc.vip });
        }
        pk.forEach((p, i) => e.putPacket(i, p));
        e.process(pk.length, 100);
        meta.forEach((m, i) => {
          const sl = e.slot(i);
          if (sl.verdict !== Verdict.Tun) throw new Error(`a new flow to ${m.dst} was not forwarded (verdict ${sl.verdict}, reason ${sl.reason})`);
          const q = parse(e.output(i));
          flows.push({ ...m, to: `${q.dst}:${q.dport}` });
        });
      }
      check("new flows");
      continue;
    }
    const w = new OpWriter(), next = new Map(held);
    if (s.kind === "clear") { w.clear(); clusterRoutes(w); next.clear(); }
    if (s.kind === "delete") for (const k of s.dels) { w.deleteService(vip(k), 80, "tcp"); next.delete(k); }
    if (s.kind === "upsert") {
      for (const u of s.ups) {
        const svc: TestService = { vip: vip(u.k), port: 80, proto: "tcp", id: u.k, select: u.select,
          backends: Array.from({ length: u.n }, (_, i) => ({ ip: `10.244.1.${2 + ((u.base + i) % 250)}`, port: 1000 + u.base + i })) };
        w.service(svc); next.set(u.k, svc);
      }
    }
    const gen = e.generation(), count = e.serviceCount();
    const r = e.commitOps(w.bytes());
    check(`a commit (result ${r})`);
    if (r === 0) { held.clear(); for (const [k, v] of next) held.set(k, v); }
    else if (r !== 7 || !limitMiB) throw new Error(`commit refused with ${r}${limitMiB ? "" : " with no memory ceiling"}`);
    else if (e.generation() !== gen || e.serviceCount() !== count) throw new Error("a refused commit changed the tables");
    if (e.serviceCount() !== held.size) throw new Error(`the core holds ${e.serviceCount()} entries, ${held.size} expected`);
    // Every flow so far keeps its backend (ACKs: established packets never choose again), unless
    // memory was too short for the flow table to hold them all.
    if (e.counters().named.ct_evicted !== 0) continue;
    const sample = flows.length <= 512 ? flows : Array.from({ length: 512 }, (_, i) => flows[(i * 104729 + steps.indexOf(s)) % flows.length]!);
    for (let b = 0; b < sample.length; b += 64) {
      const part = sample.slice(b, b + 64);
      part.forEach((f, i) => e.putPacket(i, packet({ src: f.src, dst: f.dst }, { proto: "tcp", sport: f.sport, dport: 80, flags: TCP.ACK })));
      e.process(part.length, 100);
      part.forEach((f, i) => {
        const q = parse(e.output(i));
        if (`${q.dst}:${q.dport}` !== f.to) throw new Error(`flow ${f.src}:${f.sport} -> ${f.dst} moved from ${f.to} to ${q.dst}:${q.dport}`);
      });
    }
  }
  if (!limitMiB && e.counters().named.ct_evicted !== 0) throw new Error("a flow was evicted with no memory ceiling");
}), { seed, numRuns: runs });
process.stdout.write("ok\n");
