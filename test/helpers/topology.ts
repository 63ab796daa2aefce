// A one-node cluster in test namespaces: a node namespace, pods attached to it by the wasp CNI
// plugin itself (bin/wasp-dev driven like a runtime, routed mode: veth, /32, default via
// 169.254.1.1 onlink, host /32 route, proxy_arp), an "external" namespace on the node's underlay
// address (10.99.0.0/24, another veth), `wasp daemon` started inside the node namespace, and small
// Node servers and clients that report the addresses each connection really had.
// Everything lives in namespaces from makeNs (removed by destroy(), also after a failure); every
// process is ended by its PID.
import { strict as assert } from "node:assert";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, mkdirSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sharedWasp } from "./cli.js";
import { execPlugin } from "./cni-driver.js";
import { FakeApiServerProcess } from "./fake-apiserver.js";
import { deleteNs, inNs, ip, makeNs, sh, spawnInNs, stop, veth } from "./netns.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const WASP = join(ROOT, "bin/wasp-dev");
const TSX = join(ROOT, "node_modules/tsx/dist/loader.mjs");

export const NODE_IP = "10.99.0.1";
export const EXT_IP = "10.99.0.2";
export const POD_CIDR = "10.244.1.0/24";

/** TCP servers on the ports in argv[1] (JSON list) and a UDP one on argv[2]: each answers with
 *  what it saw, {local, remote, port}, as one JSON line, then closes. */
const SERVER = `
const net = require("node:net"), dgram = require("node:dgram");
const tcp = JSON.parse(process.argv[1]), udp = Number(process.argv[2]);
let pending = tcp.length + (udp ? 1 : 0);
const ready = () => { if (--pending === 0) console.log("ready"); };
for (const p of tcp) net.createServer((s) => {
  s.on("error", () => {});
  s.end(JSON.stringify({ local: s.localAddress, remote: s.remoteAddress, port: p }) + "\\n");
}).listen(p, "0.0.0.0", ready);
if (udp) { const u = dgram.createSocket("udp4"); u.on("message", (m, r) => {
  u.send(JSON.stringify({ remote: r.address, port: udp, echo: m.toString() }) + "\\n", r.port, r.address);
}); u.bind(udp, "0.0.0.0", ready); }`;

/** Runs the requests in argv[1] one after another and prints one JSON list of results. */
const CLIENT = `
const net = require("node:net"), dgram = require("node:dgram");
const reqs = JSON.parse(process.argv[1]);
function tcp(r) { return new Promise((resolve) => {
  let data = "", local = "", done = false;
  const fin = (o) => { if (!done) { done = true; clearTimeout(t); resolve(o); } };
  const s = net.connect({ host: r.host, port: r.port });
  const t = setTimeout(() => { s.destroy(); fin({ ok: false, error: "timeout" }); }, r.timeoutMs || 4000);
  s.on("connect", () => { local = s.localAddress; });
  s.on("data", (d) => data += d);
  s.on("end", () => { try { fin({ ok: true, local, seen: JSON.parse(data) }); } catch (e) { fin({ ok: false, error: "bad answer " + data }); } });
  s.on("error", (e) => fin({ ok: false, error: e.code || e.message }));
}); }
function udp(r) { return new Promise((resolve) => {
  const s = dgram.createSocket("udp4"); let done = false;
  const fin = (o) => { if (!done) { done = true; clearTimeout(t); try { s.close(); } catch {} resolve(o); } };
  const t = setTimeout(() => fin({ ok: false, error: "timeout" }), r.timeoutMs || 4000);
  s.on("error", (e) => fin({ ok: false, error: e.code || e.message }));
  s.on("message", (m, rinfo) => { try { fin({ ok: true, local: s.address().address, from: rinfo.address, seen: JSON.parse(m.toString()) }); } catch { fin({ ok: false, error: "bad answer" }); } });
  s.connect(r.port, r.host, () => s.send("hello"));
}); }
async function loop(r) {
  const end = Date.now() + r.loopMs, errors = []; let count = 0;
  while (Date.now() < end) { const o = await (r.proto === "udp" ? udp(r) : tcp(r)); count++; if (!o.ok) errors.push(o.error); }
  return { ok: errors.length === 0, count, errors };
}
(async () => { const out = []; for (const r of reqs) out.push(await (r.loopMs ? loop(r) : r.proto === "udp" ? udp(r) : tcp(r))); console.log(JSON.stringify(out)); })();`;

