// The host's side of growing tables (src/engine/engine.ts): loads and deltas of a real model as the
// daemon makes them, with no size given.
import assert from "node:assert/strict";
import { validateConfig, type Config } from "../../../src/config/index.js";
import type { ServiceConfig } from "../../../src/config/schema.js";
import { engineOptionsFor } from "../../../src/engine/options.js";
import { Engine, Verdict } from "../../../src/engine/index.js";
import { buildModel } from "../../../src/model/index.js";
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

describe("engine: tables that grow", () => {
  it("a model of 20,000 services loads with no size given, the tables' memory following it", () => {
    const c = withServices(config({}), Array.from({ length: 20000 }, (_, i) => service(i)));
    const e = new Engine(engineOptionsFor(c));
    const empty = e.memory.byteLength;
    e.loadModel(buildModel(c));
    assert.equal(e.serviceCount(), 20000);
    const grown = e.memory.byteLength - empty;
    assert.ok(grown < 24 * 2 ** 20, `20,000 services took ${(grown / 2 ** 20).toFixed(1)} MiB more`);
    assert.match(reach(e, 19999, 1000), /^10\.244\.1\.1[01]$/);
  });

});
