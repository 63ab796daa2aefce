// `wasp daemon`: the single-node datapath. Lifecycle: load the config, clean what a killed daemon
// left, load the engine, open wasp0 and build the node picture around it, run the batch loop,
// apply reloads as new generations, serve the control socket and metrics; on SIGTERM/SIGINT undo
// every change to the node.
import { rmSync } from "node:fs";
import type { Server } from "node:net";
import { dirname, join } from "node:path";
import { pino, type Logger } from "pino";
import {
  defaultConfig, FileConfigSource, formatProblems, loadConfigFile, type Config, type ConfigEvent, type ConfigSource, type Problem,
} from "../config/index.js";
import { defaultNodeName, DEFAULT_CLUSTER_CIDR, DEFAULT_MIN_SYNC_PERIOD_MS, DEFAULT_SERVICE_CIDR, firstConfig, installCni, KubeConfigSource, loadKubeConfig } from "../kube/index.js";
import { DEFAULT_HEALTHZ_HOST, DEFAULT_HEALTHZ_PORT, ProxyHealth, serveHealthz } from "./healthz.js";
import { registerKubeProxyMetrics } from "./kube-proxy-metrics.js";
import { CommitResult } from "../engine/abi.js";
import { Engine, type EngineOptions } from "../engine/engine.js";
import { encodeModel, encodeOps } from "../engine/ops.js";
import { TunDevice, UnderlaySocket } from "../io/index.js";
import { native } from "../io/native.js";
import { buildModel, isEmptyDelta, updateModelAsync, type Model } from "../model/index.js";
import { engineOptionsFor, makeControlApi } from "./control-api.js";
import { serveControl } from "./control-socket.js";
import { serveCni } from "./cni-socket.js";
import { handle as handleCni } from "../cni/index.js";
import { VXLAN_OVERHEAD } from "../model/vxlan.js";
import { healthChecks, ServiceHealthServers } from "./service-health.js";
import { Datapath, nowSec } from "./datapath.js";
import { makeMetrics, serveMetrics } from "./metrics.js";
import {
  cleanupNodeNet, reconcileRouting, DEVICE, TUNNEL_TAP, nodeNetInputs, sameInputs, setupNodeNet, TABLE, type NodeNetInputs,
} from "./node-net.js";

export interface DaemonOptions {
  /** YAML or JSON config file, watched for changes; the embedded default when absent. */
  configPath?: string;
  socketPath: string;
  /** The CNI front door's socket; default cni.sock beside the control socket, "" for none. */
  cniSocketPath?: string;
  metricsHost: string;
  /** 0: any free port (logged). */
  metricsPort: number;
  /** Batch the TUN reads and writes through io_uring: true requires it, false never, absent
   *  whenever this kernel and sandbox allow it (a container's seccomp profile often does not). */
  ioUring?: boolean;
  /** Watch the Kubernetes API through this kubeconfig (in-cluster config when absent in a pod without --config). */
  kubeconfig?: string;
  /** This node's Node name (kube-proxy's --hostname-override). */
  hostnameOverride?: string;
  serviceCIDR?: string;
  serviceCIDRv6?: string;
  clusterCIDR?: string;
  clusterCIDRv6?: string;
  underlayIP?: string;
  /** kube-proxy's --nodeport-addresses: CIDRs of this host's addresses, or "primary". */
  nodePortAddresses?: string[];
  mode?: "tun" | "tap";
  minSyncPeriodMs?: number;
  /** kube-proxy's /healthz and /livez; port 0: any free port; undefined host: not served. */
  healthzHost?: string;
  healthzPort: number;
  /** Install the CNI plugin and this node's conflist, then exit (the DaemonSet's init container). */
  installCni?: boolean;
  cniBinDir?: string;
  cniConfDir?: string;
  /** The executable to install (default: this process's, dist/wasp). */
  cniBinary?: string;
}

export const DEFAULT_SOCKET = "/run/wasp/wasp.sock";
export const DEFAULT_METRICS_PORT = 10249;
const SWEEP_BUDGET = 4096;