/** A sink on argv[1]: each connection is answered with the byte count and SHA-256 it received. */
const SINK = `
const net = require("node:net"), crypto = require("node:crypto");
net.createServer((s) => {
  const h = crypto.createHash("sha256"); let n = 0;
  s.on("data", (d) => { n += d.length; h.update(d); });
  s.on("end", () => s.end(JSON.stringify({ n, sha: h.digest("hex"), remote: s.remoteAddress })));
  s.on("error", () => {});
}).listen(Number(process.argv[1]), "0.0.0.0", () => console.log("ready"));`;

/** Sends argv[3] bytes of a fixed pattern to argv[1]:argv[2], prints the sink's answer. */
const STREAM = `
const net = require("node:net"), total = Number(process.argv[3]);
const chunk = Buffer.alloc(1 << 20); for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) % 251;
const s = net.connect(Number(process.argv[2]), process.argv[1], () => {
  let sent = 0;
  const more = () => { while (sent < total) { sent += chunk.length; if (!s.write(chunk)) return s.once("drain", more); } s.end(); };
  more();
});
let reply = ""; s.on("data", (d) => reply += d); s.on("end", () => console.log(reply));
s.on("error", (e) => { console.log(JSON.stringify({ error: e.code || e.message })); });`;

/** What Topology.stream reports: bytes the sink counted, their SHA-256, the peer it saw. */
export interface StreamResult { n?: number; sha?: string; remote?: string; error?: string }

/** The stream of `bytes` arrived whole and unaltered, and (when `from` is given) the sink saw it
 *  come from that address. */
export function assertStreamed(r: StreamResult, bytes: number, from?: string, why?: string): void {
  assert.equal(r.n, bytes, JSON.stringify(r));
  assert.equal(r.sha, streamSha(bytes));
  if (from !== undefined) assert.equal(r.remote, from, why);
}

/** SHA-256 of what STREAM sends for `bytes` (a multiple of 1 MiB). */
export function streamSha(bytes: number): string {
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) % 251;
  const h = createHash("sha256");
  for (let sent = 0; sent < bytes; sent += chunk.length) h.update(chunk);
  return h.digest("hex");
}

export interface Request {
  proto?: "tcp" | "udp";
  host: string;
  port: number;
  timeoutMs?: number;
  /** Repeat the request for this long; the outcome then says how many ran and which failed. */
  loopMs?: number;
}
export interface Outcome {
  ok: boolean;
  error?: string;
  /** The client's own address for the connection. */
  local?: string;
  /** UDP: the source of the answer. */
  from?: string;
  /** What the server saw: its local address and the peer's address. */
  seen?: { local?: string; remote: string; port: number };
  /** loopMs: requests made, and the errors of those that failed. */
  count?: number;
  errors?: string[];
}

/**
 * A random backend choice can land on one backend many times running (two backends, n picks:
 * a 2^(1-n) chance), so a test that must see every backend keeps asking instead of trusting a
 * fixed number of picks: ask(n) adds n more outcomes (`step` at a time) to `got` until covered()
 * holds or there are `max` in all. A backend that is never chosen still fails the test.
 */
export async function askUntilCovered<T>(got: T[], covered: (all: readonly T[]) => boolean, ask: (n: number) => T[] | Promise<T[]>, max = 64, step = 8): Promise<T[]> {
  while (!covered(got) && got.length < max) got.push(...await ask(Math.min(step, max - got.length)));
  return got;
}

/** covered() for askUntilCovered: each of these backend addresses answered one of the outcomes. */
export function everyBackend<T extends { seen?: { local?: string } }>(...addrs: string[]): (all: readonly T[]) => boolean {
  return (all) => addrs.every((a) => all.some((o) => o.seen?.local === a));
}

/** externalTrafficPolicy Local, asked from outside (t.ext): eight requests to NODE_IP:port all reach
 *  `endpoint` (this node's) and keep the client's own address EXT_IP, not the masquerade address. */
