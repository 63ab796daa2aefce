// The demo node: a node namespace running `wasp daemon` on the embedded default config, the pods of
// that config attached by the wasp CNI plugin as a container runtime attaches them, servers in the
// backend pods, client loops in client pods and in an "external" namespace on the node's underlay.
//
//   wasp-demo-<pid>-ext             wasp-demo-<pid>-node                      pods (eth0, /32)
//   eth0 10.99.0.2/24  <--veth-->   eth0 10.99.0.1/24                         web-1  10.244.1.10  :8080
//   client loop → 10.99.0.1:30080   wasp daemon (wasp0 10.244.1.1, engine)    web-2  10.244.1.11  :8080
//                                   wasp<hash> veths, one per pod  <--veth--> dns    10.244.1.12  :53 UDP+TCP
//                                                                             client-1..3 → ClusterIPs
//
// Every process is a child of this one, ended by its PID; every namespace is one this run made.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_CONFIG_RAW } from "../config/index.js";
import { ip, Namespaces, spawnInNs } from "./netns.js";
import { CLIENT, SERVER, type ClientReport, type Target } from "./workloads.js";

export const ROOT = new URL("../..", import.meta.url).pathname;
const WASP = join(ROOT, "bin/wasp-dev");
export const TSX_LOADER = join(ROOT, "node_modules/tsx/dist/loader.mjs");

const NODE_IP = DEFAULT_CONFIG_RAW.node.underlayIP;
export const EXT_IP = "10.99.0.2";
const NETWORK = "waspnet";
/** Milliseconds between two requests of one client loop: a steady trickle of short connections. */
const CLIENT_GAP_MS = 20;

export interface DemoPod { name: string; ns: string; ip: string; containerId: string }

/** The backends of the default config, in address order (IPAM hands out addresses in order). */
export const BACKENDS = [
  { name: "web-1", ip: "10.244.1.10", tcp: [8080], udp: 0 },
  { name: "web-2", ip: "10.244.1.11", tcp: [8080], udp: 0 },
  { name: "dns", ip: "10.244.1.12", tcp: [53], udp: 53 },
] as const;

/** What the clients in pods ask: every ClusterIP entry of the default config. */
// Named as the summary names the entries (summary.ts entryName), so answers and counters meet.
export const POD_TARGETS: Target[] = [
  { name: "10.96.0.10:80/TCP", proto: "tcp", host: "10.96.0.10", port: 80 },
  { name: "10.96.0.53:53/UDP", proto: "udp", host: "10.96.0.53", port: 53 },
  { name: "10.96.0.53:53/TCP", proto: "tcp", host: "10.96.0.53", port: 53 },
  { name: "10.96.0.11:80/TCP", proto: "tcp", host: "10.96.0.11", port: 80 },
];
/** What the external client asks: the NodePort on the node's underlay address. */
export const EXT_TARGETS: Target[] = [{ name: "*:30080/TCP", proto: "tcp", host: NODE_IP, port: 30080 }];

const CLIENTS = ["client-1", "client-2", "client-3"];

interface Proc { what: string; child: ChildProcess; out: () => string; exited: Promise<void> }

function track(what: string, child: ChildProcess): Proc {
  let text = "";
  const keep = (d: Buffer) => { text = (text + d.toString()).slice(-64 * 1024); };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("close", () => resolve());
  });
  child.once("error", () => { /* reported through exited and the caller's checks */ });
  return { what, child, out: () => text, exited };
}

async function waitFor(cond: () => boolean, what: string, timeoutMs: number, aborted: () => boolean): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (aborted()) throw new Aborted();
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Thrown when a stop was asked for while the node was being built. */
export class Aborted extends Error {
  constructor() { super("stopped while building the demo node"); }
}

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

/** Ends one process by its PID: `signal`, then SIGKILL after graceMs; resolves once it is gone. */
async function end(p: Proc, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (!alive(p.child)) return;
  try { p.child.kill(signal); } catch { /* gone */ }
  const timer = setTimeout(() => { try { p.child.kill("SIGKILL"); } catch { /* gone */ } }, graceMs);
  await p.exited;
  clearTimeout(timer);
}

export class DemoNode {
  readonly work: string;
  readonly socketPath: string;
  readonly nss = new Namespaces();
  node = "";
  ext = "";
  readonly pods: DemoPod[] = [];
  daemon: Proc | undefined;
  private readonly procs: Proc[] = [];
  private readonly clients: Array<{ where: string; proc: Proc }> = [];
  private readonly servers: Array<{ pod: string; proc: Proc }> = [];
  private readonly cniPath: string;
  private readonly dataDir: string;

  constructor(private readonly aborted: () => boolean = () => false) {
    this.work = mkdtempSync(join(tmpdir(), "wasp-demo-"));
    this.cniPath = join(this.work, "cni-bin");
    this.dataDir = join(this.work, "ipam");
    this.socketPath = join(this.work, "run", "wasp.sock");
  }

