// The host's side of growing tables (src/engine/engine.ts): loads and deltas of a real model as the
// daemon makes them, with no size given, and under a memory ceiling that the load passes. Past the
// ceiling the engine keeps serving what it has, takes what fits, says what waits (tablesState,
// onTables), and keeps applying later changes that fit; room made by deletes lets the rest in.
import assert from "node:assert/strict";
import { validateConfig, type Config } from "../../../src/config/index.js";
import type { ServiceConfig } from "../../../src/config/schema.js";
import { engineOptionsFor } from "../../../src/engine/options.js";
import { Engine, Verdict, type TablesState } from "../../../src/engine/index.js";
import { buildModel, updateModel } from "../../../src/model/index.js";
import { packet, parse, TCP } from "../../helpers/packets.js";

const node = { name: "node-a", underlayIP: "192.168.100.1", podCIDR: "10.244.1.0/24" };
const vip = (i: number) => `10.96.${(i >> 8) & 255}.${i & 255}`;
function config(raw: Record<string, unknown>): Config {
  const v = validateConfig({ node, ...raw });
  if ("problems" in v) throw new Error(JSON.stringify(v.problems.slice(0, 3)));
  return v.config;
}
// One service validated, the others made from it (validating 20,000 would take most of the test).
const TEMPLATE = config({ services: [{ name: "t", clusterIP: "10.96.0.1", ports: [{ port: 80, targetPort: 8080 }], backends: [{ ip: "10.244.1.10" }] }] }).services[0]!;
/** Service i: cluster IP vip(i + 1), backends 10.244.1.<backend> and <backend + 1>. */
function service(i: number, backend = 10): ServiceConfig {
  return { ...TEMPLATE, name: `svc-${i}`, clusterIPs: [vip(i + 1)], backends: [backend, backend + 1].map((b) => ({ ...TEMPLATE.backends[0]!, ip: `10.244.1.${b}` })) };
}
function withServices(c: Config, services: ServiceConfig[]): Config { return { ...c, services }; }

/** The backend a SYN to service i reaches, or the verdict's name when it is not forwarded. */
function reach(e: Engine, i: number, sport: number): string {
  e.putPacket(0, packet({ src: "10.244.1.200", dst: vip(i + 1) }, { proto: "tcp", sport, dport: 80, flags: TCP.SYN }));
  e.process(1, 100);
  const s = e.slot(0);
  if (s.verdict !== Verdict.Tun) return Verdict[s.verdict];
  return parse(e.output(0)).dst;
}

describe("engine: tables that grow, and a memory ceiling", () => {
  it("a model of 20,000 services loads with no size given, the tables' memory following it", () => {
    const c = withServices(config({}), Array.from({ length: 20000 }, (_, i) => service(i)));
    const e = new Engine(engineOptionsFor(c));
    const empty = e.tablesState().memoryBytes;
    e.loadModel(buildModel(c));
    assert.equal(e.serviceCount(), 20000);
    const s = e.tablesState();
    assert.equal(s.full, false, s.why);
    assert.ok(s.memoryBytes - empty < 24 * 2 ** 20, `20,000 services took ${((s.memoryBytes - empty) / 2 ** 20).toFixed(1)} MiB more`);
    assert.match(reach(e, 19999, 1000), /^10\.244\.1\.1[01]$/);
  });

  it("past a memory ceiling a load takes what fits and serves it, says what waits, applies later changes that fit, and takes the rest once deletes make room", () => {
    const N = 12000;
    const c = withServices(config({ tables: { memoryMiB: 48 } }), Array.from({ length: N }, (_, i) => service(i)));
    // the daemon's options from this config, with 64 slots instead of 256 and a ceiling of 19 MiB:
    // the fixed regions (slots, segments, held fragments) leave the tables about 6 MiB, which
    // 12,000 services pass
    const opts = engineOptionsFor(c);
    assert.equal(opts.memoryLimitMiB, 48, "tables.memoryMiB becomes the engine's memory ceiling");
    const e = new Engine({ ...opts, maxBatch: 64, memoryLimitMiB: 19 });
    const told: TablesState[] = [];
    e.onTables = (s) => told.push(s);
    const model = buildModel(c);
    e.loadModel(model);   // does not throw: what fits goes in
    const loaded = e.serviceCount(), st = e.tablesState();
    assert.ok(loaded > 1000 && loaded < N, `a part of the load is in (${loaded} of ${N})`);
    assert.equal(st.full, true);
    assert.equal(st.waiting.services, N - loaded, "the rest waits");
    assert.equal(st.limitBytes, 19 * 2 ** 20);
    assert.ok(st.memoryBytes <= 19 * 2 ** 20, `memory stays under the ceiling (${st.memoryBytes})`);
    assert.match(st.why ?? "", /wait for room \(OutOfMemory\)/);
    assert.equal(told.length, 1, "onTables heard once that the tables are full");
    assert.equal(told[0]!.full, true);
    // What is in is served: the first service (loaded first) reaches its backends.
    assert.match(reach(e, 0, 2000), /^10\.244\.1\.1[01]$/);

    // A later change that fits applies: service 0 moves to other backends.
    const c2 = withServices(c, [service(0, 50), ...c.services.slice(1)]);
    const u2 = updateModel(c, c2, model);
    e.applyDelta(u2.delta);
    assert.match(reach(e, 0, 2001), /^10\.244\.1\.5[01]$/, "the change to service 0 is in force");
    assert.equal(e.tablesState().waiting.services, N - loaded, "what waited still waits");

    // Deleting the loaded ones (but service 0) makes room: the waiting ones come in with the next delta.
    const keep = [c2.services[0]!, ...c2.services.slice(loaded, loaded + 3000)];
    const c3 = withServices(c2, keep);
    e.applyDelta(updateModel(c2, c3, u2.model).delta);
    assert.equal(e.serviceCount(), keep.length, "every service of the smaller model is in");
    const after = e.tablesState();
    assert.equal(after.full, false, after.why);
    assert.equal(after.waiting.services, 0);
    assert.equal(told.at(-1)?.full, false, "onTables heard that everything fits again");
    assert.match(reach(e, loaded + 2999, 2002), /^10\.244\.1\.1[01]$/, `service ${loaded + 2999}, which waited, is served`);
    assert.match(reach(e, 0, 2003), /^10\.244\.1\.5[01]$/);
    assert.equal(e.checkInvariants(), 0);
  });
});
