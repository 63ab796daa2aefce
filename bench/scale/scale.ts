// npm run bench -- scale [--quick]: wasp against kube-proxy's iptables, nftables and IPVS modes at
// N = 1, 1,000, 10,000 and 30,000 ClusterIP services (2 endpoints each; --quick: 1 and 10,000).
//
// One topology (test/helpers/topology.ts): a node namespace, a client pod and a backend pod attached
// by the wasp CNI plugin. The backend pod has a second address (BACKEND2, with the node's /32 route
// to it), so the target service's two endpoints are two addresses of one pod: iperf3's control and
// data connections then reach the same server whichever endpoint each gets. The target is the last
// service (the one KUBE-SERVICES' linear scan meets last). The dataplanes (bench/scale/dataplanes/,
// one file each, listed in its index.ts) take turns on that node, each from nothing to nothing (rules
// removed, daemon stopped, conntrack flushed), the order rotated per repetition.
// Per dataplane and N (bench/scale/measure.ts): load_ms (all N from nothing), update_ms (one
// service's endpoints change with N loaded, until the new rules serve), conn_per_s and
// connect_p50/p99_us (connrate.c: WORKERS processes of blocking connect()s to VIP:80 for CONN_SECS),
// tcp_gbps (iperf3 to VIP:5201), lost_during_update (a 64-byte UDP stream with sequence numbers to
// the target's UDP port while 100 other services change in one update, update100_ms; from N = 1,000
// on, N = 1 has no others; lost_without_update: the same stream for 2 s with no change), memory
// (wasp: the daemon's RSS after the load, rss_mib, and with 100,000 flows tracked, rss_flows_mib
// (N > 1); kernel: growth of Slab + VmallocUsed + Percpu across the load, machine-wide). wasp also
// takes the same N services from the Kubernetes API (a fake apiserver driving `wasp daemon
// --kubeconfig`): load_api_ms, and update_api_ms, one service's endpoints changed, from the API
// server's send to the new generation (median of 5). Every command that programs rules runs under a time bound; a step over it is
// recorded as <dp>_<step>_timeout_s_<N> and the dataplane's other measurements at that N are skipped.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, release, tmpdir } from "node:os";
import { join } from "node:path";
import { median, RESULTS_DIR, round, writeResults } from "../lib/results.js";
import { inNs, ip, sysctl } from "../../test/helpers/netns.js";
import { Topology } from "../../test/helpers/topology.js";
import {
  BACKEND2, FILLER_BACKENDS, IPERF_PORT, SERVICE_BASE, STREAM_PPS, TARGET_PORTS, WORKERS, type Ctx, type Dataplane, type Sample,
} from "./dataplane.js";
import { DATAPLANES } from "./dataplanes/index.js";
import { startServer, stopAll } from "./measure.js";
import { serviceSet } from "./rules.js";
import { lineChart } from "./svg.js";

const HERE = new URL(".", import.meta.url).pathname;

function buildConnrate(dir: string): string {
  const bin = join(dir, "connrate");
  execFileSync("cc", ["-O2", "-Wall", "-o", bin, join(HERE, "connrate.c")], { stdio: "inherit" });
  return bin;
}

