// npm run bench -- scale [--quick]: wasp against kube-proxy's iptables, nftables and IPVS modes at
// N = 1, 1,000, 10,000 and 30,000 ClusterIP services (2 endpoints each; --quick: 1 and 10,000).
//
// One topology (test/helpers/topology.ts): a node namespace, a client pod and a backend pod attached
// by the wasp CNI plugin. The backend pod has a second address (BACKEND2, with the node's /32 route
// to it), so the target service's two endpoints are two addresses of one pod: iperf3's control and
// data connections then reach the same server whichever endpoint each gets. The target is the last
// service (the one KUBE-SERVICES' linear scan meets last). The dataplanes take turns on that node,
// each from nothing to nothing (rules removed, daemon stopped, conntrack flushed), the order rotated
// per repetition:
//   wasp      `wasp daemon` from source, started on an empty service list, then the config file
//             rewritten (a reload = a new table generation; the control socket's status reports it);
//   iptables  kube-proxy's full iptables-restore --noflush (rules.ts), jumps from PREROUTING/OUTPUT/
//             POSTROUTING/FORWARD; the x_tables ("legacy") backend when the nf_tables one cannot load
//             10,000 services in the bound (measured here at N <= 1,000: iptables_nft_load_ms_<N>);
//   nftables  kube-proxy's nftables transaction (rules.ts), then its incremental updates;
//   ipvs      kube-ipvs0 (dummy) with the VIPs, ipvsadm -R; only where the kernel has ip_vs and dummy.
// Per dataplane and N: load_ms (all N from nothing), update_ms (one service's endpoints change with
// N loaded, until the new rules serve), conn_per_s and connect_p50/p99_us (connrate.c: WORKERS
// processes of blocking connect()s to VIP:80 for CONN_SECS), tcp_gbps (iperf3 to VIP:5201),
// lost_during_update (a 64-byte UDP stream with sequence numbers to the target's UDP port while 100
// other services change in one update, update100_ms; from N = 1,000 on, N = 1 has no others;
// lost_without_update: the same stream for 2 s with no change), memory (wasp: the
// daemon's RSS; kernel: growth of Slab + VmallocUsed + Percpu across the load, machine-wide).
// Every command that programs rules runs under a time bound; a step over it is recorded as
// <dp>_<step>_timeout_s_<N> and the dataplane's other measurements at that N are skipped.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { cpus, release, tmpdir } from "node:os";
import { join } from "node:path";
import { median, RESULTS_DIR, round, writeResults } from "../lib/results.js";
import { inNs, ip, spawnInNs, stop, sysctl } from "../../test/helpers/netns.js";
import { NODE_IP, POD_CIDR, Topology, waitFor, type DaemonProc, type Pod } from "../../test/helpers/topology.js";
import {
  changeIndexes, iptablesJumps, iptablesRestore, iptChains, ipvsDummyAddrs, ipvsRestore, nftRuleset, nftUpdate, serviceSet,
  waspServices, withChangedBackends, type ScaleService, type ServicePort,
} from "./rules.js";
import { lineChart } from "./svg.js";
import { validateConfig } from "../../src/config/index.js";
import { buildModel, diffModel } from "../../src/model/index.js";

const HERE = new URL(".", import.meta.url).pathname;
const SERVICE_BASE = "10.96.0.0", SERVICE_CIDR = "10.96.0.0/16", CLUSTER_CIDR = "10.244.0.0/16";
const BACKEND2 = "10.244.1.250";
const FILLER_BACKENDS = "10.244.128.0", CHANGED_BACKENDS = "10.244.64.0";
const CONN_PORT = 80, IPERF_PORT = 5201, STREAM_PORT = 9000;
const TARGET_PORTS: ServicePort[] = [
  { name: "http", port: CONN_PORT, protocol: "TCP", targetPort: 8080 },
  { name: "iperf", port: IPERF_PORT, protocol: "TCP", targetPort: IPERF_PORT },
  { name: "stream", port: STREAM_PORT, protocol: "UDP", targetPort: STREAM_PORT },
];
const WORKERS = 4;
const STREAM_PPS = 5000;
const CHANGED_IN_STREAM = 100;

export type Dataplane = "wasp" | "iptables" | "nftables" | "ipvs";
type Sample = Partial<Record<string, number>>;

interface Ctx {
  t: Topology;
  client: Pod;
  backend: Pod;
  bin: string;
  quick: boolean;
  iptRestore: string;
  iptCmd: string;
  stepBoundMs: number;
  connSecs: number;
  iperfSecs: number;
}

const procs = new Set<ChildProcess>();

