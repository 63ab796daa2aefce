// The scale benchmark's measurements, the same for every dataplane: the traffic to the target
// (connrate.c's connect rate and latency, iperf3, a UDP stream's loss), the two updates, bounded
// programming steps, and memory and CPU from /proc. Every process started here is tracked, so that
// bench/scale/scale.ts can end them all (by PID) when a run is interrupted.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { median } from "../lib/results.js";
import { spawnInNs, stop } from "../../test/helpers/netns.js";
import { waitFor } from "../../test/helpers/topology.js";
import {
  CHANGED_BACKENDS, CHANGED_IN_STREAM, CONN_PORT, IPERF_PORT, STREAM_PORT, STREAM_PPS, target, updateIndex, WORKERS,
  type Ctx, type Sample,
} from "./dataplane.js";
import { changeIndexes, withChangedBackends, type ScaleService } from "./rules.js";

const procs = new Set<ChildProcess>();

/** Counts child among the processes stopAll ends (until it exits). */
export function tracked<T extends ChildProcess>(child: T): T {
  procs.add(child);
  child.once("exit", () => procs.delete(child));
  return child;
}

/** Ends every process the benchmark still runs (by PID). */
export async function stopAll(): Promise<void> {
  for (const p of [...procs]) await stop(p, "SIGKILL");
}

export interface Timed { ms: number; code: number | null; out: string; timedOut: boolean }

/** Runs cmd in ns with `input` on stdin, bounded by timeoutMs; wall time in ms. */
export function runTimed(ns: string, cmd: string, args: string[], input: string | undefined, timeoutMs: number): Promise<Timed> {
  return new Promise((resolve) => {
    const child = tracked(spawn("ip", ["netns", "exec", ns, cmd, ...args], { stdio: ["pipe", "pipe", "pipe"] }));
    let out = "", timedOut = false;
    child.stdout.on("data", (d: Buffer) => { if (out.length < 4000) out += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { if (out.length < 4000) out += d.toString(); });
    const t0 = performance.now();
    const timer = setTimeout(() => { timedOut = true; child.kill("SIGKILL"); }, timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - t0, code, out, timedOut });
    });
    child.stdin.on("error", () => { /* the child died early; its exit code says why */ });
    child.stdin.end(input ?? "");
  });
}

/** A command that programs rules: run in the node namespace with `input` on stdin. */
export interface Command { cmd: string; args: string[]; input?: string }

/** Runs one programming command under the bound; its ms, or undefined when the bound stopped it
 *  (recorded as `<key>_timeout_s`). A command that fails throws. */
