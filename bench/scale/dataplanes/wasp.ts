// wasp: `wasp daemon` from source in the node namespace, started on an empty service list, then the
// config file rewritten for the load and each update (a reload = a new table generation; the control
// socket's status reports it). The daemon's arguments are a parameter, so that a variant of the same
// daemon is one more entry in bench/scale/dataplanes/index.ts.
import { control, NODE_IP, POD_CIDR, waitFor } from "../../../test/helpers/topology.js";
import { validateConfig } from "../../../src/config/index.js";
import { buildModel, diffModel } from "../../../src/model/index.js";
import { CHANGED_BACKENDS, CLUSTER_CIDR, SERVICE_CIDR, target, TARGET_PORTS, updateIndex, type Ctx, type Dataplane, type Sample } from "../dataplane.js";
import { rssMib, traffic, updates } from "../measure.js";
import { waspServices, withChangedBackends, type ScaleService } from "../rules.js";

export interface WaspOptions {
  name: string;
  color: string;
  /** Added to `wasp daemon --config … --socket …`. */
  daemonArgs?: string[];
  /** Also measure, once per N in this process, where an update's time goes before the daemon's
   *  tables (json_parse_ms, validate_ms, build_model_ms, diff_ms); the same for every daemon variant. */
  breakdown?: boolean;
}

export function waspDataplane(o: WaspOptions): Dataplane {
  return {
    name: o.name,
    color: o.color,
    run: (c, services, n, out) => runWasp(c, services, n, out, o.daemonArgs ?? []),
    once: o.breakdown ? { what: "update breakdown", measure: async (_c, services, n, out) => breakdown(services, n, out) } : undefined,
  };
}

function waspConfig(services: readonly ScaleService[], n: number): unknown {
  return {
    mode: "tun",
    node: { name: "scale-node", underlayIP: NODE_IP, podCIDR: POD_CIDR },
    serviceCIDR: SERVICE_CIDR,
    clusterCIDR: CLUSTER_CIDR,
    tables: { services: Math.max(4096, 2 * (n + TARGET_PORTS.length)), backends: Math.max(16384, 4 * (n + TARGET_PORTS.length)) },
    services: waspServices(services),
  };
}

async function generation(c: Ctx): Promise<number> {
  return (await control(c.t.socketPath, { cmd: "status" })).generation as number;
}

/** Writes the config and waits until the daemon serves the next generation; ms from the write. */
async function apply(c: Ctx, config: unknown): Promise<number> {
  const before = await generation(c);
  const text = JSON.stringify(config);
  const t0 = performance.now();
  c.t.writeConfig(text);
  for (;;) {
    const g = await generation(c);
    if (g > before) return performance.now() - t0;
    if (performance.now() - t0 > c.stepBoundMs) throw new Error(`wasp did not serve a new generation within ${c.stepBoundMs / 1000} s (still ${g})`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** load_ms, rss_mib, the traffic (with the daemon's CPU), the updates, and the daemon's own
 *  reload_apply_ms for the last. */
async function runWasp(c: Ctx, services: ScaleService[], n: number, out: Sample, daemonArgs: string[]): Promise<void> {
  c.t.writeConfig(waspConfig([], n));
  const d = await c.t.startDaemon(daemonArgs);
  try {
    const pid = d.child.pid!;
    out.load_ms = await apply(c, waspConfig(services, n));
    out.rss_mib = rssMib(pid);
    await traffic(c, target(services).clusterIP, out, pid);
    let logLines = 0;
    await updates(c, services, n, out, async (_current, next, key) => {
      logLines = d.lines().length;
      out[`${key}_ms`] = await apply(c, waspConfig(next, n));
      return true;
    });
    // The daemon's own measure of the reload (model, diff, commit), without the file watch and parse.
    await waitFor(() => d.lines().slice(logLines).some((l) => typeof l.ms === "number"), "the reload log line", 5000).catch(() => undefined);
    const applied = d.lines().slice(logLines).find((l) => typeof l.ms === "number");
    if (applied) out.reload_apply_ms = applied.ms as number;
  } finally {
    await c.t.stopProcess(d.child, "SIGTERM");
    // a stopped daemon leaves its datapath for the next one: the next dataplane starts from nothing
    c.t.cleanupNode();
  }
}

/** Where wasp's update time goes, measured in this process on the same inputs: validate and model. */
function breakdown(services: ScaleService[], n: number, out: Sample): void {
  const a = validateConfig(waspConfig(services, n));
  if ("problems" in a) throw new Error(`the wasp config for N=${n} is invalid: ${JSON.stringify(a.problems.slice(0, 3))}`);
  const model = buildModel(a.config);
  const changed = waspConfig(withChangedBackends(services, [updateIndex(n)], 2, CHANGED_BACKENDS), n);
  const t0 = performance.now();
  const text = JSON.stringify(changed);
  const parsed: unknown = JSON.parse(text);
  const t1 = performance.now();
  const v = validateConfig(parsed);
  const t2 = performance.now();
  if ("problems" in v) throw new Error("changed config invalid");
  const m2 = buildModel(v.config, model);
  const t3 = performance.now();
  diffModel(model, m2);
  const t4 = performance.now();
  out.json_parse_ms = t1 - t0;
  out.validate_ms = t2 - t1;
  out.build_model_ms = t3 - t2;
  out.diff_ms = t4 - t3;
}