/** Runs cmd in ns with `input` on stdin, bounded by timeoutMs; wall time in ms. */
function runTimed(ns: string, cmd: string, args: string[], input: string | undefined, timeoutMs: number): Promise<{ ms: number; code: number | null; out: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn("ip", ["netns", "exec", ns, cmd, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    procs.add(child);
    let out = "", timedOut = false;
    child.stdout.on("data", (d: Buffer) => { if (out.length < 4000) out += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { if (out.length < 4000) out += d.toString(); });
    const t0 = performance.now();
    const timer = setTimeout(() => { timedOut = true; child.kill("SIGKILL"); }, timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      procs.delete(child);
      resolve({ ms: performance.now() - t0, code, out, timedOut });
    });
    child.stdin.on("error", () => { /* the child died early; its exit code says why */ });
    child.stdin.end(input ?? "");
  });
}

function track(ns: string, cmd: string, args: string[]): { child: ChildProcess; out: () => string; exited: Promise<void> } {
  const child = spawnInNs(ns, cmd, args);
  procs.add(child);
  let text = "";
  child.stdout?.on("data", (d: Buffer) => { text += d.toString(); });
  child.stderr?.on("data", (d: Buffer) => { text += d.toString(); });
  const exited = new Promise<void>((resolve) => child.once("exit", () => { procs.delete(child); resolve(); }));
  return { child, out: () => text, exited };
}

async function startServer(ns: string, cmd: string, args: string[], ready: string): Promise<ChildProcess> {
  const p = track(ns, cmd, args);
  await waitFor(() => p.out().includes(ready) || p.child.exitCode !== null, `${cmd} ${args.join(" ")}`);
  if (p.child.exitCode !== null) throw new Error(`${cmd} ${args.join(" ")} exited: ${p.out()}`);
  return p.child;
}

/** Kernel memory that rule sets live in (KiB): Slab + VmallocUsed + Percpu, machine-wide. */
function kernelKib(): number {
  const m = readFileSync("/proc/meminfo", "utf8");
  const get = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(m)?.[1] ?? 0);
  return get("Slab") + get("VmallocUsed") + get("Percpu");
}

function rssMib(pid: number): number {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+)/m.exec(s)?.[1] ?? NaN) / 1024;
}

// ── traffic ─────────────────────────────────────────────────────────────────────────────────────

async function connTest(c: Ctx, vip: string): Promise<{ conn_per_s: number; p50: number; p99: number; errors: number }> {
  const p = track(c.client.ns, c.bin, ["connect", vip, String(CONN_PORT), String(c.connSecs), String(WORKERS)]);
  const timer = setTimeout(() => p.child.kill("SIGKILL"), (c.connSecs + 10) * 1000);
  await p.exited;
  clearTimeout(timer);
  const j = JSON.parse(p.out().trim().split("\n").pop() ?? "{}") as { conn_per_s?: number; p50_us: number; p99_us: number; errors: number; connections: number };
  if (j.conn_per_s === undefined) throw new Error(`connrate connect: ${p.out()}`);
  if (j.connections === 0) throw new Error(`connrate connect to ${vip}:${CONN_PORT}: no connection succeeded (${j.errors} errors)`);
  return { conn_per_s: j.conn_per_s, p50: j.p50_us, p99: j.p99_us, errors: j.errors };
}

async function iperfGbps(c: Ctx, vip: string): Promise<number> {
  const p = track(c.client.ns, "iperf3", ["-c", vip, "-p", String(IPERF_PORT), "-t", String(c.iperfSecs), "-J"]);
  const timer = setTimeout(() => p.child.kill("SIGKILL"), (c.iperfSecs + 15) * 1000);
  await p.exited;
  clearTimeout(timer);
  let j: any;
  try { j = JSON.parse(p.out()); } catch { throw new Error(`iperf3 to ${vip}: no JSON: ${p.out().slice(0, 300)}`); }
  if (j.error) throw new Error(`iperf3 to ${vip}: ${j.error}`);
  return j.end.sum_received.bits_per_second / 1e9;
}