export const DAEMON_USAGE = `usage: wasp daemon [--config FILE | --kubeconfig PATH] [--socket PATH] [--cni-socket PATH] [--metrics-port PORT] [--[no-]io-uring] [kube options]

  --config FILE        node config (YAML or JSON), reloaded when it changes; default: the embedded demo
                       (in a pod, KUBERNETES_SERVICE_HOST set: the Kubernetes API, in-cluster config)
  --kubeconfig PATH    watch Services, EndpointSlices and Nodes through this kubeconfig
  --socket PATH        control socket (default ${DEFAULT_SOCKET})
  --cni-socket PATH    where the CNI plugin (dist/wasp) hands pod ADD/DEL to this daemon
                       (default: cni.sock beside the control socket; "" turns it off)
  --metrics-port PORT  Prometheus metrics on 127.0.0.1:PORT/metrics (default ${DEFAULT_METRICS_PORT}; 0 picks one)
  --metrics-bind-address IP:PORT  the same as kube-proxy spells it (default 127.0.0.1:${DEFAULT_METRICS_PORT})
  --healthz-bind-address IP:PORT  kube-proxy's /healthz and /livez (default ${DEFAULT_HEALTHZ_HOST}:${DEFAULT_HEALTHZ_PORT}; "" turns them off)
  --io-uring           batch the TUN reads and writes through io_uring (one syscall per batch); the
                       default whenever io_uring works here, this flag makes it a requirement
  --no-io-uring        plain read()/write() per packet

 kube options (with --kubeconfig or in-cluster):
  --hostname-override NAME  this node's Node name (default: $NODE_NAME, else the host name)
  --cluster-cidr CIDR[,CIDR6]  pod addresses of the cluster (default ${DEFAULT_CLUSTER_CIDR}); an IPv6 one makes the node dual-stack
  --service-cidr CIDR[,CIDR6]  the cluster's service-cluster-ip-range (default ${DEFAULT_SERVICE_CIDR})
  --underlay-ip IP          VXLAN underlay address (default: the Node's InternalIP)
  --nodeport-addresses LIST NodePorts on this host's addresses in these CIDRs, or "primary" (the Node's
                            InternalIPs); default: the Node's InternalIP and ExternalIP addresses
  --mode tun|tap            the wasp0 device (default tun)
  --min-sync-period DUR     at most one table generation per DUR, e.g. 1s, 500ms (default ${DEFAULT_MIN_SYNC_PERIOD_MS}ms)
  --install-cni             install this executable as the CNI plugin and a conflist with this Node's pod
                            CIDR, then exit (the DaemonSet's init container); with --cni-bin-dir DIR
                            (default /opt/cni/bin), --cni-conf-dir DIR (default /etc/cni/net.d), --cni-binary FILE
`;

/** kube-proxy's duration flags: 1s, 500ms, 1m30s, 0. */
function parseDurationMs(flag: string, v: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (v === "0") return 0;
  const parts = [...v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((x) => x[0]).join("") !== v) throw new Error(`${flag} is ${JSON.stringify(v)}; expected a duration like 1s, 500ms or 1m30s`);
  return parts.reduce((sum, x) => sum + Number(x[1]) * (units[x[2] as string] as number), 0);
}

/** IP:PORT (IPv6 as [addr]:port); an empty value turns the server off. */
function parseHostPort(flag: string, v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d+)$/.exec(v);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new Error(`${flag} is ${JSON.stringify(v)}; expected IP:PORT like 0.0.0.0:10256 or [::]:10256`);
  return { host: (m[1] ?? m[2]) as string, port };
}

