// `wasp daemon`: the single-node datapath. Lifecycle: load the config, clean what a killed daemon
// left, load the engine, open wasp0 and build the node picture around it, run the batch loop,
// apply reloads as new generations, serve the control socket and metrics; on SIGTERM/SIGINT undo
// every change to the node. Its parts: args.ts (the command line), config-sources.ts (where configs
// come from), reloads.ts (one at a time, a promise each), restart-only.ts, install-cni.ts.
import { rmSync } from "node:fs";
import type { Server } from "node:net";
import { dirname, join } from "node:path";
import { pino, type Logger } from "pino";
import { formatProblems, type Config, type ConfigEvent, type Problem } from "../config/index.js";
import { DEFAULT_HEALTHZ_HOST, ProxyHealth, serveHealthz } from "./healthz.js";
import { registerKubeProxyMetrics } from "./kube-proxy-metrics.js";
import { Engine, type EngineOptions } from "../engine/engine.js";
import { engineOptionsFor } from "../engine/options.js";
import { ConntrackSocket, IoError, TunDevice, UnderlaySocket } from "../io/index.js";
import { native } from "../io/native.js";
import { buildModel, goneBackends, isEmptyDelta, updateModelAsync, type GoneBackend, type Model } from "../model/index.js";
import { dumpOffloaded, flushUdpBackend, parseFlows, type KernelFlow } from "../netlink/conntrack.js";
import { makeControlApi } from "./control-api.js";
import { serveControl } from "./control-socket.js";
import { serveCni } from "./cni-socket.js";
import { handle as handleCni } from "../cni/index.js";
import { VXLAN_OVERHEAD } from "../model/vxlan.js";
import { ServiceHealthServers } from "./service-health.js";
import { ServiceFacts } from "./service-facts.js";
import { HeapReclaimer } from "./reclaim.js";
import { Datapath, nowSec } from "./datapath.js";
import { FlowJournal, journalFiles } from "./flow-journal.js";
import { PathDropMeter } from "./path-drops.js";
import { makeMetrics, serveMetrics } from "./metrics.js";
import { cleanupNodeNet, DEVICE, ensureNodeNet, ensureRouting, nodeNetInputs, runIp, sameInputs, TABLE, TUNNEL_TAP, type NodeNetInputs } from "./node-net.js";
import { ensureOverlay, offloadBlocker, OffloadCounterReader } from "./offload-net.js";
import { DAEMON_USAGE, parseDaemonArgs, type DaemonOptions } from "./args.js";
import { startingConfig, usesKube, type StartingConfig } from "./config-sources.js";
import { ReloadQueue, type ReloadOutcome } from "./reloads.js";
import { restartOnly } from "./restart-only.js";
import { runInstallCni } from "./install-cni.js";
import { DaemonRunningError, takeDaemonLock } from "./lock.js";

export { DAEMON_USAGE, DEFAULT_METRICS_PORT, DEFAULT_SOCKET, parseDaemonArgs, type DaemonOptions } from "./args.js";

const SWEEP_BUDGET = 4096;
const ENOENT = 2;

export class Daemon {
  private engine!: Engine;
  private engineOptions!: EngineOptions;
  private tun: TunDevice | undefined;
  private underlay: UnderlaySocket | undefined;
  private ct: ConntrackSocket | undefined;
  private lock: Server | undefined;
  private ctDump: ConntrackSocket | undefined;
  private offload = { on: false, why: "" };
  private datapath: Datapath | undefined;
  private model: Model = { services: new Map(), routes: new Map(), localAddrs: new Set(), nodeIds: new Map() };
  private config!: Config;
  private inputs!: NodeNetInputs;
  private source: StartingConfig | undefined;
  private closeSource: (() => void) | undefined;
  private control: Server | undefined;
  private cniServer: Server | undefined;
  private ioUring = false;
  private cniSocket: string | undefined;
  private metricsServer: import("node:http").Server | undefined;
  private readonly health = new ServiceHealthServers(
    () => !this.stopping && this.datapath !== undefined,
    (port, err) => this.log.error({ port, err: err.message }, "health check not served"),
  );
  private sweepTimer: NodeJS.Timeout | undefined;
  private journal: FlowJournal | undefined;
  /** The routes and health checks the services in force ask for, kept per service. */
  private facts!: ServiceFacts;
  private readonly started = Date.now();
  private stopping = false;
  /** Set once the node's network is changed (a failed config load leaves it alone). */
  private touched = false;
  private readonly pathDrops = new PathDropMeter({
    device: DEVICE, tunnelTap: () => this.underlay?.tunnel?.name, underlayFd: () => this.underlay?.udpFd,
    writeRefused: () => this.datapath?.writeDropped ?? 0,
  });
  private readonly kernelCounters = new OffloadCounterReader();
  private readonly reclaimer = new HeapReclaimer();
  private metrics = makeMetrics(() => this.engine, () => this.pathDrops.drops(),
    async () => (this.offload.on ? this.kernelCounters.read() : undefined));
  private readonly reloads = new ReloadQueue((ev) => this.applyConfig(ev));
  metricsPort = 0;
  /** Called once when the datapath cannot go on (the caller stops the daemon). */
  onFatal: ((err: Error) => void) | undefined;

