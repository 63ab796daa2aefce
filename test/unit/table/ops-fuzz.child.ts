// Run by generation.test.ts in a child process with a timeout (a hang must fail, not freeze the
// runner): random op streams, some damaged, committed one after another. Every commit keeps the
// invariants; a refused one changes nothing; packets through the resulting tables never trap.
import fc from "fast-check";
import { packet, TCP } from "../../helpers/packets.js";
import { newEngine } from "../pipeline/setup.js";
import { OpWriter } from "../../helpers/ops.js";
const seed = Number(process.argv[2] ?? 1);
const e = newEngine({ maxServices: 16, maxBackends: 64, maxRoutes: 16, maglevCells: 4096 });
const ip = fc.constantFrom("10.96.0.10", "10.96.0.11", "any", "fd96::10", "10.244.1.10", "0.0.0.0");
const op = fc.oneof(
  fc.record({ vip: ip, port: fc.constantFrom(0, 80, 53, 65535), proto: fc.constantFrom("tcp" as const, "udp" as const, 0 as const), id: fc.nat(40),
    select: fc.nat(2), flags: fc.nat(7), affinitySec: fc.nat(100), maglevSize: fc.constantFrom(0, 1, 2, 3, 7, 251, 65537, 100, 4294967291),
    backends: fc.array(fc.record({ ip: fc.constantFrom("10.244.1.10", "10.244.2.7", "fd44::1"), port: fc.nat(65535) }), { maxLength: 20 }),
    eligible: fc.option(fc.nat(25), { nil: undefined }) }).map((s) => (w: OpWriter) => w.service(s)),
  fc.record({ p: fc.constantFrom("10.244.1.0", "10.244.2.0", "0.0.0.0", "fd44::"), len: fc.nat(40), kind: fc.constantFrom(0 as const, 1 as const), u: fc.nat() })
    .map((r) => (w: OpWriter) => w.route(r.p, r.len, r.kind, r.u)),
  fc.record({ p: fc.constantFrom("10.244.1.0", "10.244.2.0", "0.0.0.0"), len: fc.nat(40) }).map((r) => (w: OpWriter) => w.deleteRoute(r.p, r.len)),
  fc.constantFrom("10.96.0.10", "10.96.0.11").map((v) => (w: OpWriter) => w.deleteService(v, 80, "tcp")),
  fc.constantFrom("192.168.100.1", "10.0.0.1").map((a) => (w: OpWriter) => w.localAddr(a)),
  fc.constant((w: OpWriter) => w.clear()),
);
fc.assert(fc.property(fc.array(op, { maxLength: 30 }), fc.option(fc.tuple(fc.nat(), fc.nat(255))), (ops, poke) => {
  const w = new OpWriter();
  for (const o of ops) o(w);
  const b = w.bytes();
  if (poke && b.length) b[poke[0] % b.length] = poke[1];
  const gen = e.exports.generation(), svcs = e.exports.serviceCount(), routes = e.exports.routeCount();
  const r = e.commitOps(b);
  if (e.checkInvariants() !== 0) throw new Error(`invariants ${e.checkInvariants()} after result ${r}`);
  const pk = [packet({ src: "10.244.1.5", dst: "10.96.0.10" }, { proto: "tcp", sport: 1, dport: 80, flags: TCP.SYN }),
    packet({ src: "fd44::5", dst: "fd96::10" }, { proto: "udp", sport: 1, dport: 53 }),
    packet({ src: "10.244.1.5", dst: "192.168.100.1" }, { proto: "tcp", sport: 2, dport: 80, flags: TCP.SYN }),
    packet({ src: "10.244.1.5", dst: "10.244.2.9" }, { proto: "udp", sport: 1, dport: 2 })];
  pk.forEach((p, i) => e.putPacket(i, p));
  e.process(pk.length, 100);
  for (let i = 0; i < pk.length; i++) if (e.slot(i).verdict < 1 || e.slot(i).verdict > 4) throw new Error(`slot ${i} without a verdict`);
  if (r !== 0 && (e.exports.generation() !== gen || e.exports.serviceCount() !== svcs || e.exports.routeCount() !== routes)) throw new Error(`refused commit ${r} changed state`);
}), { seed, numRuns: Number(process.argv[3] ?? 500) });
process.stdout.write("ok\n");