export function parseDaemonArgs(argv: readonly string[]): DaemonOptions | { error: string } {
  const o: DaemonOptions = {
    socketPath: DEFAULT_SOCKET, metricsHost: "127.0.0.1", metricsPort: DEFAULT_METRICS_PORT, healthzHost: DEFAULT_HEALTHZ_HOST, healthzPort: DEFAULT_HEALTHZ_PORT,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    const [flag, inline] = a.startsWith("--") && a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
    const value = (emptyOk = false) => {
      const v = inline ?? argv[++i];
      if (v === undefined || (v === "" && !emptyOk)) throw new Error(`${flag} needs a value`);
      return v;
    };
    try {
      if (flag === "--io-uring" && inline === undefined) o.ioUring = true;
      else if (flag === "--no-io-uring" && inline === undefined) o.ioUring = false;
      else if (flag === "--config") o.configPath = value();
      else if (flag === "--socket") o.socketPath = value();
      else if (flag === "--cni-socket") o.cniSocketPath = value(true);
      else if (flag === "--metrics-port") {
        const v = value(), n = Number(v);
        if (!/^\d+$/.test(v) || n > 65535) return { error: `--metrics-port is ${JSON.stringify(v)}; a port is 0-65535` };
        o.metricsPort = n;
      } else if (flag === "--metrics-bind-address") {
        const hp = parseHostPort(flag, value());
        o.metricsHost = hp.host;
        o.metricsPort = hp.port;
      } else if (flag === "--healthz-bind-address") {
        const v = value(true);
        if (v === "") delete o.healthzHost;
        else { const hp = parseHostPort(flag, v); o.healthzHost = hp.host; o.healthzPort = hp.port; }
      } else if (flag === "--kubeconfig") o.kubeconfig = value();
      else if (flag === "--hostname-override") o.hostnameOverride = value();
      else if (flag === "--cluster-cidr" || flag === "--service-cidr") {
        // kube-proxy's dual-stack spelling: one CIDR per family, comma-separated.
        const key = flag === "--cluster-cidr" ? "clusterCIDR" : "serviceCIDR";
        const parts = value().split(",").map((x) => x.trim());
        const v4 = parts.filter((x) => !x.includes(":")), v6 = parts.filter((x) => x.includes(":"));
        if (v4.length !== 1 || v6.length > 1) return { error: `${flag} is ${JSON.stringify(parts.join(","))}; expected one IPv4 CIDR and at most one IPv6 CIDR, comma-separated` };
        o[key] = v4[0] as string;
        if (v6[0] !== undefined) o[`${key}v6`] = v6[0];
      }
      else if (flag === "--underlay-ip") o.underlayIP = value();
      else if (flag === "--nodeport-addresses") o.nodePortAddresses = value().split(",").map((x) => x.trim()).filter((x) => x !== "");
      else if (flag === "--mode") {
        const v = value();
        if (v !== "tun" && v !== "tap") return { error: `--mode is ${JSON.stringify(v)}; expected tun or tap` };
        o.mode = v;
      } else if (flag === "--min-sync-period") o.minSyncPeriodMs = parseDurationMs(flag, value());
      else if (flag === "--install-cni" && inline === undefined) o.installCni = true;
      else if (flag === "--cni-bin-dir") o.cniBinDir = value();
      else if (flag === "--cni-conf-dir") o.cniConfDir = value();
      else if (flag === "--cni-binary") o.cniBinary = value();
      else return { error: `unknown option ${JSON.stringify(a)}` };
    } catch (e) {
      return { error: (e as Error).message };
    }
  }
  if (o.configPath !== undefined && o.kubeconfig !== undefined) return { error: "--config and --kubeconfig are two config sources; give one" };
  return o;
}

/** Settings the engine takes at init or the node picture cannot change under a running device. */
function restartOnly(a: Config, b: Config): Problem[] {
  const fields: Array<[string, (c: Config) => unknown]> = [
    ["mode", (c) => c.mode], ["node.name", (c) => c.node.name], ["node.underlayIP", (c) => c.node.underlayIP],
    ["node.podCIDR", (c) => c.node.podCIDR], ["node.underlayMTU", (c) => c.node.underlayMTU],
    ["serviceCIDR", (c) => c.serviceCIDR], ["clusterCIDR", (c) => c.clusterCIDR], ["node.podCIDRv6", (c) => c.node.podCIDRv6],
    ["serviceCIDRv6", (c) => c.serviceCIDRv6], ["clusterCIDRv6", (c) => c.clusterCIDRv6],
    ["vxlan", (c) => c.vxlan], ["conntrack.capacity", (c) => c.conntrack.capacity],
    ["tables", (c) => c.tables],
  ];
  const problems: Problem[] = [];
  for (const [path, get] of fields) {
    const was = JSON.stringify(get(a)), now = JSON.stringify(get(b));
    if (was !== now) problems.push({ path, message: `is ${now}, was ${was}; this setting takes a daemon restart` });
  }
  return problems;
}