  private readonly proxyHealth = new ProxyHealth();
  private readonly kubeProxyMetrics = registerKubeProxyMetrics(this.metrics.registry);
  private healthzServer: import("node:http").Server | undefined;
  healthzPort = 0;

  constructor(private readonly opts: DaemonOptions, private readonly log: Logger) {}

  async start(): Promise<void> {
    const { opts, log } = this;
    const t0 = performance.now();
    // before anything is touched: a second daemon on this node refuses here
    this.lock = await takeDaemonLock();
    this.source = await startingConfig(opts, log, {
      onQueued: () => { this.proxyHealth.queued(); this.kubeProxyMetrics.queued(); },
      onNodeEligible: (e) => this.proxyHealth.setNodeEligible(e),
      opened: (close) => { this.closeSource = close; },
    });
    if (this.stopping) return;
    const config = this.source.config;
    this.config = config;

    this.touched = true;
    this.offload = this.chooseOffload();
    this.engineOptions = engineOptionsFor(config, this.offload.on);
    this.engine = new Engine(this.engineOptions);
    this.engine.onTables = (s) => {
      const at = { memoryMiB: Math.round(s.memoryBytes / 2 ** 20), limitMiB: s.limitBytes && s.limitBytes / 2 ** 20, waiting: s.waiting, flows: s.flows };
      if (s.full) log.warn(at, `the engine's tables are full: ${s.why}; still serving what they hold and applying the changes that fit`);
      else log.info(at, "the engine's tables hold everything they were given again");
    };
    const model = buildModel(config);
    this.engine.loadModel(model);
    this.model = model;

    if (!this.offload.on) this.restoreFlows();

    this.facts = new ServiceFacts(config);
    this.inputs = nodeNetInputs(config, this.offload.on, this.facts.externalRoutes);
    // io_uring measured faster on every path (bench datapath and overlay); used when it works here.
    const uring = opts.ioUring ?? uringWorks();
    if (opts.ioUring === undefined && !uring) log.info({ errno: native().probeUring() }, "io_uring is not available here: plain read/write on the TUN");
    this.ioUring = uring;
    this.tun = openDevice(config.mode === "tap", uring, log);
    try {
      ensureNodeNet(this.inputs);
    } catch (e) {
      this.tun.close();
      throw e;
    }
    // A read that fails (not EAGAIN) means the fd or the device is gone: the node cannot be served.
    this.datapath = new Datapath(this.engine, this.tun, (err) => {
      log.fatal({ err: err.message }, "datapath failed");
      this.datapath?.stop();
      this.onFatal?.(err);
    }, (what) => log.warn(what), this.ct);
    this.datapath.start();
    this.journal?.start();
    this.ensureUnderlay();
    this.sweepTimer = setInterval(() => this.engine.sweep(nowSec(), SWEEP_BUDGET), 1000);
    this.sweepTimer.unref();
    this.pathDrops.start();

    this.control = await serveControl(opts.socketPath, makeControlApi({
      engine: () => this.engine, engineOptions: () => this.engineOptions, model: () => this.model, config: () => this.config,
      device: DEVICE, ioUring: this.ioUring, gateway: () => this.inputs.gateway, startedMs: this.started,
      pathDrops: () => this.pathDrops.drops(),
      tunnelGso: () => {
        const u = this.underlay;
        if (!u) return undefined;
        const off = this.datapath?.tunnelOff || (u.tunnel ? "" : u.tunnelOff);
        return off ? { off } : { device: u.tunnel?.name ?? "" };
      },
      offload: async () => (this.offload.on ? { ...this.offload, kernel: await this.kernelCounters.read() } : this.offload),
      ...(this.ct ? { kernelFlows: () => this.kernelFlows() } : {}),
      rejections: () => this.metrics.rejections(),
    }));
    const cniSocket = opts.cniSocketPath ?? join(dirname(opts.socketPath), "cni.sock");
    if (cniSocket) {
      this.cniServer = await serveCni(cniSocket, handleCni, this.log);
      this.cniSocket = cniSocket;
    }
    const m = await serveMetrics(this.metrics.registry, opts.metricsHost, opts.metricsPort);
    this.metricsServer = m.server;
    await this.health.sync(this.facts.healthChecks());
    this.metricsPort = m.port;

    if (opts.healthzHost !== undefined) {
      const h = await serveHealthz(this.proxyHealth, opts.healthzHost, opts.healthzPort, (path, code) => this.kubeProxyMetrics.healthzAnswered(path, code));
      this.healthzServer = h.server;
      this.healthzPort = h.port;
    }
    this.synced(t0);
    // kube-proxy's health and sync metrics follow every config the daemon put in force; a config
    // rejected records nothing.
    const source = this.source;
    source.follow((ev) => {
      const t = performance.now();
      void this.reloads.push(ev).then((outcome) => { if (outcome !== "rejected") this.synced(t); },
        (e: Error) => this.log.error({ err: e.message }, "reload failed; the running tables stay"));
    });
    log.info({
      mode: config.mode, device: DEVICE, address: this.inputs.gateway, table: TABLE, generation: this.generation(), services: model.services.size,
      socket: opts.socketPath, metricsPort: this.metricsPort, masquerade: this.inputs.gateway, ioUring: this.ioUring,
      sinceProcessStartMs: Math.round(performance.now()), startMs: Math.round(performance.now() - t0),
    }, "serving");
  }