export async function expectLocalOnly(t: Topology, port: number, endpoint: string): Promise<void> {
  const out = await t.requests(t.ext, Array.from({ length: 8 }, () => ({ host: NODE_IP, port })));
  for (const o of out) {
    assert.ok(o.ok, JSON.stringify(o));
    assert.equal(o.seen?.local, endpoint, "only this node's endpoint");
    assert.equal(o.seen?.remote, EXT_IP, "the client's own address, not the masquerade address");
  }
}

export interface Pod { name: string; ns: string; ip: string; /** dual-stack topologies: the pod's IPv6 address */ ip6?: string }

export interface DaemonProc {
  child: ChildProcess;
  log: () => string;
  /** Log lines parsed as JSON (pino). */
  lines: () => Array<Record<string, unknown>>;
  exited: Promise<number | null>;
}

function collect(child: ChildProcess): () => string {
  let text = "";
  child.stdout?.on("data", (d: Buffer) => { text += d.toString(); });
  child.stderr?.on("data", (d: Buffer) => { text += d.toString(); });
  return () => text;
}

export async function waitFor(cond: () => boolean, what: string, timeoutMs = 20000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class Topology {
  readonly node: string;
  readonly ext: string;
  readonly work: string;
  readonly pods: Pod[] = [];
  readonly socketPath: string;
  readonly configPath: string;
  private readonly children = new Set<ChildProcess>();
  private readonly cniPath: string;
  private seq = 0;

  /** Arguments every startDaemon passes before its own (e.g. ["--offload", "off"]). */
  daemonArgs: string[] = [];

  readonly nodeIp: string;
  readonly podCidr: string;
  /** Dual-stack: pods also get an IPv6 address from this CIDR. */
  readonly podCidr6: string | undefined;

  /**
   * A node at opts.nodeIp (default NODE_IP) with pods from opts.podCidr (default POD_CIDR). Its eth0
   * joins the underlay: a bridge in the "external" namespace, made here unless opts.ext names the
   * one of another Topology (a second node of the same cluster).
   */
  constructor(opts: { nodeIp?: string; podCidr?: string; podCidr6?: string; ext?: string } = {}) {
    this.nodeIp = opts.nodeIp ?? NODE_IP;
    this.podCidr = opts.podCidr ?? POD_CIDR;
    this.podCidr6 = opts.podCidr6;
    this.work = mkdtempSync(join(tmpdir(), "wasp-daemon-"));
    mkdirSync(join(this.work, "bin"));
    mkdirSync(join(this.work, "etc"));
    symlinkSync(WASP, join(this.work, "bin", "wasp"));
    this.cniPath = join(this.work, "bin");
    this.socketPath = join(this.work, "run", "wasp.sock");
    this.configPath = join(this.work, "etc", "config.json");
    this.node = makeNs("node");
    this.ownsExt = opts.ext === undefined;
    this.ext = opts.ext ?? makeNs("ext");
    if (this.ownsExt) {
      // The underlay: a bridge that the external client (EXT_IP) and every node's eth0 are on.
      ip(this.ext, "link", "add", "br0", "type", "bridge");
      ip(this.ext, "addr", "add", `${EXT_IP}/24`, "dev", "br0");
      ip(this.ext, "link", "set", "br0", "up");
    }
    const port = `n${this.nodeIp.split(".").pop()}`;
    veth(this.node, "eth0", this.ext, port);
    ip(this.ext, "link", "set", port, "master", "br0");
    ip(this.node, "addr", "add", `${this.nodeIp}/24`, "dev", "eth0");
  }

  private readonly ownsExt: boolean;

  /** A pod as a runtime makes it: CNI ADD of the wasp plugin, run in the node namespace. */
  /**
   * The node's underlay device (eth0) segments and checksums in software what a NIC does in
   * hardware, so a capture beyond it shows the frames a wire would carry: without this, veth
   * passes the node's UDP GSO datagrams (and partial checksums) on whole.
   */
  wireLikeUnderlay(): void {
    inNs(this.node, "ethtool", "-K", "eth0", "tx", "off", "tx-udp-segmentation", "off");
  }

  /** A node whose daemon runs every packet of a service flow through wasm (--offload off), with pods
   *  client, b1 and b2: the CLI tests' node (the CLI against the engine's own counters and tables). */
  static async fullWasmWithPods(): Promise<{ t: Topology; client: Pod; b1: Pod; b2: Pod }> {
    const t = new Topology();
    t.daemonArgs = ["--offload", "off"];
    return { t, client: await t.addPod("client"), b1: await t.addPod("b1"), b2: await t.addPod("b2") };
  }

  async addPod(name: string): Promise<Pod> {
    const ns = makeNs(name);
    const r = await execPlugin(WASP, {
      command: "ADD", containerId: `cid-${ns}`, netns: `/var/run/netns/${ns}`, ifname: "eth0", path: this.cniPath, nodeNs: this.node,
      config: {
        cniVersion: "1.0.0", name: "waspnet", type: "wasp", podCIDR: this.podCidr, dataDir: join(this.work, "ipam"),
        ...(this.podCidr6 ? { podCIDRv6: this.podCidr6 } : {}),
      },
    });
    if (r.exitCode !== 0) throw new Error(`CNI ADD for ${name} failed: ${r.stdout}${r.stderr}`);
    const addrs = (r.json.ips as Array<{ address: string }>).map((x) => x.address.split("/")[0]!);
    const pod: Pod = { name, ns, ip: addrs.find((a) => !a.includes(":"))! };
    const ip6 = addrs.find((a) => a.includes(":"));
    if (ip6) pod.ip6 = ip6;
    this.pods.push(pod);
    return pod;
  }

  /** Writes the config as a whole new file renamed over the old one (what editors and kubectl do). */
  writeConfig(config: unknown): void {
    const tmp = join(this.work, "etc", `.config-${++this.seq}.json`);
    writeFileSync(tmp, typeof config === "string" ? config : JSON.stringify(config, null, 2));
    renameSync(tmp, this.configPath);
  }

  /** The config the running daemon holds in force (its control socket's answer), as JSON text. */
  async configInForce(): Promise<string> {
    return JSON.stringify((await control(this.socketPath, { cmd: "config" })).config);
  }

  /**
   * Puts a config back after a test changed it: writes `config` and waits until the daemon holds
   * `inForce` (what configInForce() said while `config` was in force). A file written as it already
   * is makes no reload and no log line, so the wait asks the daemon instead.
   */
  async restoreConfig(config: unknown, inForce: string, timeoutMs = 20000): Promise<void> {
    this.writeConfig(config);
    for (const end = Date.now() + timeoutMs; (await this.configInForce()) !== inForce; await new Promise((r) => setTimeout(r, 100))) {
      if (Date.now() > end) throw new Error(`the daemon did not return to the config:\n${inForce}\nin force:\n${await this.configInForce()}`);
    }
  }

  /** `wasp daemon` in the node namespace, as the tests' brief and a DaemonSet run it. */
  startDaemon(extraArgs: string[] = []): Promise<DaemonProc> {
    return this.launchDaemon(["--config", this.configPath, ...extraArgs]);
  }

  /** `wasp daemon --kubeconfig` as Node `nodeName`: the API source (a fake apiserver, startApiServer) in
   *  place of the file config. */
  startKubeDaemon(kubeconfig: string, nodeName: string, extraArgs: string[] = []): Promise<DaemonProc> {
    return this.launchDaemon([
      "--kubeconfig", kubeconfig, "--hostname-override", nodeName, "--service-cidr", "10.96.0.0/16",
      "--cluster-cidr", "10.244.0.0/16", "--min-sync-period", "100ms", ...extraArgs,
    ]);
  }

  /** The fake apiserver (test/helpers/fake-apiserver.ts) in the node namespace, where the daemon reaches
   *  it; ended by destroy(). Its kubeconfig is written to a file, whose path comes back. */
  async startApiServer(token: string): Promise<{ api: FakeApiServerProcess; kubeconfig: string }> {
    // stdin too: the test sends it commands
    const child = spawn("ip", ["netns", "exec", this.node, process.execPath, "--import", `file://${TSX}`, join(ROOT, "test/helpers/fake-apiserver.ts"), token],
      { stdio: ["pipe", "pipe", "inherit"] });
    this.children.add(child);
    const api = new FakeApiServerProcess(child);
    const kubeconfig = join(this.work, "kubeconfig");
    writeFileSync(kubeconfig, (await api.ready()).kubeconfig);
    return { api, kubeconfig };
  }

  private async launchDaemon(args: string[]): Promise<DaemonProc> {
    const child = spawnInNs(this.node, process.execPath, [
      await sharedWasp(), "daemon",
      "--socket", this.socketPath, "--metrics-port", "0", ...this.daemonArgs, ...args,
    ]);
    this.children.add(child);
    const log = collect(child);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const lines = () => log().split("\n").flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; } });
    const d = { child, log, lines, exited };
    let gone = false;
    void exited.then(() => { gone = true; });
    await waitFor(() => gone || lines().some((l) => l.msg === "serving"), "the daemon to serve", 30000);
    if (gone) throw new Error(`the daemon exited at start:\n${log()}`);
    return d;
  }

  /** `wasp daemon ARGS` (with the topology's config) run to its end: exit code and output. */
  async runDaemonOnce(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawnInNs(this.node, process.execPath, [
      await sharedWasp(), "daemon", "--config", this.configPath, "--metrics-port", "0", ...this.daemonArgs, ...args,
    ]);
    this.children.add(child);
    let stdout = "", stderr = "";
    child.stdout?.on("data", (d: Buffer) => { stdout += d.toString(); });
    child.stderr?.on("data", (d: Buffer) => { stderr += d.toString(); });
    return new Promise((resolve) => child.once("exit", (code) => { this.children.delete(child); resolve({ code, stdout, stderr }); }));
  }

  /** `wasp daemon --cleanup` in the node: what a stopped daemon left (wasp0, rules, routes, the
   *  offload table, waspvx) removed. */
  async cleanupNode(): Promise<void> {
    inNs(this.node, process.execPath, await sharedWasp(), "daemon", "--cleanup");
  }

  metricsPort(d: DaemonProc): number {
    const l = d.lines().find((x) => x.msg === "serving");
    return Number(l?.metricsPort);
  }

  /** The daemon's /metrics text, fetched where it listens: 127.0.0.1 of the node namespace. */
  metrics(d: DaemonProc): string {
    return inNs(this.node, process.execPath, "-e",
      `fetch("http://127.0.0.1:${this.metricsPort(d)}/metrics").then((r) => r.text()).then((x) => process.stdout.write(x))`);
  }

  async stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await stop(child, signal);
    this.children.delete(child);
  }

  /** Starts the answering servers in a pod (or the node); resolves once they listen. */
  async serve(ns: string, tcpPorts: number[], udpPort = 0): Promise<ChildProcess> {
    const child = spawnInNs(ns, process.execPath, ["-e", SERVER, JSON.stringify(tcpPorts), String(udpPort)]);
    this.children.add(child);
    const out = collect(child);
    await waitFor(() => out().includes("ready") || child.exitCode !== null, `servers in ${ns}`);
    if (!out().includes("ready")) throw new Error(`servers in ${ns} failed: ${out()}`);
    return child;
  }

  async sink(ns: string, port: number): Promise<ChildProcess> {
    const child = spawnInNs(ns, process.execPath, ["-e", SINK, String(port)]);
    this.children.add(child);
    const out = collect(child);
    await waitFor(() => out().includes("ready") || child.exitCode !== null, `sink in ${ns}`);
    if (!out().includes("ready")) throw new Error(`sink in ${ns} failed: ${out()}`);
    return child;
  }

  /** Streams `bytes` from ns to host:port; resolves with the sink's answer. */
  async stream(ns: string, host: string, port: number, bytes: number): Promise<StreamResult> {
    const child = spawnInNs(ns, process.execPath, ["-e", STREAM, host, String(port), String(bytes)]);
    this.children.add(child);
    const out = collect(child);
    const timer = setTimeout(() => child.kill("SIGKILL"), 60000);
    await new Promise((resolve) => child.once("exit", resolve));
    clearTimeout(timer);
    this.children.delete(child);
    try { return JSON.parse(out().trim().split("\n").pop() ?? "{}"); } catch { return { error: out() }; }
  }

  /** Runs the requests from namespace ns, one after another; resolves with their outcomes. */
  async requests(ns: string, reqs: Request[]): Promise<Outcome[]> {
    const child = spawnInNs(ns, process.execPath, ["-e", CLIENT, JSON.stringify(reqs)]);
    this.children.add(child);
    const out = collect(child);
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    this.children.delete(child);
    if (code !== 0) throw new Error(`client in ${ns} failed (${code}): ${out()}`);
    return JSON.parse(out().trim().split("\n").pop() ?? "[]") as Outcome[];
  }

  async request(ns: string, req: Request): Promise<Outcome> {
    return (await this.requests(ns, [req]))[0]!;
  }

  /** The pods of the one-node Service suites: a client, and backends b1 and b2 that serve TCP on 8080
   *  (and UDP on `udpPort` when given). */
  async clientAndBackends(udpPort = 0): Promise<{ client: Pod; b1: Pod; b2: Pod }> {
    const client = await this.addPod("client"), b1 = await this.addPod("b1"), b2 = await this.addPod("b2");
    await this.serve(b1.ns, [8080], udpPort);
    await this.serve(b2.ns, [8080], udpPort);
    return { client, b1, b2 };
  }

  /** Ends every process this topology started (by PID), then removes its namespaces and files. */
  async destroy(): Promise<void> {
    for (const c of [...this.children]) await stop(c);
    this.children.clear();
    for (const p of this.pods) deleteNs(p.ns);
    deleteNs(this.node);
    if (this.ownsExt) deleteNs(this.ext);
    rmSync(this.work, { recursive: true, force: true });
  }
}