export class Daemon {
  private engine!: Engine;
  private engineOptions!: EngineOptions;
  private tun: TunDevice | undefined;
  private underlay: UnderlaySocket | undefined;
  private datapath: Datapath | undefined;
  private model: Model = { services: new Map(), routes: new Map(), localAddrs: new Set(), nodeIds: new Map() };
  private config!: Config;
  private inputs!: NodeNetInputs;
  private source: ConfigSource | undefined;
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
  private readonly started = Date.now();
  private stopping = false;
  /** Set once the node's network is changed (a failed config load leaves it alone). */
  private touched = false;
  private metrics = makeMetrics(() => this.engine, () => ({ writeDropped: this.datapath?.writeDropped ?? 0 }));
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
    let config: Config;
    const t0 = performance.now();
    if (opts.installCni) {
      const r = await installCni({
        kubeConfig: loadKubeConfig(opts.kubeconfig), nodeName: defaultNodeName(opts.hostnameOverride), binary: opts.cniBinary ?? process.execPath,
        binDir: opts.cniBinDir ?? "/opt/cni/bin", confDir: opts.cniConfDir ?? "/etc/cni/net.d", daemonSocket: opts.socketPath,
      });
      log.info(r, "CNI plugin and conflist installed");
      return;
    }
    let kube: { source: KubeConfigSource; attach(listener: (ev: ConfigEvent) => void): void } | undefined;
    if (opts.kubeconfig !== undefined || (!opts.configPath && process.env["KUBERNETES_SERVICE_HOST"])) {
      const source = new KubeConfigSource({
        kubeConfig: loadKubeConfig(opts.kubeconfig), nodeName: defaultNodeName(opts.hostnameOverride), log,
        settings: {
          ...(opts.serviceCIDR !== undefined && { serviceCIDR: opts.serviceCIDR }), ...(opts.clusterCIDR !== undefined && { clusterCIDR: opts.clusterCIDR }),
          ...(opts.serviceCIDRv6 !== undefined && { serviceCIDRv6: opts.serviceCIDRv6 }), ...(opts.clusterCIDRv6 !== undefined && { clusterCIDRv6: opts.clusterCIDRv6 }),
          ...(opts.underlayIP !== undefined && { underlayIP: opts.underlayIP }), ...(opts.mode !== undefined && { mode: opts.mode }),
          ...(opts.nodePortAddresses !== undefined && { nodePortAddresses: opts.nodePortAddresses }),
        },
        ...(opts.minSyncPeriodMs !== undefined && { minSyncPeriodMs: opts.minSyncPeriodMs }),
        onQueued: () => { this.proxyHealth.queued(); this.kubeProxyMetrics.queued(); },
        onNodeEligible: (e) => this.proxyHealth.setNodeEligible(e),
      });
      this.source = source;
      log.info({ server: source.server, node: source.nodeName }, "waiting for the Kubernetes API's Services, EndpointSlices and this Node");
      const first = await firstConfig(source, (problems) => log.warn({ problems: formatProblems("kube", problems) }, "not serving yet"));
      config = first.config;
      kube = { source, attach: first.attach };
    } else if (opts.configPath) {
      const r = await loadConfigFile(opts.configPath);
      if ("problems" in r) {
        throw new Error(`invalid config (${r.problems.length} problems):\n  ${formatProblems(opts.configPath, r.problems).join("\n  ")}`);
      }
      config = r.config;
    } else {
      config = defaultConfig();
      log.warn("no --config: running the embedded demo config");
    }
    this.config = config;

    this.touched = true;
    const left = cleanupNodeNet();
    if (left.length) log.warn({ removed: left }, "removed what a previous daemon left behind");

    this.engineOptions = engineOptionsFor(config);
    this.engine = new Engine(this.engineOptions);
    const model = buildModel(config);
    this.commit(encodeModel(model, this.stage(), 0), "initial load");
    this.model = model;

    this.inputs = nodeNetInputs(config);
    // io_uring measured faster on every path (bench datapath and overlay); used when it works here.
    const uring = opts.ioUring ?? uringWorks();
    if (opts.ioUring === undefined && !uring) log.info({ errno: native().probeUring() }, "io_uring is not available here: plain read/write on the TUN");
    this.ioUring = uring;
    this.tun = TunDevice.open({ name: DEVICE, tap: config.mode === "tap", vnetHdr: true, ioUring: uring });
    try {
      setupNodeNet(this.inputs);
    } catch (e) {
      this.tun.close();
      cleanupNodeNet();
      throw e;
    }
    // A read that fails (not EAGAIN) means the fd or the device is gone: the node cannot be served.
    this.datapath = new Datapath(this.engine, this.tun, (err) => {
      log.fatal({ err: err.message }, "datapath failed");
      this.datapath?.stop();
      this.onFatal?.(err);
    }, (what) => log.warn(what));
    this.datapath.start();
    this.ensureUnderlay();
    this.sweepTimer = setInterval(() => this.engine.exports.sweep(nowSec(), SWEEP_BUDGET), 1000);
    this.sweepTimer.unref();