  /** kube-proxy's /healthz and sync metrics: a config went into force (it took since t ms). */
  private synced(t: number): void {
    if (this.stopping) return;
    this.proxyHealth.updated();
    this.kubeProxyMetrics.observeSync((performance.now() - t) / 1000, this.source?.triggerTimes());
  }

  /** Offload mode: the kernel's entries of UDP flows to backends a reload took away go, as
   *  kube-proxy clears stale UDP conntrack (the engine's own go in its sweep); TCP flows are left
   *  to end as they would with kube-proxy. */
  private flushGoneUdp(gone: GoneBackend[]): void {
    if (!gone.length || !this.ct) return;
    try {
      const r = this.ct.send(gone.map((g, i) => flushUdpBackend(i + 1, g)));
      const failed = [...r].filter((e) => e !== 0 && e !== ENOENT).length;
      if (failed) this.log.warn({ failed, of: gone.length }, "some stale UDP conntrack entries could not be flushed");
    } catch (e) {
      this.log.error({ err: (e as Error).message }, "cannot flush stale UDP conntrack entries");
    }
  }

  /** Offload mode: the conntrack entries the engine made, dumped on a socket of their own. */
  private async kernelFlows(): Promise<KernelFlow[]> {
    this.ctDump ??= ConntrackSocket.open();
    return parseFlows(await this.ctDump.dump(dumpOffloaded(1)));
  }

  /** Offload mode, as asked and as this node allows; the ctnetlink socket it needs. */
  private chooseOffload(): { on: boolean; why: string } {
    const asked = this.opts.offload;
    if (asked === "off") return { on: false, why: "turned off (--offload off)" };
    let blocker = offloadBlocker(DEVICE);
    if (!blocker) {
      try { this.ct = ConntrackSocket.open(); } catch (e) { blocker = (e as Error).message; }
    }
    if (!blocker) return { on: true, why: asked === "on" ? "--offload on" : "this kernel has conntrack, NAT and ctnetlink" };
    if (asked === "on") throw new Error(`--offload on, but ${blocker}`);
    this.log.warn({ why: blocker }, "offload mode is not available here: every packet of a service flow goes through wasm");
    return { on: false, why: blocker };
  }

  /** The VXLAN socket, opened once the cluster has another node (a single node binds no port); in
   *  offload mode the kernel's vxlan device (waspvx) carries the overlay instead. */
  private ensureUnderlay(): void {
    if (this.underlay || this.offload.on || this.config.nodes.length === 0 || !this.datapath) return;
    this.underlay = UnderlaySocket.open({ bindIp: this.config.node.underlayIP, port: this.config.vxlan.port,
      innerMtu: this.config.node.underlayMTU - VXLAN_OVERHEAD, tunnelTap: TUNNEL_TAP });
    this.datapath.attachUnderlay(this.underlay);
    this.log.info({ bindIp: this.config.node.underlayIP, port: this.config.vxlan.port,
      tunnelGso: this.underlay.tunnel ? TUNNEL_TAP : this.underlay.tunnelOff }, "VXLAN underlay open");
  }