/**
 * The file config of the one-node Service suites (daemon-semantics, daemon-parity): node-a on the
 * topology's address and pod CIDR (`node` adds fields such as zone), node-b as its one peer, and the
 * services, which a test changes through apply(); reset() brings back what the daemon started with.
 */
export class ServiceSuiteConfig {
  services: Record<string, any>[] = [];
  node: Record<string, unknown> = {};
  private first = "";
  private firstInForce = "";

  constructor(private readonly t: Topology) {}

  toJSON(): Record<string, unknown> {
    return {
      mode: "tun",
      node: { name: "node-a", underlayIP: this.t.nodeIp, podCIDR: this.t.podCidr, ...this.node },
      serviceCIDR: "10.96.0.0/16",
      clusterCIDR: "10.244.0.0/16",
      nodes: [{ name: "node-b", underlayIP: "10.99.0.9", podCIDR: "10.244.2.0/24" }],
      services: this.services,
    };
  }

  svc(name: string): Record<string, any> {
    const s = this.services.find((x) => x.name === name);
    if (!s) throw new Error(`no service ${name} in the suite's config`);
    return s;
  }

  /**
   * Routes `outsideVips` (LoadBalancer IPs) and the service CIDR from the external namespace to the
   * node, as a router in front of the cluster would; writes this config and starts the daemon on it
   * in the datapath mode (`--offload on|off`); remembers both for reset().
   */
  async startDaemon(datapath: "offload" | "wasm", outsideVips: string[]): Promise<DaemonProc> {
    for (const vip of outsideVips) ip(this.t.ext, "route", "replace", `${vip}/32`, "via", this.t.nodeIp);
    ip(this.t.ext, "route", "replace", "10.96.0.0/16", "via", this.t.nodeIp);
    this.t.daemonArgs = ["--offload", datapath === "offload" ? "on" : "off"];
    this.first = JSON.stringify({ services: this.services, node: this.node });
    this.t.writeConfig(this.toJSON());
    const d = await this.t.startDaemon();
    this.firstInForce = await this.t.configInForce();
    return d;
  }