  /** Builds everything; `say` gets one line per step. Throws (the caller then runs destroy()). */
  async build(say: (line: string) => void): Promise<void> {
    // The runtime finds the plugin as CNI_PATH/<type>.
    mkdirSync(this.cniPath);
    symlinkSync(WASP, join(this.cniPath, "wasp"));
    // Round robin starts after the last address handed out: .9 makes the backends .10, .11, .12,
    // the addresses the default config names.
    mkdirSync(join(this.dataDir, NETWORK), { recursive: true });
    writeFileSync(join(this.dataDir, NETWORK, "last_reserved_ip.0"), "10.244.1.9");

    this.node = this.nss.make("node");
    this.ext = this.nss.make("ext");
    this.nss.veth(this.node, "eth0", this.ext, "eth0");
    ip(this.node, "addr", "add", `${NODE_IP}/24`, "dev", "eth0");
    ip(this.ext, "addr", "add", `${EXT_IP}/24`, "dev", "eth0");
    say(`node       ${this.node}, eth0 ${NODE_IP}/24 on the underlay`);
    say(`external   ${this.ext}, eth0 ${EXT_IP}/24 on the underlay`);

    await this.startDaemon();
    say(`daemon     wasp daemon (pid ${this.daemon!.child.pid}) in the node namespace, embedded default config`);
    say(`           control socket ${this.socketPath}`);

    // One at a time, as pods come: IPAM hands out addresses in order, and the config names the backends'.
    for (const b of BACKENDS) {
      const pod = await this.addPod(b.name);
      if (pod.ip !== b.ip) throw new Error(`IPAM gave backend pod ${b.name} ${pod.ip}, not ${b.ip} as the default config expects`);
    }
    const clients: DemoPod[] = [];
    for (const n of CLIENTS) clients.push(await this.addPod(n));
    await Promise.all(BACKENDS.map((b) => this.serve(this.pods.find((p) => p.name === b.name)!, [...b.tcp], b.udp)));
    say(`backends   web-1 10.244.1.10, web-2 10.244.1.11 (8080/tcp); dns 10.244.1.12 (53/udp, 53/tcp)`);

    for (const c of clients) this.startClient(c.name, c.ns, POD_TARGETS);
    this.startClient("external", this.ext, EXT_TARGETS);
    say(`clients    ${clients.map((c) => `${c.name} ${c.ip}`).join(", ")}`);
    say(`           ask 10.96.0.10:80, 10.96.0.53:53 udp+tcp and 10.96.0.11:80`);
    say(`           the external namespace (${EXT_IP}) asks the NodePort ${NODE_IP}:30080`);
    say(`           every pod attached by the wasp CNI plugin (CNI ADD, as a container runtime runs it)`);
  }

  private async startDaemon(): Promise<void> {
    const child = spawnInNs(this.node, process.execPath, [
      "--import", `file://${TSX_LOADER}`, join(ROOT, "src/main.ts"), "daemon", "--socket", this.socketPath, "--metrics-port", "0",
    ]);
    const p = track("wasp daemon", child);
    this.daemon = p;
    let gone = false;
    void p.exited.then(() => { gone = true; });
    await waitFor(() => gone || p.out().includes('"msg":"serving"'), "wasp daemon to serve", 60_000, this.aborted);
    if (gone) throw new Error(`wasp daemon exited at start: ${daemonError(p.out())}`);
  }

  /** CNI ADD, run in the node namespace as a runtime on the node runs it: CNI_* in the environment, the network config on stdin. */
  private async addPod(name: string): Promise<DemoPod> {
    if (this.aborted()) throw new Aborted();
    const ns = this.nss.make(name);
    const containerId = `demo-${process.pid}-${name}`;
    const r = await this.cni("ADD", ns, containerId);
    if (r.code !== 0) throw new Error(`CNI ADD for pod ${name} failed (exit ${r.code}): ${cniMessage(r.stdout, r.stderr)}`);
    const addr = String(JSON.parse(r.stdout).ips?.[0]?.address ?? "").split("/")[0] ?? "";
    const pod = { name, ns, ip: addr, containerId };
    this.pods.push(pod);
    return pod;
  }

