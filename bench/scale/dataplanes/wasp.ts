// wasp: `wasp daemon` from source in the node namespace, started on an empty service list, then the
// config file rewritten for the load and each update (a reload = a new table generation; the control
// socket's status reports it). The config sizes nothing: the engine's tables grow with the load.
// After the updates, 100,000 flows are opened (connrate flows) and the daemon's RSS taken again.
// Then the same N services come from the Kubernetes API instead (the fake apiserver of
// test/helpers/fake-apiserver.ts, in the node namespace, driving `wasp daemon --kubeconfig`): one
// service's EndpointSlice changes, timed from the API server's send to the new generation. The
// daemon's arguments are a parameter, so that a variant of the same daemon is one more entry in
// bench/scale/dataplanes/index.ts.
import { renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { median } from "../../lib/results.js";
import { spawnInNs, stop } from "../../../test/helpers/netns.js";
import { control, NODE_IP, POD_CIDR, waitFor } from "../../../test/helpers/topology.js";
import { endpointSlice, node, service, startFakeApiProcess } from "../../../test/helpers/fake-apiserver.js";
import { validateConfig } from "../../../src/config/index.js";
import { journalFiles } from "../../../src/daemon/flow-journal.js";
import { buildModel, diffModel } from "../../../src/model/index.js";
import { CHANGED_BACKENDS, CLUSTER_CIDR, CONN_PORT, SERVICE_CIDR, target, updateIndex, type Ctx, type Dataplane, type Sample } from "../dataplane.js";
import { rssMib, runTimed, settle, tracked, traffic, updates } from "../measure.js";
import { waspServices, withChangedBackends, type ScaleService } from "../rules.js";

const ROOT = new URL("../../..", import.meta.url).pathname;
const TSX = join(ROOT, "node_modules/tsx/dist/loader.mjs");
/** Flows opened before the second RSS reading, and how fast. */
const FLOWS = 100_000, FLOWS_PER_S = 20_000;
/** One-service changes through the API, each after the daemon's quiet spell (its minSyncPeriod, 1 s). */
const API_UPDATES = 5;
const NODE_NAME = "scale-node";

export interface WaspOptions {
  name: string;
  color: string;
  /** Added to `wasp daemon --config … --socket …` (and to the --kubeconfig daemon's arguments). */
  daemonArgs?: string[];
  /** Also measure, once per N in this process, where an update's time goes before the daemon's
   *  tables (json_parse_ms, validate_ms, build_model_ms, diff_ms); the same for every daemon variant. */
  breakdown?: boolean;
}

export function waspDataplane(o: WaspOptions): Dataplane {
  return {
    name: o.name,
    color: o.color,
    run: async (c, services, n, out) => {
      await runWasp(c, services, n, out, o.daemonArgs ?? []);
      await runWaspApi(c, services, n, out, o.daemonArgs ?? []);
    },
    once: o.breakdown ? { what: "update breakdown", measure: async (_c, services, n, out) => breakdown(services, n, out) } : undefined,
  };
}

function waspConfig(services: readonly ScaleService[]): unknown {
  return {
    mode: "tun",
    node: { name: NODE_NAME, underlayIP: NODE_IP, podCIDR: POD_CIDR },
    serviceCIDR: SERVICE_CIDR,
    clusterCIDR: CLUSTER_CIDR,
    services: waspServices(services),
  };
}

/** The generation the engine serves, from its counters: status would also wait for the kernel's
 *  offload counters (an `nft` child process, ~15 ms), which says nothing about the generation. */
async function generation(c: Ctx): Promise<number> {
  return ((await control(c.t.socketPath, { cmd: "counters" })).named as { generation: number }).generation;
}

/** Polls the daemon (every millisecond) until it serves a generation after `before`; ms from t0. */
async function served(c: Ctx, before: number, t0: number): Promise<number> {
  for (;;) {
    const g = await generation(c);
    if (g > before) return performance.now() - t0;
    if (performance.now() - t0 > c.stepBoundMs) throw new Error(`wasp did not serve a new generation within ${c.stepBoundMs / 1000} s (still ${g})`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Writes the config beside the watched file, renames it into place and waits until the daemon
 *  serves the next generation; ms from the rename. */
async function apply(c: Ctx, config: unknown): Promise<number> {
  const before = await generation(c);
  const tmp = join(c.t.work, "etc", ".config-bench.json");
  writeFileSync(tmp, JSON.stringify(config));
  const t0 = performance.now();
  renameSync(tmp, c.t.configPath);
  return served(c, before, t0);
}

/** load_ms, rss_mib, the traffic (with the daemon's CPU), the updates, the daemon's own
 *  reload_apply_ms for the last, then rss_flows_mib with FLOWS flows tracked. */
async function runWasp(c: Ctx, services: ScaleService[], n: number, out: Sample, daemonArgs: string[]): Promise<void> {
  c.t.writeConfig(waspConfig([]));
  const d = await c.t.startDaemon(daemonArgs);
  try {
    const pid = d.child.pid!;
    out.load_ms = await apply(c, waspConfig(services));
    // what the load left to do (the daemon collecting its garbage) is timed, then the steady state measured
    out.settle_ms = await settle();
    out.rss_mib = rssMib(pid);
    await traffic(c, target(services).clusterIP, out, pid);
    let logLines = 0;
    await updates(c, services, n, out, async (_current, next, key) => {
      logLines = d.lines().length;
      out[`${key}_ms`] = await apply(c, waspConfig(next));
      return true;
    });
    // The daemon's own measure of the reload (model, diff, commit), without the file watch and parse.
    await waitFor(() => d.lines().slice(logLines).some((l) => typeof l.ms === "number"), "the reload log line", 5000).catch(() => undefined);
    const applied = d.lines().slice(logLines).find((l) => typeof l.ms === "number");
    if (applied) out.reload_apply_ms = applied.ms as number;
    if (n > 1) await withFlows(c, services, out, pid);
  } finally {
    await c.t.stopProcess(d.child, "SIGTERM");
    await fromNothing(c);
  }
}

/** Opens FLOWS flows (one SYN each, to the services no one serves) and takes the RSS with them tracked. */
async function withFlows(c: Ctx, services: ScaleService[], out: Sample, pid: number): Promise<void> {
  const first = services[0]!.clusterIP, addrs = services.length - 1;
  const r = await runTimed(c.client.ns, c.bin, ["flows", first, String(addrs), String(CONN_PORT), String(FLOWS), String(FLOWS_PER_S)], undefined, c.stepBoundMs);
  if (r.code !== 0) throw new Error(`connrate flows: ${r.out}`);
  await new Promise((res) => setTimeout(res, 1000));
  out.flows_tracked = ((await control(c.t.socketPath, { cmd: "status" })).conntrack as { entries: number }).entries;
  out.rss_flows_mib = rssMib(pid);
}

/** A stopped daemon leaves its datapath and its flow journal for the next one (a restart keeps
 *  flows): the next daemon, of any dataplane or repetition, starts from nothing. */
async function fromNothing(c: Ctx): Promise<void> {
  await c.t.cleanupNode();
  for (const f of journalFiles(c.t.socketPath)) rmSync(f, { force: true });
}

/** The Service and EndpointSlice the API server holds for one scale service. */
function kubeObjects(s: ScaleService): [Record<string, unknown>, Record<string, unknown>] {
  return [
    service({ name: s.name, namespace: s.namespace, clusterIP: s.clusterIP, ports: s.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol, targetPort: p.targetPort })) }),
    endpointSlice(`${s.name}-x`, s.name, s.backends.map((ip) => ({ ip })), s.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol })), { namespace: s.namespace }),
  ];
}