  /** Makes the change, writes the config and waits (up to 5 s) for the table generation it makes. */
  async apply(change: () => void): Promise<void> {
    const gen = (await control(this.t.socketPath, { cmd: "status" })).generation as number;
    change();
    this.t.writeConfig(this.toJSON());
    for (let i = 0; i < 100 && (await control(this.t.socketPath, { cmd: "status" })).generation === gen; i++) await new Promise((r) => setTimeout(r, 50));
  }

  /** Back to the config the daemon started with, in force. */
  async reset(): Promise<void> {
    ({ services: this.services, node: this.node } = JSON.parse(this.first) as { services: Record<string, any>[]; node: Record<string, unknown> });
    await this.t.restoreConfig(this.toJSON(), this.firstInForce);
  }
}

/** The daemon's drop counters by reason (its control socket's status). */
export async function dropCounters(t: Topology): Promise<Record<string, number>> {
  return (await control(t.socketPath, { cmd: "status" })).counters.drops as Record<string, number>;
}

// ── multi-node additions (overlay tests and bench/overlay) ─────────────────────────────────────

/** Asks a daemon's control socket (a file: reachable from this process whatever the namespace). */
export function control(path: string, req: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let text = "";
    c.setEncoding("utf8");
    c.on("data", (d: string) => { text += d; });
    c.on("end", () => { try { resolve(JSON.parse(text)); } catch (e) { reject(e); } });
    c.on("error", reject);
    c.end(`${JSON.stringify(req)}\n`);
  });
}

