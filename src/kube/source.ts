// The config from the Kubernetes API: Services, EndpointSlices and Nodes through the official client's
// informers (list, then watch from the list's resourceVersion; a 410 Gone — as an HTTP status or as a
// watch ERROR event — empties the resourceVersion and the next round re-lists). Each event converts
// the one object it names and marks its Service dirty; a sync, at most once per minSyncPeriod like
// kube-proxy's, joins only the dirty Services with their slices and rebuilds the Config's lists from
// the per-object maps. A malformed object is reported and its last good version stays in force.
// The one write: this node's VXLAN endpoint, published on its Node as flannel does (node-annotations.ts).

import { existsSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import {
  CoreV1Api, DiscoveryV1Api, KubeConfig, ListWatch, PatchStrategy, setHeaderOptions, Watch,
  type KubernetesListObject, type KubernetesObject,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { DEFAULT_CLUSTER_CIDR, DEFAULT_MIN_SYNC_PERIOD_MS, DEFAULT_SERVICE_CIDR } from "./defaults.js";
import { validateConfig } from "../config/validate.js";
import type { ConfigEvent, ConfigSource } from "../config/file-source.js";
import type { Config, PeerNodeConfig, Problem, ServiceConfig } from "../config/schema.js";
import { cidrContains, formatIp, parseCidr, parseIp, type Cidr } from "../model/addr.js";
import { deriveVtepMac } from "../model/model.js";
import {
  convertEndpointSlice, convertNode, convertService, joinService, peerOf,
  type ConvertContext, type KubeNode, type KubeService, type KubeSlice,
} from "./convert.js";
import { annotationPatch, vtepAnnotations } from "./node-annotations.js";

/** The node-level settings the API does not hold (kube-proxy takes them as flags too). */
export interface KubeNodeSettings {
  mode?: "tun" | "tap";
  /** The cluster's service-cluster-ip-range; kubeadm's default 10.96.0.0/12. */
  serviceCIDR?: string;
  serviceCIDRv6?: string;
  /** kube-proxy's --cluster-cidr: pod addresses, for masquerading traffic from outside it. */
  clusterCIDR?: string;
  clusterCIDRv6?: string;
  vxlan?: { vni: number; port: number };
  conntrack?: { capacity: number };
  loadBalancing?: { mode: "random" | "maglev"; maglevTableSize?: number };
  underlayMTU?: number;
  /** Overrides the Node's first IPv4 InternalIP. */
  underlayIP?: string;
  /** Overrides the Node's InternalIP and ExternalIP addresses as NodePort addresses. */
  nodeAddresses?: string[];
  /**
   * kube-proxy's --nodeport-addresses: NodePorts answer on this host's interface addresses inside these
   * CIDRs; "primary" means the Node's InternalIPs. Absent: the Node's InternalIP and ExternalIP addresses.
   */
  nodePortAddresses?: string[];
}

export { DEFAULT_SERVICE_CIDR, DEFAULT_CLUSTER_CIDR, DEFAULT_MIN_SYNC_PERIOD_MS };
/** A refused patch of this Node's annotations is tried again no sooner than this. */
const PATCH_RETRY_MS = 60_000;

export interface KubeSourceOptions {
  kubeConfig: KubeConfig;
  /** This node's Node object name (--hostname-override; default the host name). */
  nodeName: string;
  settings?: KubeNodeSettings;
  /** At most one config per this many ms (kube-proxy's minSyncPeriod, default 1 s). */
  minSyncPeriodMs?: number;
  /** Reconnect backoff after a failed list or watch: doubling from initial to max, with jitter. */
  backoffMs?: { initial: number; max: number };
  log?: Pick<Logger, "info" | "warn" | "error">;
  /** A change arrived that the next config will carry (kube-proxy's QueuedUpdate). */
  onQueued?: () => void;
  /** This Node's eligibility changed (deleted, or tainted ToBeDeletedByClusterAutoscaler). */
  onNodeEligible?: (eligible: boolean) => void;
}

/** Work done so far, for tests and logs: conversions count objects, joins count Services re-joined. */
export interface KubeSourceStats {
  servicesConverted: number;
  slicesConverted: number;
  nodesConverted: number;
  serviceJoins: number;
  lists: number;
  watchErrors: number;
  configs: number;
  rejected: number;
  /** Patches of this Node's VXLAN annotations sent, and refused. */
  nodePatches: number;
  nodePatchErrors: number;
}

/**
 * A KubeConfig from a kubeconfig file, or the in-cluster service account when no file is named and
 * KUBERNETES_SERVICE_HOST is set (as in a pod).
 */
export function loadKubeConfig(path: string | undefined, env: NodeJS.ProcessEnv = process.env, inClusterRoot = ""): KubeConfig {
  const kc = new KubeConfig();
  if (path !== undefined) {
    try {
      kc.loadFromFile(path);
    } catch (e) {
      throw new Error(`cannot load kubeconfig ${path}: ${(e as Error).message}`);
    }
  } else if (env["KUBERNETES_SERVICE_HOST"]) {
    // The client reads KUBERNETES_SERVICE_HOST/PORT from process.env and the token and CA from the
    // service account mount (under inClusterRoot in tests).
    const sa = `${inClusterRoot}/var/run/secrets/kubernetes.io/serviceaccount`;
    for (const f of ["token", "ca.crt"]) {
      if (!existsSync(`${sa}/${f}`)) throw new Error(`in a pod (KUBERNETES_SERVICE_HOST is set) but ${sa}/${f} is missing; mount the service account token (automountServiceAccountToken) or give --kubeconfig`);
    }
    kc.loadFromCluster(inClusterRoot);
  } else {
    throw new Error("no Kubernetes API to watch: give --kubeconfig PATH, or run in a pod (KUBERNETES_SERVICE_HOST)");
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error(`kubeconfig ${path ?? "(in-cluster)"} has no current cluster; set current-context`);
  return kc;
}

/** The Node name to look for: --hostname-override, else NODE_NAME (a DaemonSet's downward API), else the host name, lowercased as the kubelet does. */
export function defaultNodeName(override: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return (override ?? env["NODE_NAME"] ?? hostname()).trim().toLowerCase();
}

/**
 * Starts a source and resolves with its first config; events before it that are rejections go to
 * `onWaiting` (the daemon logs why it waits), events after it are held until attach() hands them on.
 */
export function firstConfig(source: ConfigSource, onWaiting: (problems: Problem[]) => void): Promise<{ config: Config; attach(listener: (ev: ConfigEvent) => void): void }> {
  return new Promise((resolve) => {
    let first: Config | undefined, listener: ((ev: ConfigEvent) => void) | undefined;
    const held: ConfigEvent[] = [];
    const attach = (l: (ev: ConfigEvent) => void) => {
      listener = l;
      for (const ev of held.splice(0)) l(ev);
    };
    source.start((ev) => {
      if (listener) return listener(ev);
      if (first) { held.push(ev); return; }
      if (ev.kind === "rejected") return onWaiting(ev.problems);
      first = ev.config;
      resolve({ config: first, attach });
    });
  });
}

/** The client's Watch, asking for bookmarks and for a server-side timeout (client-go picks 5-10 min), so a silently dead connection is replaced. */
class BookmarkWatch extends Watch {
  constructor(config: KubeConfig, private readonly connected: () => void) {
    super(config);
  }

  override async watch(path: string, query: Record<string, string | number | boolean | undefined>, callback: (phase: string, obj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    let failed = false;
    const timeoutSeconds = 300 + Math.floor(Math.random() * 300);
    const ctrl = await super.watch(path, { ...query, allowWatchBookmarks: true, timeoutSeconds }, callback, (err: unknown) => {
      if (err) failed = true;
      done(err);
    });
    if (!failed) this.connected();
    return ctrl;
  }
}

type Kind = "services" | "endpointslices" | "nodes";
const keyOf = (o: KubernetesObject): string | undefined => {
  const m = o?.metadata;
  if (!m || typeof m.name !== "string") return undefined;
  return m.namespace ? `${m.namespace}/${m.name}` : m.name;
};

export class KubeConfigSource implements ConfigSource {
  readonly stats: KubeSourceStats = {
    servicesConverted: 0, slicesConverted: 0, nodesConverted: 0, serviceJoins: 0, lists: 0, watchErrors: 0, configs: 0, rejected: 0,
    nodePatches: 0, nodePatchErrors: 0,
  };
  private readonly ctx: ConvertContext;
  private readonly settings: KubeNodeSettings;
  private readonly minSyncMs: number;
  private readonly backoff: { initial: number; max: number };
  private readonly informers: Array<{ kind: Kind; lw: ListWatch<KubernetesObject>; attempts: number; timer?: NodeJS.Timeout | undefined }> = [];
  private readonly synced = new Set<Kind>();
  private listener: ((ev: ConfigEvent) => void) | undefined;
  private closed = false;

  // Per-object state: the last good conversion of each object.
  private readonly services = new Map<string, KubeService>();
  private readonly slices = new Map<string, KubeSlice>();
  private readonly slicesByService = new Map<string, Set<string>>();
  private readonly nodes = new Map<string, KubeNode>();
  /** The internal services of each Kubernetes Service, re-joined only when it or one of its slices changed. */
  private readonly joined = new Map<string, ServiceConfig[]>();
  private readonly dirty = new Set<string>();
  private nodesDirty = true;
  private pending: Problem[] = [];
  /** Slice trigger times (ms) carried by the next config, for network_programming_duration_seconds. */
  private triggers: number[] = [];

  private base: Omit<Config, "services" | "nodes"> | undefined;
  private peers: PeerNodeConfig[] = [];
  private servicesList: ServiceConfig[] = [];
  /** Where each Service's parts start in servicesList, and whether the list must be rebuilt. */
  private readonly listAt = new Map<string, number>();
  private listStale = true;
  /** Parts to write over their places at the next list update: [where, parts]. */
  private inPlace: Array<[number, ServiceConfig[]]> = [];
  /** The config last handed on, and the service parts that came and went since (ConfigChanges). */
  private emitted: Config | undefined;
  private came: ServiceConfig[] = [];
  private gone: ServiceConfig[] = [];
  private settingsChanged = false;
  private servicesChanged = true;
  private ownNodeProblem = "";
  private lastEligible: boolean | undefined;

  private syncTimer: NodeJS.Timeout | undefined;
  private lastSyncMs = -Infinity;

  private core: CoreV1Api | undefined;
  /**
   * This node's VTEP MAC, chosen once: the one its Node already publishes (flannel.alpha.coreos.com/
   * backend-data, from an earlier run of this daemon or of flannel: peers have learned it, so it is
   * kept even when the underlay address has changed since), else the one derived from the underlay
   * address, which is then published.
   */
  private ownMac: string | undefined;
  /** The Node's flannel annotations when the last patch was sent: the same state again means the
   *  patch did not stick (another writer), and it is not sent twice. */
  private patchedFrom: string | undefined;
  private patching = false;
  /** After a refused patch, the same state is tried again at a Node event once this timer has run. */
  private patchRetry: NodeJS.Timeout | undefined;
  /** The last notes logged per Node, and the peers whose VNI differs from ours, so each is logged once. */
  private readonly nodeNotes = new Map<string, string>();
  private readonly vniWarned = new Set<string>();

  constructor(private readonly opts: KubeSourceOptions) {
    this.settings = opts.settings ?? {};
    const cidr = (text: string | undefined, flag: string, family: 4 | 6): Cidr | undefined => {
      if (text === undefined) return undefined;
      const c = parseCidr(text);
      if (!c || c.family !== family || c.hostBitsSet) throw new Error(`${flag} is ${JSON.stringify(text)}; expected an IPv${family} network like ${family === 4 ? "10.96.0.0/12" : "fd00:10:96::/108"}`);
      return c;
    };
    this.ctx = {
      serviceCIDR: cidr(this.settings.serviceCIDR ?? DEFAULT_SERVICE_CIDR, "serviceCIDR", 4) as Cidr,
      serviceCIDRv6: cidr(this.settings.serviceCIDRv6, "serviceCIDRv6", 6),
    };
    for (const x of this.settings.nodePortAddresses ?? []) {
      const c = x === "primary" ? undefined : parseCidr(x);
      if (x !== "primary" && (!c || c.hostBitsSet)) throw new Error(`nodePortAddresses has ${JSON.stringify(x)}; expected CIDRs like 10.0.0.0/8 or "primary"`);
    }
    this.minSyncMs = opts.minSyncPeriodMs ?? DEFAULT_MIN_SYNC_PERIOD_MS;
    if (!(this.minSyncMs >= 0)) throw new Error(`minSyncPeriod is ${this.minSyncMs} ms; expected 0 or more`);
    this.backoff = opts.backoffMs ?? { initial: 500, max: 30_000 };
    if (!opts.nodeName) throw new Error("the node name is empty; give --hostname-override NAME");
  }

  get nodeName(): string {
    return this.opts.nodeName;
  }

  /** The API server's URL, for logs. */
  get server(): string {
    return this.opts.kubeConfig.getCurrentCluster()?.server ?? "";
  }

  /** Lists and watches; reports the first config once all three kinds are listed and this Node is usable. */
  start(listener: (event: ConfigEvent) => void): void {
    this.listener = listener;
    const kc = this.opts.kubeConfig;
    const core = kc.makeApiClient(CoreV1Api), discovery = kc.makeApiClient(DiscoveryV1Api);
    this.core = core;
    const lists: Record<Kind, [string, () => Promise<KubernetesListObject<KubernetesObject>>]> = {
      services: ["/api/v1/services", () => core.listServiceForAllNamespaces({})],
      endpointslices: ["/apis/discovery.k8s.io/v1/endpointslices", () => discovery.listEndpointSliceForAllNamespaces({})],
      nodes: ["/api/v1/nodes", () => core.listNode({})],
    };
    for (const kind of ["nodes", "services", "endpointslices"] as const) {
      const [path, list] = lists[kind];
      const entry: (typeof this.informers)[number] = { kind, attempts: 0, lw: undefined as unknown as ListWatch<KubernetesObject> };
      const watch = new BookmarkWatch(kc, () => { entry.attempts = 0; });
      entry.lw = new ListWatch<KubernetesObject>(path, watch, async () => {
        const r = await list();
        this.stats.lists++;
        entry.attempts = 0;
        // The informer adds the items right after this resolves; the sync runs on a timer after that.
        if (!this.synced.has(kind)) { this.synced.add(kind); this.schedule(); }
        return r;
      }, false);
      entry.lw.on("add", (o) => this.onObject(kind, o));
      entry.lw.on("update", (o) => this.onObject(kind, o));
      entry.lw.on("delete", (o) => this.onDelete(kind, o));
      entry.lw.on("error", (err) => this.onError(entry, err));
      this.informers.push(entry);
      void entry.lw.start().catch((e: unknown) => this.onError(entry, e));
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.syncTimer);
    clearTimeout(this.patchRetry);
    for (const i of this.informers) { clearTimeout(i.timer); void i.lw.stop(); }
  }

  /** Slice trigger times carried by the configs reported since the last call (ms since the epoch). */
  takeTriggerTimes(): number[] {
    const t = this.triggers;
    this.triggers = [];
    return t;
  }

  private onError(entry: (typeof this.informers)[number], err: unknown): void {
    if (this.closed) return;
    this.stats.watchErrors++;
    entry.attempts++;
    const exp = Math.min(this.backoff.max, this.backoff.initial * 2 ** Math.min(entry.attempts - 1, 20));
    const delay = Math.round(exp * (0.5 + Math.random() / 2));
    const e = err as { message?: string; statusCode?: number; code?: string | number } | undefined;
    this.opts.log?.warn({ kind: entry.kind, err: e?.message ?? String(err), status: e?.statusCode ?? e?.code, retryMs: delay, attempt: entry.attempts },
      `${entry.kind}: list/watch failed; retrying`);
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => { if (!this.closed) void entry.lw.start().catch((x: unknown) => this.onError(entry, x)); }, delay);
  }

  private onObject(kind: Kind, o: KubernetesObject): void {
    if (this.closed) return;
    if (kind === "services") this.onService(o);
    else if (kind === "endpointslices") this.onSlice(o);
    else this.onNode(o);
    this.opts.onQueued?.();
    this.schedule();
  }

  private onDelete(kind: Kind, o: KubernetesObject): void {
    if (this.closed) return;
    const key = keyOf(o);
    if (key === undefined) return;
    if (kind === "services") {
      if (this.services.delete(key)) this.dirty.add(key);
    } else if (kind === "endpointslices") {
      this.dropSlice(key);
    } else if (this.nodes.delete(key)) {
      this.nodesDirty = true;
      if (key === this.opts.nodeName) this.setEligible(false);
    }
    this.opts.onQueued?.();
    this.schedule();
  }

  private reject(problems: Problem[]): void {
    for (const p of problems) this.pending.push({ path: p.path, message: `${p.message} (its last good version stays in force)` });
  }

  private onService(o: KubernetesObject): void {
    this.stats.servicesConverted++;
    const r = convertService(o, this.ctx);
    if ("problems" in r) return this.reject(r.problems);
    for (const n of r.ok.notes) this.opts.log?.info({ service: r.ok.key }, n);
    this.services.set(r.ok.key, r.ok);
    this.dirty.add(r.ok.key);
  }

  private dropSlice(key: string): void {
    const old = this.slices.get(key);
    if (!old) return;
    this.slices.delete(key);
    this.slicesByService.get(old.service)?.delete(key);
    this.dirty.add(old.service);
  }

  private onSlice(o: KubernetesObject): void {
    this.stats.slicesConverted++;
    const r = convertEndpointSlice(o);
    if ("ignored" in r) { const key = keyOf(o); if (key !== undefined) this.dropSlice(key); return; }
    if ("problems" in r) return this.reject(r.problems);
    const s = r.ok, old = this.slices.get(s.key);
    if (old && old.service !== s.service) this.dropSlice(s.key);
    this.slices.set(s.key, s);
    let set = this.slicesByService.get(s.service);
    if (!set) this.slicesByService.set(s.service, (set = new Set()));
    set.add(s.key);
    this.dirty.add(s.service);
    if (s.triggerMs !== undefined) this.triggers.push(s.triggerMs);
  }

  private onNode(o: KubernetesObject): void {
    this.stats.nodesConverted++;
    const r = convertNode(o);
    if ("problems" in r) return this.reject(r.problems);
    const notes = r.ok.notes.join("; ");
    if (notes !== (this.nodeNotes.get(r.ok.name) ?? "")) {
      if (notes) this.opts.log?.warn({ node: r.ok.name }, `${notes}; its VTEP MAC is derived from its address`);
      this.nodeNotes.set(r.ok.name, notes);
    }
    this.nodes.set(r.ok.name, r.ok);
    this.nodesDirty = true;
    if (r.ok.name === this.opts.nodeName) this.setEligible(r.ok.eligible);
  }

  private setEligible(e: boolean): void {
    if (e === this.lastEligible) return;
    this.lastEligible = e;
    this.opts.onNodeEligible?.(e);
  }

  /** kube-proxy's bounded-frequency runner: the first change after a quiet spell syncs at once (next tick), later ones wait for minSyncPeriod since the last sync. */
  private schedule(): void {
    if (this.closed || this.syncTimer) return;
    const wait = Math.max(0, this.lastSyncMs + this.minSyncMs - performance.now());
    this.syncTimer = setTimeout(() => { this.syncTimer = undefined; this.sync(); }, wait);
  }

  private sync(): void {
    if (this.closed || this.synced.size < 3) return; // the last list to finish schedules again
    this.lastSyncMs = performance.now();
    const problems = this.pending;
    this.pending = [];

    // A Service whose parts keep their number keeps its place in the list (written over in a copy);
    // any other change rebuilds the list from the per-object maps.
    for (const key of this.dirty) {
      const before = this.joined.get(key);
      if (before) this.gone.push(...before);
      const svc = this.services.get(key);
      if (!svc) { if (this.joined.delete(key)) this.listStale = true; continue; }
      const keys = this.slicesByService.get(key);
      const slices = keys ? [...keys].map((k) => this.slices.get(k) as KubeSlice) : [];
      const parts = joinService(svc, slices);
      this.joined.set(key, parts);
      const at = this.listAt.get(key);
      if (before && at !== undefined && before.length === parts.length) this.inPlace.push([at, parts]); else this.listStale = true;
      this.came.push(...parts);
      this.stats.serviceJoins++;
    }
    if (this.dirty.size > 0) { this.servicesChanged = true; this.dirty.clear(); }

    let nodeChanged = false;
    if (this.nodesDirty) {
      this.nodesDirty = false;
      nodeChanged = this.rebuildNodes(problems);
      this.settingsChanged ||= nodeChanged;
    }

    if (problems.length > 0) {
      this.stats.rejected++;
      this.listener?.({ kind: "rejected", problems });
    }
    if (!this.base || !(this.servicesChanged || nodeChanged)) return;
    if (this.servicesChanged) {
      if (this.listStale) {
        this.servicesList = [];
        this.listAt.clear();
        for (const [key, parts] of this.joined) { this.listAt.set(key, this.servicesList.length); for (const p of parts) this.servicesList.push(p); }
        this.listStale = false;
        this.inPlace = [];
      } else {
        this.servicesList = this.servicesList.slice();
        for (const [at, parts] of this.inPlace) parts.forEach((p, k) => { this.servicesList[at + k] = p; });
        this.inPlace = [];
      }
      this.servicesChanged = false;
    }
    this.stats.configs++;
    const config: Config = { ...this.base, services: this.servicesList, nodes: this.peers };
    const since = this.emitted;
    const changes = since && { since, came: this.came, gone: this.gone, settingsChanged: this.settingsChanged };
    this.emitted = config;
    this.came = [];
    this.gone = [];
    this.settingsChanged = false;
    this.listener?.(changes ? { kind: "config", config, changes } : { kind: "config", config });
  }

  /** Where NodePorts answer (see KubeNodeSettings.nodePortAddresses); undefined: the underlay address alone. */
  private nodePortAddresses(n: KubeNode): string[] | undefined {
    const sel = this.settings.nodePortAddresses;
    if (sel === undefined) return n.addresses.length > 0 ? n.addresses : undefined;
    const out = new Set<string>();
    if (sel.includes("primary")) for (const a of [n.internalIPv4, n.internalIPv6]) if (a !== undefined) out.add(a);
    const cidrs = sel.filter((x) => x !== "primary").map((x) => parseCidr(x) as Cidr);
    if (cidrs.length > 0) {
      for (const list of Object.values(networkInterfaces())) {
        for (const a of list ?? []) {
          const ip = parseIp(a.address.split("%")[0] as string);
          if (ip && cidrs.some((c) => cidrContains(c, ip))) out.add(formatIp(ip));
        }
      }
    }
    return out.size > 0 ? [...out] : undefined;
  }

  /** Peers and this node's part of the config from the Node objects; true when the config changes. */
  private rebuildNodes(problems: Problem[]): boolean {
    const me = this.opts.nodeName, s = this.settings;
    const peers: PeerNodeConfig[] = [];
    const vni = s.vxlan?.vni ?? 1;
    for (const n of this.nodes.values()) {
      if (n.name === me) continue;
      const p = peerOf(n);
      if ("skip" in p) continue; // a node that has just joined gets its pod CIDR a moment later
      peers.push(p);
      if (n.flannel?.vni !== undefined && n.flannel.vni !== vni && !this.vniWarned.has(n.name)) {
        this.vniWarned.add(n.name);
        this.opts.log?.warn({ node: n.name, vni: n.flannel.vni, ours: vni }, `Node ${n.name} publishes VXLAN VNI ${n.flannel.vni}, this node uses ${vni}: its VXLAN packets will be dropped (UnknownVni); give both the same VNI`);
      }
    }
    const peersChanged = JSON.stringify(peers) !== JSON.stringify(this.peers);
    this.peers = peers;

    const own = this.nodes.get(me);
    let why = "";
    if (!own) why = `is not in the API; name this node with --hostname-override (looked for ${JSON.stringify(me)} among ${this.nodes.size} nodes)`;
    else if (own.podCIDR === undefined) why = "has no IPv4 pod CIDR (spec.podCIDR); run the controller manager with --allocate-node-cidrs or set it";
    else if ((s.underlayIP ?? own.internalIPv4) === undefined) why = "has no IPv4 InternalIP in status.addresses; give --underlay-ip";
    if (why) {
      if (why !== this.ownNodeProblem) problems.push({ path: `Node ${me}`, message: `${why}; waiting for it${this.base ? " (the running config stays)" : ""}` });
      this.ownNodeProblem = why;
      return peersChanged && this.base !== undefined;
    }
    this.ownNodeProblem = "";
    const n = own as KubeNode;
    const underlayIP = (s.underlayIP ?? n.internalIPv4) as string;
    if (this.ownMac === undefined && parseIp(underlayIP)?.family === 4) this.ownMac = n.flannel?.vtepMAC ?? deriveVtepMac(underlayIP);
    const raw = {
      mode: s.mode ?? "tun",
      node: {
        name: me, underlayIP, podCIDR: n.podCIDR, ...(this.ownMac !== undefined && { vtepMAC: this.ownMac }),
        ...(n.podCIDRv6 !== undefined && s.serviceCIDRv6 !== undefined && { podCIDRv6: n.podCIDRv6 }),
        ...(s.underlayMTU !== undefined && { underlayMTU: s.underlayMTU }),
        nodeAddresses: s.nodeAddresses ?? this.nodePortAddresses(n),
        ...(n.zone !== undefined && { zone: n.zone }),
      },
      serviceCIDR: s.serviceCIDR ?? DEFAULT_SERVICE_CIDR,
      ...(s.serviceCIDRv6 !== undefined && { serviceCIDRv6: s.serviceCIDRv6 }),
      clusterCIDR: s.clusterCIDR ?? DEFAULT_CLUSTER_CIDR,
      ...(s.clusterCIDRv6 !== undefined && { clusterCIDRv6: s.clusterCIDRv6 }),
      ...(s.vxlan && { vxlan: s.vxlan }), ...(s.conntrack && { conntrack: s.conntrack }), ...(s.loadBalancing && { loadBalancing: s.loadBalancing }),
    };
    // The node-level rules of the file config (underlay outside the pod and service ranges, pod CIDR
    // inside the cluster CIDR, ...) checked on this node's part alone: cheap, and only when Nodes change.
    const v = validateConfig(raw);
    if ("problems" in v) {
      problems.push(...v.problems.map((p) => ({ path: `Node ${me} with the daemon's settings: ${p.path}`, message: p.message })));
      return peersChanged && this.base !== undefined;
    }
    const { services: _s, nodes: _n, ...base } = v.config;
    const changed = JSON.stringify(base) !== JSON.stringify(this.base);
    this.base = base;
    if (base.node.vtepMAC !== undefined) this.publishVtep(n, { vni: base.vxlan.vni, vtepMAC: base.node.vtepMAC, publicIP: base.node.underlayIP });
    return changed || peersChanged;
  }

  /** Brings this Node's flannel annotations to `v` with one merge patch, when they say otherwise. A
   *  refusal (no RBAC patch on nodes) is logged: the datapath works, but flannel nodes do not add
   *  this node, and a later change of its underlay address would change the MAC wasp peers derive. */
  private publishVtep(n: KubeNode, v: { vni: number; vtepMAC: string; publicIP: string }): void {
    const body = annotationPatch(n.flannelAnnotations, vtepAnnotations(v));
    const seen = JSON.stringify(n.flannelAnnotations);
    if (!body || !this.core || this.patching || seen === this.patchedFrom) return;
    this.patchedFrom = seen;
    this.patching = true;
    this.stats.nodePatches++;
    this.core.patchNode({ name: n.name, body }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch))
      .then(() => this.opts.log?.info({ node: n.name, vtepMac: v.vtepMAC, vni: v.vni, publicIP: v.publicIP }, "published this node's VXLAN endpoint on its Node (flannel's annotations)"))
      .catch((e: unknown) => {
        const err = e as { code?: number; message?: string };
        if (this.stats.nodePatchErrors++ === 0) {
          this.opts.log?.warn({ node: n.name, status: err.code, err: err.message },
            `cannot annotate Node ${n.name} with its VXLAN endpoint (${err.code ?? err.message}); flannel nodes will not reach it. Grant patch on nodes (deploy/rbac.yaml)`);
        }
        clearTimeout(this.patchRetry);
        this.patchRetry = setTimeout(() => { this.patchedFrom = undefined; }, PATCH_RETRY_MS);
        this.patchRetry.unref();
      })
      .finally(() => { this.patching = false; });
  }
}
