// npm run bench -- datapath: pod -> ClusterIP through each dataplane, on one topology
// (test/helpers/topology.ts: a node namespace, a client and a backend pod attached by the wasp CNI
// plugin in routed mode). The dataplanes run one after another on the same pods:
//   wasp      `wasp daemon --offload off` in the node namespace, one service (VIP:5201 TCP+UDP ->
//             backend:5201): every packet through the engine; stopped with SIGTERM and the node
//             cleaned (`wasp daemon --cleanup`) before the next phase;
//   wasp_offload  the same with --offload on: the engine decides the flow, the kernel carries it;
//   iptables  kube-proxy-shaped nat rules in the node namespace (PREROUTING -> KUBE-SERVICES ->
//             KUBE-SVC-x -> KUBE-SEP-x -j DNAT, KUBE-MARK-MASQ present); the pods route via the node;
//   c_tun     the C anchor tunnat (/work/shared/anchors/tunnat.c, built into bench/bin/) with -v
//             (vnet header + TSO) and without, fed by policy routing (iif <pod veth> -> table 100 ->
//             the TUN).
// Per dataplane: iperf3 TCP throughput (Gbit/s at the receiver) and 64-byte UDP (iperf3 -u -l 64
// -b 0: packets the server received per second, from its byte count). Medians of 3 runs (1 with
// --quick). Also direct_*: pod -> backend pod IP with no service (the kernel's plain forward).
// iperf3 itself bounds the UDP numbers: sender and receiver share the 2 cores with the dataplane.
// Namespaces are the topology's (wasp-t-<pid>-*), removed at the end, also on failure; every
// process is ended by its PID.
import { execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { median, round, writeResults } from "../lib/results.js";
import { inNs, ip, spawnInNs, stop, sysctl } from "../../test/helpers/netns.js";
import { Topology, NODE_IP, POD_CIDR, waitFor, type Pod } from "../../test/helpers/topology.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const TUNNAT = join(ROOT, "bench/bin/tunnat");
const VIP = "10.96.0.50";
const PORT = 5201;
const TUN = "tnat0";

function buildTunnat(): void {
  mkdirSync(join(ROOT, "bench/bin"), { recursive: true });
  execFileSync("cc", ["-O2", "-o", TUNNAT, "/work/shared/anchors/tunnat.c"], { stdio: "inherit" });
}

export const procs = new Set<ChildProcess>();
export function spawnTracked(ns: string, cmd: string, args: string[]): { child: ChildProcess; out: () => string } {
  const child = spawnInNs(ns, cmd, args);
  procs.add(child);
  let text = "";
  child.stdout?.on("data", (d: Buffer) => { text += d.toString(); });
  child.stderr?.on("data", (d: Buffer) => { text += d.toString(); });
  child.once("exit", () => procs.delete(child));
  return { child, out: () => text };
}

/** Runs iperf3 as a client in ns (bounded: SIGKILL after secs + 15 s); returns its JSON. */
export async function iperf(ns: string, args: string[], secs: number, host = VIP): Promise<any> {
  const { child, out } = spawnTracked(ns, "iperf3", ["-c", host, "-p", String(PORT), "-t", String(secs), "-J", ...args]);
  const timer = setTimeout(() => child.kill("SIGKILL"), (secs + 15) * 1000);
  await new Promise((resolve) => child.once("exit", resolve));
  clearTimeout(timer);
  let j: any;
  try { j = JSON.parse(out()); } catch { throw new Error(`iperf3 ${args.join(" ")}: no JSON: ${out().slice(0, 500)}`); }
  if (j.error) throw new Error(`iperf3 ${args.join(" ")}: ${j.error}`);
  return j;
}

export async function tcpGbps(ns: string, secs: number, host = VIP): Promise<number> {
  const j = await iperf(ns, [], secs, host);
  return j.end.sum_received.bits_per_second / 1e9;
}

/** 64-byte UDP datagrams as fast as the sender goes; packets/s the server received (thousands). */
export async function udpKpps(ns: string, secs: number, host = VIP): Promise<number> {
  const j = await iperf(ns, ["-u", "-l", "64", "-b", "0"], secs, host);
  // sum_received.packets is the highest sequence number seen, not a count: count the bytes.
  const s = j.end.sum_received;
  return s.bytes / 64 / s.seconds / 1e3;
}

/** The node-side veth of a pod: the device of the node's /32 route to it. */
function podVeth(node: string, pod: Pod): string {
  const r = JSON.parse(ip(node, "-j", "route", "get", pod.ip)) as Array<{ dev: string }>;
  return r[0]!.dev;
}

function iptablesRules(backend: string): string {
  const svc = "KUBE-SVC-BENCHDATAPATH0", sep = "KUBE-SEP-BENCHDATAPATH0";
  const usvc = "KUBE-SVC-BENCHDATAPATHU", usep = "KUBE-SEP-BENCHDATAPATHU";
  return [
    "*nat",
    ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
    ":KUBE-SERVICES - [0:0]", ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]",
    `:${svc} - [0:0]`, `:${sep} - [0:0]`, `:${usvc} - [0:0]`, `:${usep} - [0:0]`,
    "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
    "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
    `-A KUBE-SERVICES -d ${VIP}/32 -p tcp -m comment --comment "bench/iperf cluster IP" -m tcp --dport ${PORT} -j ${svc}`,
    `-A KUBE-SERVICES -d ${VIP}/32 -p udp -m comment --comment "bench/iperf-udp cluster IP" -m udp --dport ${PORT} -j ${usvc}`,
    `-A ${svc} ! -s 10.244.0.0/16 -d ${VIP}/32 -p tcp -m tcp --dport ${PORT} -j KUBE-MARK-MASQ`,
    `-A ${svc} -j ${sep}`,
    `-A ${sep} -s ${backend}/32 -j KUBE-MARK-MASQ`,
    `-A ${sep} -p tcp -m tcp -j DNAT --to-destination ${backend}:${PORT}`,
    `-A ${usvc} ! -s 10.244.0.0/16 -d ${VIP}/32 -p udp -m udp --dport ${PORT} -j KUBE-MARK-MASQ`,
    `-A ${usvc} -j ${usep}`,
    `-A ${usep} -s ${backend}/32 -j KUBE-MARK-MASQ`,
    `-A ${usep} -p udp -m udp -j DNAT --to-destination ${backend}:${PORT}`,
    "COMMIT", "",
  ].join("\n");
}