// ── the run ─────────────────────────────────────────────────────────────────────────────────────

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
    await stopAll();
    await t.destroy();
    rmSync(tmp, { recursive: true, force: true });
  };
  const onSignal = () => { void cleanup().finally(() => process.exit(130)); };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const samples = new Map<string, Sample[]>(); // `${dp}/${n}` -> one Sample per repetition
  const add = (dp: Dataplane, n: number, s: Sample) => samples.set(`${dp.name}/${n}`, [...(samples.get(`${dp.name}/${n}`) ?? []), s]);
  const shown = (s: Sample) => JSON.stringify(Object.fromEntries(Object.entries(s).map(([a, b]) => [a, round(b!, 2)])));
  const metrics: Record<string, number> = {};
  const notes: string[] = [];
  const missing = new Set<Dataplane>(); // those whose probe said the kernel lacks them
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

    const c: Ctx = {
      t, client, backend, bin, quick,
      // SCALE_BOUND_S: the bound on one programming step (default 240 s; 20 s with --quick, which keeps
      // the quick run under two minutes: nftables needs ~60 s for 10,000 services here and is reported as stopped).
      stepBoundMs: (Number(process.env.SCALE_BOUND_S) || (quick ? 20 : 240)) * 1000, connSecs: quick ? 2 : 3, iperfSecs: quick ? 2 : 3,
    };
    for (const dp of DATAPLANES) {
      const whyNot = dp.available?.(c);
      if (whyNot) { missing.add(dp); notes.push(`${dp.name} not measured: ${whyNot}`); console.log(`${dp.name}: not available: ${whyNot}`); }
    }
    // SCALE_DP=wasp,nftables runs only those (for trying one; the results file then has only those).
    const only = process.env.SCALE_DP?.split(",");
    const dps = DATAPLANES.filter((dp) => !missing.has(dp) && (!only || only.includes(dp.name)));

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
            await dp.run(c, services, n, s);
          } catch (e) {
            console.log(`  ${dp.name} N=${n}: failed: ${(e as Error).message}`);
            notes.push(`${dp.name} N=${n}: ${(e as Error).message}`);
          }
          // The next dataplane starts with an empty kernel flow table (this one's RST-closed flows linger 10 s).
          try { inNs(t.node, "conntrack", "-F"); } catch { /* no conntrack in this namespace yet */ }
          add(dp, n, s);
          console.log(`${dp.name} N=${n} rep ${rep + 1}/${reps} (${((Date.now() - ts) / 1000).toFixed(1)} s): ${shown(s)}`);
        }
      }
      for (const dp of dps) {
        if (!dp.once) continue;
        const s: Sample = {};
        await dp.once.measure(c, services, n, s);
        if (Object.keys(s).length === 0) continue;
        add(dp, n, s);
        console.log(`${dp.name} ${dp.once.what} N=${n}: ${shown(s)}`);
      }
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }

  // Medians over repetitions, per dataplane, metric and N.
  const DIGITS: Record<string, number> = { conn_per_s: 0, connect_p50_us: 1, connect_p99_us: 1, tcp_gbps: 3, lost_during_update: 0, lost_without_update: 0, rss_mib: 1, rss_flows_mib: 1, flows_tracked: 0, kernel_kib: 0, daemon_cpu_pct_connect: 0, cpu_us_per_conn: 1, ctxsw_per_conn: 2, settle_ms: 0 };
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
    // offload mode against kube-proxy's nftables mode (issue 15's targets): TCP, conn/s, p99, load
    ratio("wasp_offload_vs_nftables_tcp_ratio", get("wasp_offload", "tcp_gbps", n), get("nftables", "tcp_gbps", n));
    ratio("wasp_offload_vs_nftables_conn_ratio", get("wasp_offload", "conn_per_s", n), get("nftables", "conn_per_s", n));
    ratio("wasp_offload_vs_nftables_p99_ratio", get("wasp_offload", "connect_p99_us", n), get("nftables", "connect_p99_us", n));
    ratio("nftables_vs_wasp_offload_load_ratio", get("nftables", "load_ms", n), get("wasp_offload", "load_ms", n));
  }
  const w1 = get("wasp", "conn_per_s", Ns[0]!), wN = get("wasp", "conn_per_s", Ns[Ns.length - 1]!);
  if (w1 && wN) metrics.wasp_conn_change_pct_1_to_max = round((wN / w1 - 1) * 100, 1);
  for (const dp of DATAPLANES) if (dp.available) metrics[`${dp.name}_available`] = missing.has(dp) ? 0 : 1;
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
  // A load stopped at the bound is drawn at the bound, and the legend says so (the real time is longer).
  const series = (metric: string) => DATAPLANES.map(({ name: dp, color }) => {
    const stopped = metric === "load_ms" ? Ns.filter((n) => m[`${dp}_load_timeout_s_${n}`] !== undefined) : [];
    return {
      name: dp + stopped.map((n) => ` (N=${n}: > ${m[`${dp}_load_timeout_s_${n}`]} s, stopped)`).join(""), color,
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
    ["load_ms", "load ms"], ["update_ms", "1-service update ms"], ["update_api_ms", "1-service update from the API ms"], ["conn_per_s", "conn/s"], ["connect_p50_us", "connect p50 µs"],
    ["connect_p99_us", "connect p99 µs"], ["cpu_us_per_conn", "machine CPU µs per connection"], ["ctxsw_per_conn", "context switches per connection"], ["tcp_gbps", "TCP Gbit/s"], ["lost_during_update", "UDP lost in 100-service update"],
    ["lost_without_update", "UDP lost, no update"], ["rss_mib", "daemon RSS MiB"], ["rss_flows_mib", "daemon RSS MiB, 100,000 flows"], ["kernel_kib", "kernel KiB"],
  ];
  const fmt = (v: number | undefined) => (v === undefined ? "–" : v.toLocaleString("en-US", { maximumFractionDigits: v < 10 ? 2 : v < 100 ? 1 : 0 }));
  const out = [`| dataplane | N | ${cols.map((c) => c[1]).join(" | ")} |`, `|---|---:|${cols.map(() => "---:").join("|")}|`];
  for (const n of Ns) {
    for (const { name: dp } of DATAPLANES) {
      if (!cols.some(([k]) => m[`${dp}_${k}_${n}`] !== undefined) && m[`${dp}_load_timeout_s_${n}`] === undefined) continue;
      const row = cols.map(([k]) => (k === "load_ms" && m[`${dp}_load_timeout_s_${n}`] !== undefined ? `> ${m[`${dp}_load_timeout_s_${n}`]! * 1000} (stopped)` : fmt(m[`${dp}_${k}_${n}`])));
      out.push(`| ${dp} | ${n.toLocaleString("en-US")} | ${row.join(" | ")} |`);
    }
  }
  return out.join("\n") + "\n";
}