  private cni(command: "ADD" | "DEL", ns: string, containerId: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CNI_")) env[k] = v;
    Object.assign(env, {
      CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_NETNS: `/var/run/netns/${ns}`, CNI_IFNAME: "eth0", CNI_PATH: this.cniPath,
    });
    const config = { cniVersion: "1.0.0", name: NETWORK, type: "wasp", podCIDR: DEFAULT_CONFIG_RAW.node.podCIDR, dataDir: this.dataDir };
    const child = spawn("ip", ["netns", "exec", this.node, join(this.cniPath, "wasp")], { env, stdio: ["pipe", "pipe", "pipe"], detached: true });
    return new Promise((resolve) => {
      let stdout = "", stderr = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => { stdout += d; });
      child.stderr.setEncoding("utf8").on("data", (d: string) => { stderr += d; });
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      child.on("error", (e) => { clearTimeout(timer); resolve({ code: -1, stdout, stderr: e.message }); });
      child.on("close", (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
      child.stdin.on("error", () => { /* the plugin may exit without reading */ });
      child.stdin.end(JSON.stringify(config));
    });
  }

  private async serve(pod: DemoPod, tcp: number[], udp: number): Promise<void> {
    const p = track(`servers in ${pod.name}`, spawnInNs(pod.ns, process.execPath, ["-e", SERVER, JSON.stringify(tcp), String(udp), pod.name]));
    this.procs.push(p);
    this.servers.push({ pod: pod.name, proc: p });
    await waitFor(() => p.out().includes("ready") || !alive(p.child), `the servers in ${pod.name}`, 20_000, this.aborted);
    if (!p.out().includes("ready")) throw new Error(`the servers in pod ${pod.name} exited: ${p.out().trim()}`);
  }

  private startClient(where: string, ns: string, targets: Target[]): void {
    const p = track(`client in ${where}`, spawnInNs(ns, process.execPath, ["-e", CLIENT, JSON.stringify(targets), String(CLIENT_GAP_MS)]));
    this.procs.push(p);
    this.clients.push({ where, proc: p });
  }

  /** Requests each backend pod has answered so far (its servers' latest report). */
  serverTotals(): Array<[string, number]> {
    return this.servers.map(({ pod, proc }) => [pod, Number(/\{"answered":(\d+)\}\s*$/.exec(proc.out())?.[1] ?? 0)]);
  }

  /** The clients' latest cumulative counts, summed per target name. */
  clientTotals(): Map<string, { ok: number; failed: number; lastError: string }> {
    const sum = new Map<string, { ok: number; failed: number; lastError: string }>();
    for (const { proc } of this.clients) {
      const lines = proc.out().trim().split("\n");
      let report: ClientReport | undefined;
      for (let i = lines.length - 1; i >= 0 && !report; i--) {
        try { report = JSON.parse(lines[i]!) as ClientReport; } catch { /* a partial line */ }
      }
      for (const [name, [ok, failed, err]] of Object.entries(report ?? {})) {
        const s = sum.get(name) ?? { ok: 0, failed: 0, lastError: "" };
        s.ok += ok; s.failed += failed; if (err) s.lastError = err;
        sum.set(name, s);
      }
    }
    return sum;
  }

  /** Why the node cannot go on, if it cannot: the daemon or a server has exited. */
  broken(): string | undefined {
    if (this.daemon && !alive(this.daemon.child)) return `wasp daemon exited: ${daemonError(this.daemon.out())}`;
    const dead = this.procs.find((p) => !alive(p.child));
    return dead ? `the ${dead.what} exited: ${dead.out().trim().split("\n").pop() ?? ""}` : undefined;
  }

  /**
   * Removes everything this run made, also after a failed build: the daemon first (SIGTERM, so it
   * removes its rules), then servers and clients, CNI DEL for each pod, the namespaces, the temp
   * dir. Returns what could not be removed (empty when all is gone).
   */
  async destroy(): Promise<string[]> {
    const problems: string[] = [];
    // Whatever the daemon could not undo goes with the node namespace below.
    if (this.daemon) await end(this.daemon, "SIGTERM", 10_000);
    await Promise.all(this.procs.map((p) => end(p, "SIGTERM", 3000)));
    await Promise.all(this.pods.map(async (p) => {
      const r = await this.cni("DEL", p.ns, p.containerId);
      if (r.code !== 0) problems.push(`CNI DEL for pod ${p.name} failed: ${cniMessage(r.stdout, r.stderr)}`);
    }));
    problems.push(...this.nss.removeAll());
    try { rmSync(this.work, { recursive: true, force: true }); } catch (e) { problems.push(`cannot remove ${this.work}: ${(e as Error).message}`); }
    if (existsSync(this.work)) problems.push(`${this.work} is still there`);
    return problems;
  }
}

/** The daemon's last fatal or error message (its log is pino JSON on stderr). */
function daemonError(log: string): string {
  const lines = log.trim().split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const l = JSON.parse(lines[i]!) as { level?: number; msg?: string; err?: string };
      if ((l.level ?? 0) >= 50) return `${l.msg ?? ""}${l.err ? `: ${l.err}` : ""}`;
    } catch { /* not JSON */ }
  }
  return lines.slice(-3).join(" | ") || "(no output)";
}

function cniMessage(stdout: string, stderr: string): string {
  try {
    const e = JSON.parse(stdout) as { code?: number; msg?: string; details?: string };
    if (e.msg) return `${e.msg}${e.details ? ` (${e.details})` : ""}`;
  } catch { /* not JSON */ }
  return (stdout + stderr).trim() || "(no output)";
}