    this.control = await serveControl(opts.socketPath, makeControlApi({
      engine: () => this.engine, engineOptions: () => this.engineOptions, model: () => this.model, config: () => this.config,
      device: DEVICE, ioUring: this.ioUring, gateway: () => this.inputs.gateway, startedMs: this.started,
      tunWriteDropped: () => this.datapath?.writeDropped ?? 0,
      tunnelGso: () => {
        const u = this.underlay;
        if (!u) return undefined;
        const off = this.datapath?.tunnelOff || (u.tunnel ? "" : u.tunnelOff);
        return off ? { off } : { device: u.tunnel?.name ?? "" };
      },
    }));
    const cniSocket = opts.cniSocketPath ?? join(dirname(opts.socketPath), "cni.sock");
    if (cniSocket) {
      this.cniServer = await serveCni(cniSocket, handleCni, this.log);
      this.cniSocket = cniSocket;
    }
    const m = await serveMetrics(this.metrics.registry, opts.metricsHost, opts.metricsPort);
    this.metricsServer = m.server;
    await this.health.sync(healthChecks(config));
    this.metricsPort = m.port;

    if (opts.healthzHost !== undefined) {
      const h = await serveHealthz(this.proxyHealth, opts.healthzHost, opts.healthzPort, (path, code) => this.kubeProxyMetrics.healthzAnswered(path, code));
      this.healthzServer = h.server;
      this.healthzPort = h.port;
    }
    this.proxyHealth.updated();
    this.kubeProxyMetrics.observeSync((performance.now() - t0) / 1000, kube?.source.takeTriggerTimes());
    // kube-proxy's health and sync metrics follow every config the daemon applied. onConfig queues and
    // applies asynchronously and sets this.config when a config is in force: watch for that (a config
    // rejected or overtaken by a newer one records nothing; the newer one records itself).
    const applyConfig = (ev: ConfigEvent) => {
      const t = performance.now();
      this.onConfig(ev);
      if (ev.kind !== "config") return;
      const check = () => {
        if (this.stopping) return;
        if (this.config === ev.config) {
          this.proxyHealth.updated();
          this.kubeProxyMetrics.observeSync((performance.now() - t) / 1000, kube?.source.takeTriggerTimes());
        } else if (this.applying) {
          setTimeout(check, 1);
        }
      };
      check();
    };
    if (kube) {
      kube.attach(applyConfig);
    } else if (opts.configPath) {
      this.source = new FileConfigSource(opts.configPath);
      this.source.start(applyConfig);
    }
    log.info({
      mode: config.mode, device: DEVICE, address: this.inputs.gateway, table: TABLE, generation: this.generation(), services: model.services.size,
      socket: opts.socketPath, metricsPort: this.metricsPort, masquerade: this.inputs.gateway, ioUring: this.ioUring,
    }, "serving");
  }

  /** The VXLAN socket, opened once the cluster has another node (a single node binds no port). */
  private ensureUnderlay(): void {
    if (this.underlay || this.config.nodes.length === 0 || !this.datapath) return;
    this.underlay = UnderlaySocket.open({ bindIp: this.config.node.underlayIP, port: this.config.vxlan.port,
      innerMtu: this.config.node.underlayMTU - VXLAN_OVERHEAD, tunnelTap: TUNNEL_TAP });
    this.datapath.attachUnderlay(this.underlay);
    this.log.info({ bindIp: this.config.node.underlayIP, port: this.config.vxlan.port,
      tunnelGso: this.underlay.tunnel ? TUNNEL_TAP : this.underlay.tunnelOff }, "VXLAN underlay open");
  }

  private stage(): Uint8Array {
    return new Uint8Array(this.engine.memory, this.engine.stage, this.engine.stageCapacity);
  }

  private commit(bytes: number, what: string): void {
    const r = this.engine.exports.commit(bytes);
    if (r !== CommitResult.Ok) throw new Error(`${what}: the engine refused the tables (${CommitResult[r] ?? r})`);
  }

  /** The health check ports follow the config: opened, closed, their counts updated. */
  private syncHealth(): void {
    void this.health.sync(healthChecks(this.config));
  }

  generation(): number {
    return this.engine.exports.generation();
  }

  private reject(problems: Problem[]): void {
    const lines = formatProblems(this.opts.configPath ?? "config", problems);
    this.log.error({ problems: lines }, `reload rejected (${problems.length} problems); still serving generation ${this.generation()}`);
  }

  private readonly queued: ConfigEvent[] = [];
  private applying = false;

  /** Reloads run one at a time, in order; each gives the event loop (and so the datapath) a turn
   *  every few milliseconds while it builds the model of a large config. */
  private onConfig(ev: ConfigEvent): void {
    this.queued.push(ev);
    if (this.applying) return;
    this.applying = true;
    void (async () => {
      try {
        for (let next = this.queued.shift(); next && !this.stopping; next = this.queued.shift()) {
          try {
            await this.applyConfig(next);
          } catch (e) {
            this.log.error({ err: (e as Error).message }, "reload failed; the running tables stay");
          }
        }
      } finally {
        this.applying = false;
      }
    })();
  }

  private async applyConfig(ev: ConfigEvent): Promise<void> {
    if (this.stopping) return;
    if (ev.kind === "rejected") { this.reject(ev.problems); return; }
    const t0 = performance.now();
    const next = ev.config;
    const fixed = restartOnly(this.config, next);
    if (fixed.length) { this.reject(fixed); return; }
    const { model, delta } = await updateModelAsync(this.config, next, this.model);
    if (this.stopping) return;
    const inputs = nodeNetInputs(next);
    const routing = !sameInputs(inputs, this.inputs);
    if (isEmptyDelta(delta) && !routing) { this.config = next; this.syncHealth(); return; }
    if (!isEmptyDelta(delta)) {
      try {
        this.commit(encodeOps(delta, this.stage(), 0), "reload");
      } catch (e) {
        // The engine switches generations only on success: the old tables stay whole.
        this.reject([{ path: "", message: (e as Error).message }]);
        return;
      }
      // A key new to the engine may take an id whose counters belonged to a deleted entry.
      for (const e of delta.upsertServices) {
        if (this.model.services.get(e.key)?.id !== e.id) this.engine.exports.serviceStatsReset(e.id);
      }
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
        reconcileRouting(this.inputs, inputs);
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
  }

  /** Undoes every change to the node; safe to call twice, and after a failed start. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.sweepTimer);
    this.source?.close();
    this.datapath?.stop();
    // Closing the last fd deletes wasp0 and every route through it.
    this.tun?.close();
    this.underlay?.close();
    if (this.touched) {
      try {
        const done = cleanupNodeNet();
        this.log.info({ removed: done }, "node picture removed");
      } catch (e) {
        this.log.error({ err: (e as Error).message }, "cleanup incomplete; a restart finishes it");
      }
    }
    await this.health.close();
    if (this.cniSocket) rmSync(this.cniSocket, { force: true });
    await Promise.all([this.control, this.cniServer, this.metricsServer, this.healthzServer].map((s) => new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()))));
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
  const daemon = new Daemon(opts, log);
  let down = false;
  const shutdown = (why: string, code: number) => {
    if (down) return;
    down = true;
    log.info({ why }, "stopping");
    void daemon.stop().finally(() => { process.exitCode = code; process.exit(); });
  };
  daemon.onFatal = () => shutdown("datapath failed", 1);
  process.once("SIGTERM", () => shutdown("SIGTERM", 0));
  process.once("SIGINT", () => shutdown("SIGINT", 0));
  process.once("uncaughtException", (e) => { log.fatal({ err: e.message, stack: e.stack }, "uncaught exception"); shutdown("crash", 1); });
  try {
    await daemon.start();
  } catch (e) {
    log.fatal({ err: (e as Error).message }, "cannot start");
    await daemon.stop();
    process.exitCode = 1;
    process.exit();
  }
}