/** update_api_ms: the median of API_UPDATES one-service endpoint changes, from the API server's
 *  send (when the fake API server process wrote it to the watch streams, on the shared clock of
 *  performance.timeOrigin) to the new generation, with the N services loaded from the API. */
async function runWaspApi(c: Ctx, services: ScaleService[], n: number, out: Sample, daemonArgs: string[]): Promise<void> {
  const kcPath = join(c.t.work, "kubeconfig");
  const api = await startFakeApiProcess(c.t.node, "scale-token", kcPath);
  tracked(api.child);   // an interrupted run ends it, and the daemon below, by PID
  let daemon: ReturnType<typeof spawnInNs> | undefined;
  try {
    await api.apply("Node", node(NODE_NAME, NODE_IP, POD_CIDR));
    for (let i = 0; i < services.length; i += 250) {
      await Promise.all(services.slice(i, i + 250).flatMap((s) => kubeObjects(s).map((o, k) => api.apply(k === 0 ? "Service" : "EndpointSlice", o))));
    }
    let log = "";
    daemon = tracked(spawnInNs(c.t.node, process.execPath, [
      "--import", `file://${TSX}`, join(ROOT, "src/main.ts"), "daemon", "--kubeconfig", kcPath, "--hostname-override", NODE_NAME,
      "--service-cidr", SERVICE_CIDR, "--cluster-cidr", CLUSTER_CIDR, "--socket", c.t.socketPath, "--metrics-port", "0", ...daemonArgs,
    ]));
    daemon.stdout?.on("data", (b: Buffer) => { log += b.toString(); });
    daemon.stderr?.on("data", (b: Buffer) => { log += b.toString(); });
    const entries = services.reduce((a, s) => a + s.ports.length, 0);
    const t0 = performance.now();
    for (;;) {
      const s = await control(c.t.socketPath, { cmd: "status" }).catch(() => undefined) as { services: number } | undefined;
      if (s?.services === entries) break;
      if (daemon.exitCode !== null) throw new Error(`the --kubeconfig daemon exited: ${log.slice(-2000)}`);
      if (performance.now() - t0 > c.stepBoundMs) throw new Error(`the --kubeconfig daemon did not load ${entries} entries within ${c.stepBoundMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    out.load_api_ms = performance.now() - t0;
    const ms: number[] = [];
    let current = services;
    for (let k = 0; k < API_UPDATES; k++) {
      await new Promise((r) => setTimeout(r, 1100));   // past the minSyncPeriod: the change syncs at once, as the first after a quiet spell
      current = withChangedBackends(current, [updateIndex(n)], 10 + k, CHANGED_BACKENDS);
      const before = await generation(c);
      const slice = kubeObjects(current[updateIndex(n)]!)[1];
      // from the moment the API server wrote the change to its watch streams (the server reports it)
      const sentAt = await api.applyTimed("EndpointSlice", slice);
      const sent = sentAt - performance.timeOrigin;
      ms.push(await served(c, before, sent));
    }
    out.update_api_ms = median(ms);
  } finally {
    if (daemon) await stop(daemon);
    await stop(api.child);
    await fromNothing(c);
  }
}

/** Where wasp's update time goes, measured in this process on the same inputs: validate and model. */
function breakdown(services: ScaleService[], n: number, out: Sample): void {
  const a = validateConfig(waspConfig(services));
  if ("problems" in a) throw new Error(`the wasp config for N=${n} is invalid: ${JSON.stringify(a.problems.slice(0, 3))}`);
  const model = buildModel(a.config);
  const changed = waspConfig(withChangedBackends(services, [updateIndex(n)], 2, CHANGED_BACKENDS));
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