export async function boundedStep(c: Ctx, out: Sample, key: string, what: string, command: Command): Promise<number | undefined> {
  const r = await runTimed(c.t.node, command.cmd, command.args, command.input, c.stepBoundMs);
  if (r.timedOut) {
    out[`${key}_timeout_s`] = c.stepBoundMs / 1000;
    console.log(`  ${what}: stopped after the bound of ${c.stepBoundMs / 1000} s`);
    return undefined;
  }
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.out.slice(0, 600)}`);
  return r.ms;
}

function track(ns: string, cmd: string, args: string[]): { child: ChildProcess; out: () => string; exited: Promise<void> } {
  const child = tracked(spawnInNs(ns, cmd, args));
  let text = "";
  child.stdout?.on("data", (d: Buffer) => { text += d.toString(); });
  child.stderr?.on("data", (d: Buffer) => { text += d.toString(); });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return { child, out: () => text, exited };
}

/** Starts a server in ns; resolves once its output says `ready`. */
export async function startServer(ns: string, cmd: string, args: string[], ready: string): Promise<ChildProcess> {
  const p = track(ns, cmd, args);
  await waitFor(() => p.out().includes(ready) || p.child.exitCode !== null, `${cmd} ${args.join(" ")}`);
  if (p.child.exitCode !== null) throw new Error(`${cmd} ${args.join(" ")} exited: ${p.out()}`);
  return p.child;
}

/** Waits until the machine is idle again after a load: the daemon collecting the load's garbage,
 *  or the kernel still freeing what the previous dataplane's removal left (after nftables' stopped
 *  30,000-service transaction a kworker ran for seconds and the next dataplane's connections paid
 *  for it), so that the traffic measures the steady state of the dataplane under test. Idle: under
 *  10% of all CPUs busy in a 250 ms window; at most 30 s. Returns how long it took (ms). */
export async function settle(): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const m0 = machineCpu(), w0 = performance.now();
    await new Promise((r) => setTimeout(r, 250));
    const busy = (machineCpu().busySec - m0.busySec) / (cpus().length * (performance.now() - w0) / 1000);
    if (busy < 0.1 || performance.now() - t0 > 30000) return performance.now() - t0;
  }
}

/** Kernel memory that rule sets live in (KiB): Slab + VmallocUsed + Percpu, machine-wide. */
export function kernelKib(): number {
  const m = readFileSync("/proc/meminfo", "utf8");
  const get = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(m)?.[1] ?? 0);
  return get("Slab") + get("VmallocUsed") + get("Percpu");
}

export function rssMib(pid: number): number {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+)/m.exec(s)?.[1] ?? NaN) / 1024;
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSec(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** The machine's busy CPU time (all CPUs, seconds: user + nice + system + irq + softirq + steal)
 *  and context switches so far, from /proc/stat. */
function machineCpu(): { busySec: number; switches: number } {
  const stat = readFileSync("/proc/stat", "utf8");
  const f = (/^cpu\s+(.*)$/m.exec(stat)?.[1] ?? "").split(/\s+/).map(Number);
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;  // user nice system (idle iowait) irq softirq steal
  return { busySec: busy / 100, switches: Number(/^ctxt\s+(\d+)/m.exec(stat)?.[1] ?? NaN) };
}

// ── traffic ─────────────────────────────────────────────────────────────────────────────────────

async function connTest(c: Ctx, vip: string): Promise<{ conn_per_s: number; p50: number; p99: number; errors: number; connections: number }> {
  const p = track(c.client.ns, c.bin, ["connect", vip, String(CONN_PORT), String(c.connSecs), String(WORKERS)]);
  const timer = setTimeout(() => p.child.kill("SIGKILL"), (c.connSecs + 10) * 1000);
  await p.exited;
  clearTimeout(timer);
  const j = JSON.parse(p.out().trim().split("\n").pop() ?? "{}") as { conn_per_s?: number; p50_us: number; p99_us: number; errors: number; connections: number };
  if (j.conn_per_s === undefined) throw new Error(`connrate connect: ${p.out()}`);
  if (j.connections === 0) throw new Error(`connrate connect to ${vip}:${CONN_PORT}: no connection succeeded (${j.errors} errors)`);
  return { conn_per_s: j.conn_per_s, p50: j.p50_us, p99: j.p99_us, errors: j.errors, connections: j.connections };
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

/** conn_per_s, connect_p50/p99_us (medians of 2 runs, 1 with --quick), tcp_gbps, lost_without_update;
 *  what a connection costs the whole machine while they run (cpu_us_per_conn: busy CPU time of all
 *  CPUs, client and server included; ctxsw_per_conn: context switches); with daemonPid, also how busy
 *  that process was. */
export async function traffic(c: Ctx, vip: string, out: Sample, daemonPid?: number): Promise<void> {
  const conns: number[] = [], p50: number[] = [], p99: number[] = [];
  const cpu0 = daemonPid ? cpuSec(daemonPid) : 0, t0 = performance.now(), m0 = machineCpu();
  let opened = 0;
  for (let i = 0; i < (c.quick ? 1 : 2); i++) {
    const r = await connTest(c, vip);
    conns.push(r.conn_per_s); p50.push(r.p50); p99.push(r.p99);
    opened += r.connections;
  }
  const m1 = machineCpu();
  out.cpu_us_per_conn = (1e6 * (m1.busySec - m0.busySec)) / opened;
  out.ctxsw_per_conn = (m1.switches - m0.switches) / opened;
  // How busy the daemon's one thread was while the connections ran (100 = a whole core).
  if (daemonPid) out.daemon_cpu_pct_connect = (100 * (cpuSec(daemonPid) - cpu0)) / ((performance.now() - t0) / 1000);
  out.conn_per_s = median(conns);
  out.connect_p50_us = median(p50);
  out.connect_p99_us = median(p99);
  out.tcp_gbps = await iperfGbps(c, vip);
  // The same stream with no change: what the dataplane loses anyway (the reference for lost_during_update).
  out.lost_without_update = (await lostDuring(c, vip, () => new Promise((r) => setTimeout(r, 1000)))).lost;
}

/**
 * The two updates every dataplane makes with N loaded: 100 services' endpoints changed while the UDP
 * stream runs (N > 1: lost_during_update; `apply` records update100_ms), then one service's (update_ms).
 * `apply` programs the change from `current` to `next` and records `<key>_ms`; it returns false when
 * the bound stopped it, which ends the updates.
 */
export async function updates(c: Ctx, services: ScaleService[], n: number, out: Sample,
  apply: (current: ScaleService[], next: ScaleService[], key: "update100" | "update") => Promise<boolean>): Promise<void> {
  let current = services;
  if (n > 1) {
    const next = withChangedBackends(current, changeIndexes(n, CHANGED_IN_STREAM), 1, CHANGED_BACKENDS);
    let done = true;
    const r = await lostDuring(c, target(services).clusterIP, async () => { done = await apply(current, next, "update100"); });
    if (!done) return;
    out.lost_during_update = r.lost;
    current = next;
  }
  await apply(current, withChangedBackends(current, [updateIndex(n)], 2, CHANGED_BACKENDS), "update");
}