type Phase = "wasp" | "wasp_offload" | "iptables" | "c_tun" | "c_tun_novnet" | "direct";

export async function run(quick: boolean): Promise<Record<string, number>> {
  if (!existsSync(TUNNAT)) buildTunnat();
  const reps = quick ? 1 : 3;
  const secs = quick ? 2 : 4;
  const tcp: Record<Phase, number[]> = { wasp: [], wasp_offload: [], iptables: [], c_tun: [], c_tun_novnet: [], direct: [] };
  const udp: Record<Phase, number[]> = { wasp: [], wasp_offload: [], iptables: [], c_tun: [], c_tun_novnet: [], direct: [] };
  const phaseSecs: Record<string, number> = {};
  const t = new Topology();
  const onSignal = () => { void cleanup().finally(() => process.exit(130)); };
  let cleaned = false;
  async function cleanup(): Promise<void> {
    if (cleaned) return;
    cleaned = true;
    for (const c of [...procs]) await stop(c);
    await t.destroy();
  }
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const client = await t.addPod("client");
    const backend = await t.addPod("backend");
    const server = spawnTracked(backend.ns, "iperf3", ["-s", "-p", String(PORT), "--forceflush"]);
    await waitFor(() => server.out().includes("listening") || server.child.exitCode !== null, "iperf3 server");
    if (server.child.exitCode !== null) throw new Error(`iperf3 server: ${server.out()}`);

    const measure = async (p: Phase, host = VIP) => {
      const t0 = Date.now();
      for (let i = 0; i < reps; i++) {
        tcp[p].push(await tcpGbps(client.ns, secs, host));
        udp[p].push(await udpKpps(client.ns, secs, host));
      }
      phaseSecs[p] = (Date.now() - t0) / 1000;
      console.log(`${p}: tcp ${tcp[p].map((x) => x.toFixed(2)).join(", ")} Gbit/s; udp ${udp[p].map((x) => x.toFixed(0)).join(", ")} kpps`);
    };

    // (a) wasp
    t.writeConfig({
      mode: "tun",
      node: { name: "bench-node", underlayIP: NODE_IP, podCIDR: POD_CIDR },
      serviceCIDR: "10.96.0.0/16",
      clusterCIDR: "10.244.0.0/16",
      services: [{
        name: "iperf", clusterIP: VIP,
        ports: [{ name: "tcp", port: PORT, protocol: "TCP" }, { name: "udp", port: PORT, protocol: "UDP" }],
        backends: [{ ip: backend.ip }],
      }],
    });
    // full-wasm (every packet through the engine), then offload (the kernel carries each flow the
    // engine decided); each phase leaves the node as it found it (--cleanup after the daemon stops)
    for (const [phase, offload] of [["wasp", "off"], ["wasp_offload", "on"]] as const) {
      const daemon = await t.startDaemon(["--offload", offload]);
      try {
        await measure(phase);
      } finally {
        await t.stopProcess(daemon.child, "SIGTERM");
        t.cleanupNode();
      }
    }

    // (b) iptables DNAT, kube-proxy shaped; the pods route via the node.
    sysctl(t.node, "net.ipv4.ip_forward", 1);
    execFileSync("ip", ["netns", "exec", t.node, "iptables-restore", "--noflush"], { input: iptablesRules(backend.ip), stdio: ["pipe", "inherit", "inherit"] });
    try {
      // The kernel's own forward pod -> node -> pod, no service: the reference for both.
      await measure("direct", backend.ip);
      await measure("iptables");
    } finally {
      for (const table of ["nat"]) {
        inNs(t.node, "iptables", "-t", table, "-F");
        inNs(t.node, "iptables", "-t", table, "-X");
      }
    }

    // (c) tunnat with and without vnet header, behind policy routing in the node namespace.
    const vClient = podVeth(t.node, client), vBackend = podVeth(t.node, backend);
    sysctl(t.node, "net.ipv4.conf.all.rp_filter", 0);
    sysctl(t.node, "net.ipv4.conf.default.rp_filter", 0);
    for (const [phase, vnet] of [["c_tun", true], ["c_tun_novnet", false]] as const) {
      const nat = spawnTracked(t.node, TUNNAT, ["-i", TUN, "-b", backend.ip, "-c", "10.96.0.0/16", ...(vnet ? ["-v"] : [])]);
      try {
        await waitFor(() => nat.out().includes("ready") || nat.child.exitCode !== null, "tunnat");
        if (nat.child.exitCode !== null) throw new Error(`tunnat: ${nat.out()}`);
        sysctl(t.node, `net.ipv4.conf.${TUN}.rp_filter`, 0);
        ip(t.node, "link", "set", TUN, "up");
        ip(t.node, "route", "replace", "default", "dev", TUN, "table", "100");
        ip(t.node, "rule", "add", "iif", vClient, "lookup", "100", "pref", "50");
        ip(t.node, "rule", "add", "iif", vBackend, "lookup", "100", "pref", "51");
        try {
          await measure(phase);
        } finally {
          ip(t.node, "rule", "del", "pref", "50");
          ip(t.node, "rule", "del", "pref", "51");
        }
      } finally {
        await stop(nat.child, "SIGTERM");
        console.log(nat.out().trim().split("\n").pop());
      }
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }

  const m = (xs: number[], d = 3) => round(median(xs), d);
  const metrics: Record<string, number> = {
    wasp_tcp_gbps: m(tcp.wasp),
    wasp_offload_tcp_gbps: m(tcp.wasp_offload),
    iptables_tcp_gbps: m(tcp.iptables),
    c_tun_tcp_gbps: m(tcp.c_tun),
    c_tun_novnet_tcp_gbps: m(tcp.c_tun_novnet),
    wasp_udp_kpps: m(udp.wasp, 1),
    wasp_offload_udp_kpps: m(udp.wasp_offload, 1),
    iptables_udp_kpps: m(udp.iptables, 1),
    c_tun_udp_kpps: m(udp.c_tun, 1),
    c_tun_novnet_udp_kpps: m(udp.c_tun_novnet, 1),
    direct_tcp_gbps: m(tcp.direct),
    direct_udp_kpps: m(udp.direct, 1),
    repetitions: reps,
    seconds_per_measurement: secs,
  };
  writeResults("datapath", metrics);
  return metrics;
}