/** The first address of an IPv4 CIDR plus n (10.244.2.0/24, 1 -> 10.244.2.1). */
export function cidrAddr(cidr: string, n: number): string {
  const [a = 0, b = 0, c = 0, d = 0] = cidr.split("/")[0]!.split(".").map(Number);
  const v = (((a << 24) | (b << 16) | (c << 8) | d) + n) >>> 0;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join(".");
}

export interface PeerVtep { underlayIP: string; podCIDR: string; vtepMAC: string }

/**
 * A node whose overlay is the kernel's, set up exactly as flannel's vxlan backend does it
 * (/work/shared/recipes/real-clients.md §3): flannel.1 = `vxlan id 1 local <underlay> dev eth0
 * dstport 8472 nolearning`, MTU underlay - 50, <podCIDR>.0/32 on it; pods on a bridge cni0
 * (<podCIDR>.1/24); per remote node a route `<podCIDR> via <podCIDR>.0 dev flannel.1 onlink`, a
 * permanent neighbour <podCIDR>.0 -> the remote VTEP MAC and an FDB entry MAC -> remote underlay IP.
 * Its eth0 joins the underlay bridge br0 of `ext` (a Topology's external namespace).
 */
export class LinuxVxlanNode {
  readonly node: string;
  readonly pods: Pod[] = [];
  /** The MAC the kernel gave flannel.1 (flannel publishes it as the node's VtepMAC). */
  readonly vtepMac: string;
  readonly port: string;