/** A UDP stream to the target runs while `change` programs an update; datagrams lost. */
async function lostDuring(c: Ctx, vip: string, change: () => Promise<void>): Promise<{ lost: number; sent: number }> {
  const recv = track(c.backend.ns, c.bin, ["udprecv", String(STREAM_PORT)]);
  await waitFor(() => recv.out().includes("ready") || recv.child.exitCode !== null, "udprecv");
  const send = track(c.client.ns, c.bin, ["udpsend", vip, String(STREAM_PORT), String(STREAM_PPS), "900"]);
  await waitFor(() => send.out().includes("ready") || send.child.exitCode !== null, "udpsend");
  try {
    await new Promise((r) => setTimeout(r, 500));
    await change();
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    send.child.kill("SIGTERM");
    await send.exited;
    await new Promise((r) => setTimeout(r, 300));
    recv.child.kill("SIGTERM");
    await recv.exited;
  }
  const s = JSON.parse(send.out().trim().split("\n").pop() ?? "{}") as { sent?: number };
  const r = JSON.parse(recv.out().trim().split("\n").pop() ?? "{}") as { received?: number };
  if (s.sent === undefined || r.received === undefined) throw new Error(`UDP stream: sender said ${send.out()}, receiver ${recv.out()}`);
  return { lost: s.sent - r.received, sent: s.sent };
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSec(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

async function traffic(c: Ctx, vip: string, out: Sample, reps: number, daemonPid?: number): Promise<void> {
  const conns: number[] = [], p50: number[] = [], p99: number[] = [];
  const cpu0 = daemonPid ? cpuSec(daemonPid) : 0, t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const r = await connTest(c, vip);
    conns.push(r.conn_per_s); p50.push(r.p50); p99.push(r.p99);
  }
  // How busy the daemon's one thread was while the connections ran (100 = a whole core).
  if (daemonPid) out.daemon_cpu_pct_connect = (100 * (cpuSec(daemonPid) - cpu0)) / ((performance.now() - t0) / 1000);
  out.conn_per_s = median(conns);
  out.connect_p50_us = median(p50);
  out.connect_p99_us = median(p99);
  out.tcp_gbps = await iperfGbps(c, vip);
  // The same stream with no change: what the dataplane loses anyway (the reference for lost_during_update).
  out.lost_without_update = (await lostDuring(c, vip, () => new Promise((r) => setTimeout(r, 1000)))).lost;
}

// ── dataplanes ──────────────────────────────────────────────────────────────────────────────────

function target(services: readonly ScaleService[]): ScaleService {
  return services[services.length - 1]!;
}

/** The index of the one service whose endpoints change in the update: the middle one (N = 1: the target). */
function updateIndex(n: number): number {
  return n > 1 ? Math.floor((n - 1) / 2) : 0;
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

function status(socketPath: string): Promise<{ generation: number; services: number }> {
  return new Promise((resolve, reject) => {
    const s = createConnection(socketPath);
    let text = "";
    s.setEncoding("utf8");
    s.on("connect", () => s.write('{"cmd":"status"}\n'));
    s.on("data", (d: string) => { text += d; });
    s.on("end", () => { try { resolve(JSON.parse(text)); } catch { reject(new Error(`status: ${text}`)); } });
    s.on("error", reject);
  });
}

/** Writes the config and waits until the daemon serves the next generation; ms from the write. */
async function waspApply(c: Ctx, config: unknown, boundMs: number): Promise<number> {
  const before = (await status(c.t.socketPath)).generation;
  const text = JSON.stringify(config);
  const t0 = performance.now();
  c.t.writeConfig(text);
  for (;;) {
    const g = (await status(c.t.socketPath)).generation;
    if (g > before) return performance.now() - t0;
    if (performance.now() - t0 > boundMs) throw new Error(`wasp did not serve a new generation within ${boundMs / 1000} s (still ${g})`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function runWasp(c: Ctx, services: ScaleService[], n: number, out: Sample): Promise<void> {
  c.t.writeConfig(waspConfig([], n));
  const d: DaemonProc = await c.t.startDaemon();
  try {
    const pid = d.child.pid!;
    out.load_ms = await waspApply(c, waspConfig(services, n), c.stepBoundMs);
    out.rss_mib = rssMib(pid);
    await traffic(c, target(services).clusterIP, out, c.quick ? 1 : 2, pid);
    let current = services;
    if (n > 1) {
      const next = withChangedBackends(current, changeIndexes(n, CHANGED_IN_STREAM), 1, CHANGED_BACKENDS);
      out.lost_during_update = (await lostDuring(c, target(services).clusterIP, async () => { out.update100_ms = await waspApply(c, waspConfig(next, n), c.stepBoundMs); })).lost;
      current = next;
    }
    const next = withChangedBackends(current, [updateIndex(n)], 2, CHANGED_BACKENDS);
    const logLines = d.lines().length;
    out.update_ms = await waspApply(c, waspConfig(next, n), c.stepBoundMs);
    // The daemon's own measure of the reload (model, diff, commit), without the file watch and parse.
    await waitFor(() => d.lines().slice(logLines).some((l) => typeof l.ms === "number"), "the reload log line", 5000).catch(() => undefined);
    const applied = d.lines().slice(logLines).find((l) => typeof l.ms === "number");
    if (applied) out.reload_apply_ms = applied.ms as number;
  } finally {
    await c.t.stopProcess(d.child, "SIGTERM");
  }
}

/** Where wasp's update time goes, measured in this process on the same inputs: validate and model. */
function waspBreakdown(services: ScaleService[], n: number, out: Sample): void {
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

async function iptablesFlush(c: Ctx): Promise<void> {
  // Deleting what the phase made: the jumps first, then kube's chains (flush all, then delete all).
  for (const j of iptablesJumps()) {
    const del = j.map((x) => (x === "-A" ? "-D" : x));
    try { inNs(c.t.node, c.iptCmd, ...del); } catch { /* not there (a failed load) */ }
  }
  for (const table of ["nat", "filter"]) {
    await runTimed(c.t.node, c.iptCmd, ["-t", table, "-F"], undefined, c.stepBoundMs);
    await runTimed(c.t.node, c.iptCmd, ["-t", table, "-X"], undefined, c.stepBoundMs);
  }
}

async function bounded(what: string, r: { ms: number; code: number | null; out: string; timedOut: boolean }, out: Sample, key: string, bound: number): Promise<boolean> {
  if (r.timedOut) {
    out[`${key}_timeout_s`] = bound / 1000;
    console.log(`  ${what}: stopped after the bound of ${bound / 1000} s`);
    return false;
  }
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.out.slice(0, 600)}`);
  return true;
}

type Timed = Awaited<ReturnType<typeof runTimed>>;

/** A kernel dataplane's two updates: 100 services' endpoints changed while the UDP stream runs
 *  (N > 1), then one service's; `apply` programs the change from `current` to `next`. */
async function kernelUpdates(c: Ctx, services: ScaleService[], n: number, out: Sample, what: [string, string],
  apply: (current: ScaleService[], next: ScaleService[]) => Promise<Timed>): Promise<void> {
  let current = services;
  if (n > 1) {
    const next = withChangedBackends(current, changeIndexes(n, CHANGED_IN_STREAM), 1, CHANGED_BACKENDS);
    let ok = true;
    const r = await lostDuring(c, target(services).clusterIP, async () => {
      const u = await apply(current, next);
      ok = await bounded(`${what[0]} at ${n}`, u, out, "update100", c.stepBoundMs);
      out.update100_ms = u.ms;
    });
    if (!ok) return;
    out.lost_during_update = r.lost;
    current = next;
  }
  const next = withChangedBackends(current, [updateIndex(n)], 2, CHANGED_BACKENDS);
  const u = await apply(current, next);
  if (!(await bounded(`${what[1]} at ${n}`, u, out, "update", c.stepBoundMs))) return;
  out.update_ms = u.ms;
}

async function runIptables(c: Ctx, services: ScaleService[], n: number, out: Sample): Promise<void> {
  try {
    const k0 = kernelKib();
    const load = await runTimed(c.t.node, c.iptRestore, ["--noflush"], iptablesRestore(services, CLUSTER_CIDR), c.stepBoundMs);
    if (!(await bounded(`iptables load of ${n}`, load, out, "load", c.stepBoundMs))) return;
    out.load_ms = load.ms;
    out.kernel_kib = kernelKib() - k0;
    for (const j of iptablesJumps()) inNs(c.t.node, c.iptCmd, ...j);
    await traffic(c, target(services).clusterIP, out, c.quick ? 1 : 2);
    await kernelUpdates(c, services, n, out, ["iptables restore (100 changed)", "iptables update"],
      (current, next) => runTimed(c.t.node, c.iptRestore, ["--noflush"], iptablesRestore(next, CLUSTER_CIDR, iptChains(current)), c.stepBoundMs));
  } finally {
    await iptablesFlush(c);
  }
}

/** kube-proxy's iptables mode on the nf_tables backend: only its load time (bounded), at small N. */
async function iptablesNftLoad(c: Ctx, services: ScaleService[], n: number, out: Sample): Promise<void> {
  const bound = Math.min(c.stepBoundMs, 60000);
  const r = await runTimed(c.t.node, "iptables-nft-restore", ["--noflush"], iptablesRestore(services, CLUSTER_CIDR), bound);
  try {
    if (r.timedOut) { out.nft_backend_load_timeout_s = bound / 1000; return; }
    if (r.code !== 0) throw new Error(`iptables-nft-restore failed: ${r.out.slice(0, 400)}`);
    out.nft_backend_load_ms = r.ms;
  } finally {
    // iptables-nft keeps its tables in nf_tables: removing them is one nft command.
    await runTimed(c.t.node, "nft", ["delete", "table", "ip", "nat"], undefined, c.stepBoundMs);
    await runTimed(c.t.node, "nft", ["delete", "table", "ip", "filter"], undefined, c.stepBoundMs);
  }
}

async function runNftables(c: Ctx, services: ScaleService[], n: number, out: Sample): Promise<void> {
  try {
    const k0 = kernelKib();
    const load = await runTimed(c.t.node, "nft", ["-f", "-"], nftRuleset(services, SERVICE_CIDR, CLUSTER_CIDR), c.stepBoundMs);
    if (!(await bounded(`nft load of ${n}`, load, out, "load", c.stepBoundMs))) return;
    out.load_ms = load.ms;
    out.kernel_kib = kernelKib() - k0;
    await traffic(c, target(services).clusterIP, out, c.quick ? 1 : 2);
    await kernelUpdates(c, services, n, out, ["nft update (100 changed)", "nft update"],
      (current, next) => runTimed(c.t.node, "nft", ["-f", "-"], nftUpdate(current, next, CLUSTER_CIDR), c.stepBoundMs));
  } finally {
    await runTimed(c.t.node, "nft", ["delete", "table", "ip", "kube-proxy"], undefined, c.stepBoundMs);
  }
}

/** IPVS mode: VIPs on the dummy kube-ipvs0, virtual servers by ipvsadm -R. Runs only where probeIpvs() found both. */
async function runIpvs(c: Ctx, services: ScaleService[], n: number, out: Sample): Promise<void> {
  try {
    sysctl(c.t.node, "net.ipv4.vs.conntrack", 1);
    ip(c.t.node, "link", "add", "kube-ipvs0", "type", "dummy");
    const k0 = kernelKib();
    const t0 = performance.now();
    const a = await runTimed(c.t.node, "ip", ["-batch", "-"], ipvsDummyAddrs(services), c.stepBoundMs);
    if (!(await bounded(`kube-ipvs0 addresses for ${n}`, a, out, "load", c.stepBoundMs))) return;
    const r = await runTimed(c.t.node, "ipvsadm", ["-R"], ipvsRestore(services), c.stepBoundMs);
    if (!(await bounded(`ipvsadm -R of ${n}`, r, out, "load", c.stepBoundMs))) return;
    out.load_ms = performance.now() - t0;
    out.kernel_kib = kernelKib() - k0;
    await traffic(c, target(services).clusterIP, out, c.quick ? 1 : 2);
    // One ipvsadm edit: the changed real server out, the new one in.
    const edit = (before: ScaleService[], after: ScaleService[]) => after.flatMap((s, i) => {
      const old = before[i]!;
      if (old.backends.join() === s.backends.join()) return [];
      return s.ports.flatMap((p) => {
        const f = p.protocol === "TCP" ? "-t" : "-u", vs = `${s.clusterIP}:${p.port}`;
        return [
          ...old.backends.filter((b) => !s.backends.includes(b)).map((b) => `-d ${f} ${vs} -r ${b}:${p.targetPort}`),
          ...s.backends.filter((b) => !old.backends.includes(b)).map((b) => `-a ${f} ${vs} -r ${b}:${p.targetPort} -m -w 1`),
        ];
      });
    }).join("\n") + "\n";
    let current = services;
    if (n > 1) {
      const next = withChangedBackends(current, changeIndexes(n, CHANGED_IN_STREAM), 1, CHANGED_BACKENDS);
      const l = await lostDuring(c, target(services).clusterIP, async () => {
        const u = await runTimed(c.t.node, "ipvsadm", ["-R"], edit(current, next), c.stepBoundMs);
        if (u.code !== 0) throw new Error(`ipvsadm edit: ${u.out}`);
        out.update100_ms = u.ms;
      });
      out.lost_during_update = l.lost;
      current = next;
    }
    const next = withChangedBackends(current, [updateIndex(n)], 2, CHANGED_BACKENDS);
    const u = await runTimed(c.t.node, "ipvsadm", ["-R"], edit(current, next), c.stepBoundMs);
    if (u.code !== 0) throw new Error(`ipvsadm edit: ${u.out}`);
    out.update_ms = u.ms;
  } finally {
    await runTimed(c.t.node, "ipvsadm", ["-C"], undefined, c.stepBoundMs);
    try { ip(c.t.node, "link", "del", "kube-ipvs0"); } catch { /* not made */ }
  }
}

/** Why IPVS cannot run here, or undefined when it can (ip_vs answers and a dummy link can be made). */
function probeIpvs(ns: string): string | undefined {
  try { inNs(ns, "ipvsadm", "-Ln"); } catch (e) { return `ipvsadm -Ln: ${(e as Error).message.split("\n").slice(-2).join(" ").trim()} (no ip_vs in this kernel)`; }
  try { ip(ns, "link", "add", "scaleprobe0", "type", "dummy"); ip(ns, "link", "del", "scaleprobe0"); } catch (e) {
    return `ip link add type dummy: ${(e as Error).message} (no dummy link type in this kernel, so no kube-ipvs0)`;
  }
  return undefined;
}

/** iptables-restore whose backend can load 10,000 services in the bound: legacy (x_tables) when it works. */
function chooseIptables(ns: string): { restore: string; cmd: string; backend: string } {
  try {
    inNs(ns, "iptables-legacy", "-t", "nat", "-L", "-n");
    return { restore: "iptables-legacy-restore", cmd: "iptables-legacy", backend: "legacy" };
  } catch {
    return { restore: "iptables-nft-restore", cmd: "iptables-nft", backend: "nf_tables" };
  }
}

function buildConnrate(dir: string): string {
  const bin = join(dir, "connrate");
  execFileSync("cc", ["-O2", "-Wall", "-o", bin, join(HERE, "connrate.c")], { stdio: "inherit" });
  return bin;
}

// ── the run ─────────────────────────────────────────────────────────────────────────────────────

const COLORS: Record<Dataplane, string> = { wasp: "#d62728", iptables: "#1f77b4", nftables: "#2ca02c", ipvs: "#9467bd" };

export async function run(quick: boolean): Promise<Record<string, number>> {
  // SCALE_N=1,1000 picks other sizes (for trying one size; the results file then has only those).
  const Ns = process.env.SCALE_N ? process.env.SCALE_N.split(",").map(Number) : quick ? [1, 10000] : [1, 1000, 10000, 30000];
  if (Ns.some((n) => !Number.isInteger(n) || n < 1 || n > 60000)) throw new Error(`SCALE_N is ${process.env.SCALE_N}; give sizes 1-60000 separated by commas`);
  const tmp = mkdtempSync(join(tmpdir(), "wasp-scale-"));
  const t = new Topology();
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const p of [...procs]) await stop(p, "SIGKILL");
    await t.destroy();
    rmSync(tmp, { recursive: true, force: true });
  };
  const onSignal = () => { void cleanup().finally(() => process.exit(130)); };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const samples = new Map<string, Sample[]>(); // `${dp}/${n}` -> one Sample per repetition
  const metrics: Record<string, number> = {};
  const notes: string[] = [];
  const t0 = Date.now();
  try {
    const bin = buildConnrate(tmp);
    const client = await t.addPod("client");
    const backend = await t.addPod("backend");
    // The target's second endpoint: another address of the backend pod, routed to it by the node.
    ip(backend.ns, "addr", "add", `${BACKEND2}/32`, "dev", "eth0");
    const dev = (JSON.parse(ip(t.node, "-j", "route", "get", backend.ip)) as Array<{ dev: string }>)[0]!.dev;
    ip(t.node, "route", "add", `${BACKEND2}/32`, "dev", dev);
    sysctl(t.node, "net.ipv4.ip_forward", 1);
    await startServer(backend.ns, bin, ["serve", "8080"], "ready");
    await startServer(backend.ns, "iperf3", ["-s", "-p", String(IPERF_PORT), "--forceflush"], "listening");

    const ipvsWhyNot = probeIpvs(t.node);
    if (ipvsWhyNot) { notes.push(`ipvs not measured: ${ipvsWhyNot}`); console.log(`ipvs: not available: ${ipvsWhyNot}`); }
    const ipt = chooseIptables(t.node);
    console.log(`iptables: ${ipt.restore} (${ipt.backend} backend)`);
    // SCALE_DP=wasp,nftables runs only those (for trying one; the results file then has only those).
    const only = process.env.SCALE_DP?.split(",");
    const dps = (["wasp", "iptables", "nftables", ...(ipvsWhyNot ? [] : ["ipvs" as const])] as Dataplane[]).filter((d) => !only || only.includes(d));
    const c: Ctx = {
      t, client, backend, bin, quick, iptRestore: ipt.restore, iptCmd: ipt.cmd,
      // SCALE_BOUND_S: the bound on one programming step (default 240 s; 20 s with --quick, which keeps
      // the quick run under two minutes: nftables needs ~60 s for 10,000 services here and is reported as stopped).
      stepBoundMs: (Number(process.env.SCALE_BOUND_S) || (quick ? 20 : 240)) * 1000, connSecs: quick ? 2 : 3, iperfSecs: quick ? 2 : 3,
    };

    for (const n of Ns) {
      const services = serviceSet({ count: n, serviceBase: SERVICE_BASE, targetBackends: [backend.ip, BACKEND2], fillerBackendBase: FILLER_BACKENDS, targetPorts: TARGET_PORTS });
      // Repetitions: the slow loads at large N are run once (the bound would not allow more).
      const reps = quick || n >= 10000 ? 1 : 2;
      for (let rep = 0; rep < reps; rep++) {
        const order = dps.map((_, i) => dps[(i + rep + Ns.indexOf(n)) % dps.length]!);
        for (const dp of order) {
          const s: Sample = {};
          const ts = Date.now();
          try {
            if (dp === "wasp") await runWasp(c, services, n, s);
            else if (dp === "iptables") await runIptables(c, services, n, s);
            else if (dp === "nftables") await runNftables(c, services, n, s);
            else await runIpvs(c, services, n, s);
          } catch (e) {
            console.log(`  ${dp} N=${n}: failed: ${(e as Error).message}`);
            notes.push(`${dp} N=${n}: ${(e as Error).message}`);
          }
          // The next dataplane starts with an empty kernel flow table (this one's RST-closed flows linger 10 s).
          try { inNs(t.node, "conntrack", "-F"); } catch { /* no conntrack in this namespace yet */ }
          const k = `${dp}/${n}`;
          samples.set(k, [...(samples.get(k) ?? []), s]);
          console.log(`${dp} N=${n} rep ${rep + 1}/${reps} (${((Date.now() - ts) / 1000).toFixed(1)} s): ${JSON.stringify(Object.fromEntries(Object.entries(s).map(([a, b]) => [a, round(b!, 2)])))}`);
        }
      }
      // The nf_tables backend's load, bounded by 60 s: at 10,000 it shows where it stands (full run only).
      if ((n <= 1000 || (n === 10000 && !quick)) && dps.includes("iptables")) {
        const s: Sample = {};
        await iptablesNftLoad(c, services, n, s);
        samples.set(`iptables/${n}`, [...(samples.get(`iptables/${n}`) ?? []), s]);
        console.log(`iptables (nf_tables backend) N=${n}: ${JSON.stringify(s)}`);
      }
      const b: Sample = {};
      waspBreakdown(services, n, b);
      samples.set(`wasp/${n}`, [...(samples.get(`wasp/${n}`) ?? []), b]);
      console.log(`wasp update breakdown N=${n}: ${JSON.stringify(Object.fromEntries(Object.entries(b).map(([a, v]) => [a, round(v!, 1)])))}`);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }

  // Medians over repetitions, per dataplane, metric and N.
  const DIGITS: Record<string, number> = { conn_per_s: 0, connect_p50_us: 1, connect_p99_us: 1, tcp_gbps: 3, lost_during_update: 0, lost_without_update: 0, rss_mib: 1, kernel_kib: 0, daemon_cpu_pct_connect: 0 };
  for (const [k, list] of samples) {
    const [dp, n] = k.split("/");
    const keys = new Set(list.flatMap((s) => Object.keys(s)));
    for (const m of keys) {
      const vals = list.map((s) => s[m]).filter((v): v is number => typeof v === "number" && Number.isFinite(v));
      if (vals.length) metrics[`${dp}_${m}_${n}`] = round(median(vals), DIGITS[m] ?? 2);
    }
  }
  const get = (dp: string, m: string, n: number) => metrics[`${dp}_${m}_${n}`];
  for (const n of Ns) {
    const ratio = (key: string, a?: number, b?: number) => { if (a !== undefined && b !== undefined && b > 0) metrics[`${key}_${n}`] = round(a / b, 3); };
    ratio("wasp_vs_iptables_conn_ratio", get("wasp", "conn_per_s", n), get("iptables", "conn_per_s", n));
    ratio("wasp_vs_iptables_p99_ratio", get("wasp", "connect_p99_us", n), get("iptables", "connect_p99_us", n));
    ratio("iptables_vs_wasp_update_ratio", get("iptables", "update_ms", n), get("wasp", "update_ms", n));
    ratio("wasp_vs_iptables_tcp_ratio", get("wasp", "tcp_gbps", n), get("iptables", "tcp_gbps", n));
  }
  const w1 = get("wasp", "conn_per_s", Ns[0]!), wN = get("wasp", "conn_per_s", Ns[Ns.length - 1]!);
  if (w1 && wN) metrics.wasp_conn_change_pct_1_to_max = round((wN / w1 - 1) * 100, 1);
  metrics.ipvs_available = notes.some((x) => x.startsWith("ipvs not measured")) ? 0 : 1;
  metrics.cpus = cpus().length;
  metrics.connect_workers = WORKERS;
  metrics.stream_pps = STREAM_PPS;
  metrics.run_seconds = Math.round((Date.now() - t0) / 1000);
  writeResults("scale", metrics);
  writeCharts(metrics, Ns);
  writeFileSync(join(RESULTS_DIR, "scale.md"), markdownTable(metrics, Ns));
  writeFileSync(join(RESULTS_DIR, "scale-notes.txt"), [`${new Date().toISOString()} ${cpus().length} x ${cpus()[0]?.model}, Linux ${release()}`, ...notes, ""].join("\n"));
  for (const x of notes) console.log(`note: ${x}`);
  return metrics;
}

function writeCharts(m: Record<string, number>, Ns: number[]): void {
  const note = `${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores, Linux ${release()}; medians, one run`;
  const dps: Dataplane[] = ["wasp", "iptables", "nftables", "ipvs"];
  // A load stopped at the bound is drawn at the bound, and the legend says so (the real time is longer).
  const series = (metric: string) => dps.map((dp) => {
    const stopped = metric === "load_ms" ? Ns.filter((n) => m[`${dp}_load_timeout_s_${n}`] !== undefined) : [];
    return {
      name: dp + stopped.map((n) => ` (N=${n}: > ${m[`${dp}_load_timeout_s_${n}`]} s, stopped)`).join(""), color: COLORS[dp],
      points: Ns.flatMap((n) => {
        const v = m[`${dp}_${metric}_${n}`] ?? (stopped.includes(n) ? m[`${dp}_load_timeout_s_${n}`]! * 1000 : undefined);
        return v !== undefined ? [[n, v] as [number, number]] : [];
      }),
    };
  });
  const charts: Array<[string, Parameters<typeof lineChart>[0]]> = [
    ["scale-conn.svg", { title: "New TCP connections per second to a ClusterIP", yLabel: "connections/s", series: series("conn_per_s"), note }],
    ["scale-p99.svg", { title: "connect() latency p99", yLabel: "µs", logY: true, series: series("connect_p99_us"), note }],
    ["scale-load.svg", { title: "Programming N services from nothing", yLabel: "ms", logY: true, series: series("load_ms"), note }],
    ["scale-update.svg", { title: "Changing one service's endpoints with N loaded", yLabel: "ms", logY: true, series: series("update_ms"), note }],
    ["scale-tcp.svg", { title: "TCP throughput to a ClusterIP (iperf3)", yLabel: "Gbit/s", series: series("tcp_gbps"), note }],
  ];
  for (const [file, chart] of charts) writeFileSync(join(RESULTS_DIR, file), lineChart(chart));
}

/** The README's table: one row per dataplane and N. */
function markdownTable(m: Record<string, number>, Ns: number[]): string {
  const cols: Array<[string, string]> = [
    ["load_ms", "load ms"], ["update_ms", "1-service update ms"], ["conn_per_s", "conn/s"], ["connect_p50_us", "connect p50 µs"],
    ["connect_p99_us", "connect p99 µs"], ["tcp_gbps", "TCP Gbit/s"], ["lost_during_update", "UDP lost in 100-service update"],
    ["lost_without_update", "UDP lost, no update"], ["rss_mib", "daemon RSS MiB"], ["kernel_kib", "kernel KiB"],
  ];
  const fmt = (v: number | undefined) => (v === undefined ? "–" : v.toLocaleString("en-US", { maximumFractionDigits: v < 10 ? 2 : v < 100 ? 1 : 0 }));
  const out = [`| dataplane | N | ${cols.map((c) => c[1]).join(" | ")} |`, `|---|---:|${cols.map(() => "---:").join("|")}|`];
  for (const n of Ns) {
    for (const dp of ["wasp", "iptables", "nftables", "ipvs"]) {
      if (!cols.some(([k]) => m[`${dp}_${k}_${n}`] !== undefined) && m[`${dp}_load_timeout_s_${n}`] === undefined) continue;
      const row = cols.map(([k]) => (k === "load_ms" && m[`${dp}_load_timeout_s_${n}`] !== undefined ? `> ${m[`${dp}_load_timeout_s_${n}`]! * 1000} (stopped)` : fmt(m[`${dp}_${k}_${n}`])));
      out.push(`| ${dp} | ${n.toLocaleString("en-US")} | ${row.join(" | ")} |`);
    }
  }
  return out.join("\n") + "\n";
}