  /** The health check ports follow the config: opened, closed, their counts updated. */
  private syncHealth(): void {
    void this.health.sync(this.facts.healthChecks());
  }

  generation(): number {
    return this.engine.generation();
  }

  private reject(problems: Problem[]): ReloadOutcome {
    const lines = formatProblems(this.opts.configPath ?? "config", problems);
    this.metrics.reloadRejected(this.generation(), lines);
    this.log.error({ problems: lines }, `reload rejected (${problems.length} problem${problems.length === 1 ? "" : "s"}); still serving generation ${this.generation()}`);
    return "rejected";
  }

  /** One reload; each gives the event loop (and so the datapath) a turn every few milliseconds
   *  while it builds the model of a large config. */
  private async applyConfig(ev: ConfigEvent): Promise<ReloadOutcome> {
    if (this.stopping) return "rejected";
    if (ev.kind === "rejected") return this.reject(ev.problems);
    const t0 = performance.now();
    const next = ev.config;
    const fixed = restartOnly(this.config, next);
    if (fixed.length && usesKube(this.opts)) {
      // This Node itself changed (its InternalIP, its pod CIDR): as kube-proxy does, exit so that the
      // DaemonSet starts a daemon on the new settings; the datapath stays for it meanwhile.
      const what = fixed.map((p) => p.path).join(", ");
      this.log.error({ problems: formatProblems("kube", fixed) }, `this Node's ${what} changed: exiting so the next daemon starts with it`);
      this.onFatal?.(new Error(`this Node's ${what} changed`));
      return "rejected";
    }
    if (fixed.length) return this.reject(fixed);
    const { model, delta } = await updateModelAsync(this.config, next, this.model, ev.changes);
    if (this.stopping) return "rejected";
    this.facts.follow(next, ev.changes);
    const inputs = nodeNetInputs(next, this.offload.on, this.facts.externalRoutes);
    const routing = !sameInputs(inputs, this.inputs);
    if (isEmptyDelta(delta) && !routing) { this.config = next; this.syncHealth(); return "unchanged"; }
    if (!isEmptyDelta(delta)) {
      try {
        this.engine.applyDelta(delta);
      } catch (e) {
        // The engine switches generations only on success: the old tables stay whole.
        this.facts.follow(this.config);
        return this.reject([{ path: "", message: (e as Error).message }]);
      }
      // A key new to the engine may take an id whose counters belonged to a deleted entry.
      for (const e of delta.upsertServices) {
        if (this.model.services.get(e.key)?.id !== e.id) this.engine.resetServiceStats(e.id);
      }
      if (this.ct) this.flushGoneUdp(goneBackends(this.model, delta, "UDP"));
    }
    this.model = model;
    this.config = next;
    this.syncHealth();
    try {
      this.ensureUnderlay();
    } catch (e) {
      this.log.error({ err: (e as Error).message }, "reload: cannot open the VXLAN underlay; other nodes are unreachable");
    }
    if (routing) {
      try {
        if (inputs.overlay) ensureOverlay(inputs.overlay, this.inputs.overlay, runIp);
        ensureRouting(inputs);
        this.inputs = inputs;
      } catch (e) {
        // Kept as it was, so the next reload tries the whole change again.
        this.log.error({ err: (e as Error).message }, "reload: the engine took the tables, but the node's routes or rules could not follow");
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    this.metrics.reloadSeconds.observe(seconds);
    this.log.info({
      generation: this.generation(), upserted: delta.upsertServices.length, deleted: delta.deleteServices.length,
      routes: delta.upsertRoutes.length + delta.deleteRoutes.length, routing, ms: Math.round(seconds * 1e4) / 10,
    }, `reload applied; serving generation ${this.generation()}`);
    this.reclaimer.afterReload();
    return "applied";
  }

  /** Full-wasm mode: the flows the last daemon on this node had are put back before a packet is
   *  read, and this daemon's are written for the next one (src/daemon/flow-journal.ts). */
  private restoreFlows(): void {
    const journal = new FlowJournal(journalFiles(this.opts.socketPath), () => this.engine, () => this.model, nowSec,
      (err) => this.log.warn({ err: err.message }, "flow journal not written"));
    this.journal = journal;
    try {
      const r = journal.restore();
      if (r) this.log.info({ ...r }, `restored ${r.restored} flows of the last daemon (written ${r.ageMs} ms before)`);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "flows of the last daemon not restored");
    }
  }

  /** Stops serving and leaves the node's datapath (the persistent wasp0, its rules and routes, in
   *  offload mode the conntrack entries, the table and waspvx) for the next daemon: established
   *  connections live on, new ones wait. `wasp daemon --cleanup` removes it. Safe to call twice,
   *  and after a failed start. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.sweepTimer);
    this.pathDrops.stop();
    this.closeSource?.();
    this.source?.close();
    this.datapath?.stop();
    this.journal?.stop();
    this.tun?.close();
    this.underlay?.close();
    this.ct?.close();
    this.ctDump?.close();
    if (this.touched) this.log.info({ device: DEVICE }, "the datapath stays for the next daemon (wasp daemon --cleanup removes it)");
    await this.health.close();
    if (this.cniSocket) rmSync(this.cniSocket, { force: true });
    await Promise.all([this.control, this.cniServer, this.metricsServer, this.healthzServer].map((s) => new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()))));
    this.lock?.close();
  }
}

/** wasp0, persistent: a device left by an earlier daemon is adopted; one of the other kind (TUN and
 *  TAP, a switch of `mode`) is replaced. */
function openDevice(tap: boolean, uring: boolean, log: Logger): TunDevice {
  const open = () => TunDevice.open({ name: DEVICE, tap, vnetHdr: true, ioUring: uring, persist: true });
  try {
    return open();
  } catch (e) {
    if (!(e instanceof IoError) || e.code !== "EINVAL") throw e;
    try { runIp(["link", "del", DEVICE]); } catch { throw e; }
    log.warn({ device: DEVICE, tap }, "replaced a device of the other kind left by an earlier daemon");
    return open();
  }
}

/** True when io_uring works on this thread (kernel, io_uring_disabled sysctl, seccomp). */
function uringWorks(): boolean {
  return native().probeUring() === 0;
}

export function makeLogger(): Logger {
  return pino({ base: { pid: process.pid, name: "wasp" } }, pino.destination({ dest: 2, sync: true }));
}

/** Entry for `wasp daemon ARGS`: runs until SIGTERM or SIGINT. Failures set process.exitCode. */
export async function runDaemon(argv: readonly string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(DAEMON_USAGE);
    return;
  }
  const opts = parseDaemonArgs(argv);
  if ("error" in opts) {
    process.stderr.write(`wasp daemon: ${opts.error}\n\n${DAEMON_USAGE}`);
    process.exitCode = 2;
    return;
  }
  const log = makeLogger();
  if (opts.installCni) {
    await runInstallCni(opts, log);
    return;
  }
  if (opts.cleanup) {
    try {
      const lock = await takeDaemonLock();
      log.info({ removed: cleanupNodeNet() }, "removed the datapath a daemon left on this node");
      for (const file of journalFiles(opts.socketPath)) rmSync(file, { force: true });
      lock.close();
    } catch (e) {
      process.stderr.write(`wasp daemon --cleanup: ${(e as Error).message}\n`);
      process.exitCode = 1;
    }
    return;
  }
  const daemon = new Daemon(opts, log);
  let down = false;
  const shutdown = (why: string, code: number) => {
    if (down) return;
    down = true;
    log.info({ why }, "stopping");
    void daemon.stop().finally(() => { process.exitCode = code; process.exit(); });
  };
  daemon.onFatal = (err) => shutdown(err.message, 1);
  process.once("SIGTERM", () => shutdown("SIGTERM", 0));
  process.once("SIGINT", () => shutdown("SIGINT", 0));
  process.once("uncaughtException", (e) => { log.fatal({ err: e.message, stack: e.stack }, "uncaught exception"); shutdown("crash", 1); });
  try {
    await daemon.start();
  } catch (e) {
    log.fatal({ err: (e as Error).message }, "cannot start");
    // the log line escapes the problems' newlines: a person reads them here
    process.stderr.write(`wasp daemon: cannot start: ${(e as Error).message}\n`);
    if (!(e instanceof DaemonRunningError)) await daemon.stop();
    process.exitCode = 1;
    process.exit();
  }
}