  constructor(readonly ext: string, readonly nodeIp: string, readonly podCidr: string,
    opts: { vni?: number; dstPort?: number; underlayMtu?: number } = {}) {
    const mtu = (opts.underlayMtu ?? 1500) - 50;
    this.node = makeNs("lnode");
    this.port = `n${nodeIp.split(".").pop()}`;
    veth(this.node, "eth0", ext, this.port);
    ip(ext, "link", "set", this.port, "master", "br0");
    ip(this.node, "addr", "add", `${nodeIp}/24`, "dev", "eth0");
    ip(this.node, "link", "add", "flannel.1", "type", "vxlan", "id", String(opts.vni ?? 1), "local", nodeIp, "dev", "eth0",
      "dstport", String(opts.dstPort ?? 8472), "nolearning");
    ip(this.node, "link", "set", "flannel.1", "mtu", String(mtu), "up");
    ip(this.node, "addr", "add", `${cidrAddr(podCidr, 0)}/32`, "dev", "flannel.1");
    ip(this.node, "link", "add", "cni0", "type", "bridge");
    ip(this.node, "addr", "add", `${cidrAddr(podCidr, 1)}/${podCidr.split("/")[1]}`, "dev", "cni0");
    ip(this.node, "link", "set", "cni0", "up");
    inNsSysctl(this.node, "net.ipv4.ip_forward", "1");
    const link = JSON.parse(ip(this.node, "-j", "link", "show", "flannel.1")) as Array<{ address: string }>;
    this.vtepMac = link[0]!.address;
  }

  /** A pod on cni0 at <podCIDR>.(2 + n), MTU underlay - 50, default via cni0's address. */
  addPod(name: string): Pod {
    const ns = makeNs(name), n = this.pods.length, host = `vethl${n}`;
    const addr = cidrAddr(this.podCidr, 2 + n);
    const mtu = JSON.parse(ip(this.node, "-j", "link", "show", "flannel.1"))[0].mtu as number;
    sh("ip", ["link", "add", host, "netns", this.node, "mtu", String(mtu), "type", "veth", "peer", "name", "eth0", "netns", ns, "mtu", String(mtu)]);
    ip(this.node, "link", "set", host, "master", "cni0", "up");
    ip(ns, "addr", "add", `${addr}/${this.podCidr.split("/")[1]}`, "dev", "eth0");
    ip(ns, "link", "set", "eth0", "up");
    ip(ns, "route", "add", "default", "via", cidrAddr(this.podCidr, 1));
    const pod = { name, ns, ip: addr };
    this.pods.push(pod);
    return pod;
  }

  /** flannel's three entries for a remote node. */
  peer(r: PeerVtep): void {
    const gw = cidrAddr(r.podCIDR, 0);
    ip(this.node, "route", "replace", r.podCIDR, "via", gw, "dev", "flannel.1", "onlink");
    ip(this.node, "neigh", "replace", gw, "lladdr", r.vtepMAC, "dev", "flannel.1", "nud", "permanent");
    sh("bridge", ["-n", this.node, "fdb", "replace", r.vtepMAC, "dev", "flannel.1", "dst", r.underlayIP, "self", "permanent"]);
  }

  /** This node as another node's config names it. */
  asPeer(name: string): { name: string; underlayIP: string; podCIDR: string; vtepMAC: string } {
    return { name, underlayIP: this.nodeIp, podCIDR: this.podCidr, vtepMAC: this.vtepMac };
  }

  destroy(): void {
    for (const p of this.pods) deleteNs(p.ns);
    deleteNs(this.node);
  }
}

function inNsSysctl(ns: string, key: string, value: string): void {
  sh("ip", ["netns", "exec", ns, "sysctl", "-qw", `${key}=${value}`]);
}

/** Classic pcap records (tcpdump -w) as frames; `orig` is each packet's length on the wire. */
export function readPcapFile(path: string): Array<{ data: Uint8Array; orig: number }> {
  const b = readFileSync(path), out: Array<{ data: Uint8Array; orig: number }> = [];
  if (b.length < 24) return out;
  const le = b.readUInt32LE(0) === 0xa1b2c3d4 || b.readUInt32LE(0) === 0xa1b23c4d;
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  for (let o = 24; o + 16 <= b.length;) {
    const incl = u32(o + 8), orig = u32(o + 12);
    out.push({ data: new Uint8Array(b.subarray(o + 16, o + 16 + incl)), orig });
    o += 16 + incl;
  }
  return out;
}

/** A packet capture (tcpdump) on `iface` inside `ns`, started and listening when this resolves;
 *  stop() ends it (by PID) and returns the Ethernet frames it saw. */
export async function startCapture(ns: string, iface: string, filter: string, snaplen = 0): Promise<{ stop: () => Promise<Array<{ data: Uint8Array; orig: number }>> }> {
  const dir = mkdtempSync(join(tmpdir(), "wasp-cap-")), file = join(dir, "cap.pcap");
  const child = spawnInNs(ns, "tcpdump", ["-i", iface, "-nn", "-U", "--immediate-mode", "-s", String(snaplen), "-w", file, filter]);
  const out = collect(child);
  await waitFor(() => out().includes("listening on") || child.exitCode !== null, `tcpdump on ${ns}/${iface}`);
  if (child.exitCode !== null) { rmSync(dir, { recursive: true, force: true }); throw new Error(`tcpdump on ${iface}: ${out()}`); }
  return {
    stop: async () => {
      // -U writes each packet as it comes; a moment for the last ones to pass the filter
      await new Promise((r) => setTimeout(r, 200));
      await stop(child, "SIGINT");
      try { return readPcapFile(file); } finally { rmSync(dir, { recursive: true, force: true }); }
    },
  };
}
