// The internal model: what the engine's tables should hold, in the engine's own keys. Every config
// source (the file now, the Kubernetes API later) produces a Config; buildModel turns it into entries,
// and diffModel into the few ops a reload needs.

import { ServiceKind, Select, ServiceFlag, RouteKind } from "../engine/abi.js";
import type { Config, ConfigChanges, Protocol, ServiceConfig, BackendConfig } from "../config/schema.js";
import { drain, drainAsync, every64, type Steps } from "./steps.js";
import { LayeredMap } from "./layered-map.js";
import { cidrContains, firstAddress, firstAddress6, formatCidr, formatIp, formatMac, ipv4ToU32, mappedPrefixLen, parseCidr, parseIp, type Cidr, type Family, type Ip } from "./addr.js";

export { ServiceKind, Select, ServiceFlag, RouteKind };

/** IANA protocol numbers, as the engine's key holds them. */
export const PROTO: Record<Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };

export interface ModelBackend {
  /** Canonical address text. */
  readonly addr: string;
  /** 16 bytes, network order, IPv4-mapped for IPv4: what the op carries. */
  readonly addr16: Uint8Array;
  readonly port: number;
  readonly weight: number;
}

/** The key of an engine service entry: (address, port, protocol). */
export interface ServiceKey {
  /** `10.96.0.10:80/TCP`, `[fd00::a]:80/TCP`; a NodePort entry has its family's unspecified address, `0.0.0.0:30080/TCP`, `[::]:30080/TCP`. */
  readonly key: string;
  readonly addr: string;
  readonly addr16: Uint8Array;
  /** The family of the key and of the backends; for a NodePort entry, one of the service's families. */
  readonly family: Family;
  readonly port: number;
  readonly protocol: Protocol;
}

/** A prefix new flows to an entry may come from (loadBalancerSourceRanges). */
export interface SourceRange {
  /** Canonical prefix text, `203.0.113.0/24`. */
  readonly text: string;
  readonly prefix16: Uint8Array;
  /** Counted of 128: an IPv4 /24 is 120. */
  readonly prefixLen128: number;
}

/** One engine service entry. */
export interface ServiceEntry extends ServiceKey {
  readonly kind: ServiceKind;
  /** Stable while the key exists; the engine reports it back (+1) in each packet's slot. */
  readonly id: number;
  readonly select: Select;
  /** Maglev table size (a prime) when configured; 0 lets the core choose (a prime ≥ 100 × eligible). */
  readonly maglevSize: number;
  /** ServiceFlag.* bits. */
  readonly flags: number;
  /** ClientIP affinity timeout; 0 without affinity. */
  readonly affinitySec: number;
  /** [eligible for new flows..., terminating-but-serving (keep their flows only)...] */
  readonly backends: readonly ModelBackend[];
  readonly eligible: number;
  /** New flows only from these sources; empty: from any (every entry but a LoadBalancer IP with ranges). */
  readonly sourceRanges: readonly SourceRange[];
  /** `namespace/name` and the port's name or number, for people (CLI, logs). */
  readonly service: string;
  readonly portName: string;
  /** Everything the engine gets except the id, as one string: equal entries have equal signatures. */
  readonly sig: string;
}

/** A route for a pod prefix: to this node (Local) or through VXLAN to another node (Remote). */
export interface Route {
  /** Canonical prefix text, the key. */
  readonly key: string;
  readonly prefix16: Uint8Array;
  /** Counted of 128: an IPv4 /24 is 120. */
  readonly prefixLen128: number;
  readonly family: Family;
  readonly kind: RouteKind;
  /** 0 for this node; 1.. for the others, stable per node name. */
  readonly nodeId: number;
  readonly nodeName: string;
  /** Underlay IPv4 of the node as a host-order u32; 0 for a Local route. */
  readonly underlay: number;
  /** The node's VTEP MAC, `02:0a:63:00:02:01`; all zero for a Local route. */
  readonly vtepMac: string;
  readonly sig: string;
}

export interface Model {
  readonly services: ReadonlyMap<string, ServiceEntry>;
  readonly routes: ReadonlyMap<string, Route>;
  /** Canonical address texts NodePorts answer on. */
  readonly localAddrs: ReadonlySet<string>;
  /**
   * The service addresses that answer ping, each with the number of entries on it: every ClusterIP,
   * externalIP and LoadBalancer IP with an entry. IPVS mode binds these addresses to a device, so the
   * node answers an echo request to them; the engine does it for an address with an echo marker
   * (its entry with port 0 and protocol 0). Absent: as the services say (vipsOf); a build keeps it so
   * that a reload counts only the entries that came and went.
   */
  readonly vips?: ReadonlyMap<string, number>;
  /** Node name → node id (this node is 0). */
  readonly nodeIds: ReadonlyMap<string, number>;
  /** The entries each service gave, kept so that a rebuild skips the services that did not change. */
  readonly drafts?: DraftCache;
}

/** Entries by the ServiceConfig object that gave them, valid for one drafting context. */
interface DraftCache {
  readonly context: string;
  readonly byService: WeakMap<ServiceConfig, readonly Draft[]>;
}
type Draft = Omit<ServiceEntry, "id">;

export interface ModelDelta {
  /** Drop everything in the engine first (a full load). */
  readonly clear: boolean;
  readonly deleteServices: readonly ServiceKey[];
  readonly upsertServices: readonly ServiceEntry[];
  readonly deleteRoutes: readonly Route[];
  readonly upsertRoutes: readonly Route[];
  readonly deleteLocalAddrs: readonly string[];
  readonly addLocalAddrs: readonly string[];
  /** Echo markers to remove and to add (canonical address texts; Model.vips). */
  readonly deleteVips: readonly string[];
  readonly addVips: readonly string[];
}

export const EMPTY_MODEL: Model = { services: new Map(), routes: new Map(), localAddrs: new Set(), nodeIds: new Map(), vips: new Map() };

/** Does this entry's address answer ping (Model.vips)? A NodePort's "any address" key does not. */
const answersPing = (e: ServiceKey & { kind: ServiceKind }): boolean => e.kind !== ServiceKind.NodePort;

/** Model.vips of a set of entries. */
function vipsOf(services: Iterable<ServiceEntry>): Map<string, number> {
  const vips = new Map<string, number>();
  for (const e of services) if (answersPing(e)) vips.set(e.addr, (vips.get(e.addr) ?? 0) + 1);
  return vips;
}

/**
 * Hands out small integer ids, reusing freed ones lowest first so ids stay dense (they index engine
 * tables). Ids of keys that persist are reserved up front, then new keys take the gaps.
 */
export class IdAllocator {
  private readonly used = new Set<number>();
  private next: number;

  constructor(private readonly first = 0) {
    this.next = first;
  }

  reserve(id: number): void {
    this.used.add(id);
  }

  allocate(): number {
    while (this.used.has(this.next)) this.next++;
    this.used.add(this.next);
    return this.next++;
  }
}

/**
 * The VTEP MAC of a node that does not name one: 02:a:b:c:d:01 for underlay a.b.c.d. 0x02 marks a
 * locally administered unicast address (IEEE 802: bit 1 of the first octet set, bit 0 clear), the
 * next four octets make it unique per underlay address, and the last is 01 for the first VTEP.
 * Every wasp node derives the same MAC for a peer, so no exchange is needed.
 */
export function deriveVtepMac(underlayIPv4: string): string {
  const ip = parseIp(underlayIPv4);
  if (!ip || ip.family !== 4) throw new TypeError(`"${underlayIPv4}" is not an IPv4 address`);
  return formatMac(Uint8Array.of(0x02, ...ip.bytes.subarray(12), 0x01));
}

/** This node's VTEP MAC: the configured one, else the one every peer derives from its underlay IP. */
export function localVtepMac(node: { underlayIP: string; vtepMAC?: string | undefined }): string {
  return (node.vtepMAC ?? deriveVtepMac(node.underlayIP)).toLowerCase();
}

const ZERO_MAC = "00:00:00:00:00:00";
/** The unspecified address of each family (0.0.0.0 as ::ffff:0.0.0.0, and ::): the key address of
 *  NodePort entries, the core's ANY_ADDR4 and ANY_ADDR. */
const ANY: Record<Family, Ip> = { 4: parseIp("0.0.0.0") as Ip, 6: parseIp("::") as Ip };

function serviceKey(addr: string, port: number, protocol: Protocol): string {
  return `${addr.includes(":") ? `[${addr}]` : addr}:${port}/${protocol}`;
}

/**
 * Orders a service's endpoints as kube-proxy chooses them: new flows go to the ready ones (of those,
 * only the ones `preferred` keeps when a topology applies); when none is ready, to those that are
 * serving and terminating; endpoints that are neither take no traffic. The endpoints left out of a
 * topology and the serving terminating ones that are not chosen follow the chosen ones, to keep
 * their flows (kube-proxy clears a UDP flow's conntrack entry only when its endpoint is gone).
 */
export function orderBackends<B extends Pick<BackendConfig, "ready" | "serving" | "terminating">>(endpoints: readonly B[], preferred?: (e: B) => boolean): { backends: B[]; eligible: number } {
  const ready: B[] = [], elsewhere: B[] = [], servingTerminating: B[] = [];
  for (const e of endpoints) {
    if (e.ready && !e.terminating) (preferred === undefined || preferred(e) ? ready : elsewhere).push(e);
    else if (e.serving && e.terminating) servingTerminating.push(e);
  }
  if (ready.length > 0) return { backends: [...ready, ...elsewhere, ...servingTerminating], eligible: ready.length };
  return { backends: [...servingTerminating, ...elsewhere], eligible: servingTerminating.length };
}

/** Where this node is, for topology-aware routing. */
export interface NodeTopology { name: string; zone?: string | undefined }

/**
 * Which ready endpoints take the new flows of a Cluster traffic policy, as kube-proxy decides from
 * the EndpointSlice hints (pkg/proxy/topology.go, topologyModeFromHints and availableForTopology):
 * when every ready endpoint has a node hint and one is hinted for this node, those hinted for this
 * node (PreferSameNode); else, when every ready endpoint has a zone hint and one is hinted for this
 * node's zone, those hinted for the zone (PreferClose, PreferSameZone); else all of them (undefined).
 * Hints are all-or-nothing: one ready endpoint without a hint, or none for this node or zone (a node
 * without a zone label among them), and the service uses every endpoint.
 */
export function topologyPreference(endpoints: readonly Pick<BackendConfig, "ready" | "hints">[], node: NodeTopology): ((e: Pick<BackendConfig, "hints">) => boolean) | undefined {
  let anyReady = false, allNodeHints = true, forNode = false, allZoneHints = true, forZone = false;
  for (const e of endpoints) {
    if (!e.ready) continue;
    anyReady = true;
    const nodes = e.hints?.forNodes ?? [], zones = e.hints?.forZones ?? [];
    if (nodes.length === 0) allNodeHints = false;
    else if (nodes.includes(node.name)) forNode = true;
    if (zones.length === 0) allZoneHints = false;
    else if (node.zone !== undefined && zones.includes(node.zone)) forZone = true;
  }
  if (!anyReady) return undefined;
  if (allNodeHints && forNode) return (e) => (e.hints?.forNodes ?? []).includes(node.name);
  if (allZoneHints && forZone) return (e) => node.zone !== undefined && (e.hints?.forZones ?? []).includes(node.zone);
  return undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * The engine tables a config asks for. Pure: the same config (and prev) give the same model. Entries
 * whose key is in `prev` keep its id; an entry that did not change is `prev`'s own object, so
 * diffModel(prev, next) sees it unchanged by identity.
 */
export function buildModel(config: Config, prev: Model = EMPTY_MODEL): Model {
  return drain(buildModelSteps(config, prev));
}

/** buildModel with breaks for the event loop: what the daemon uses for a reload. */
export function buildModelAsync(config: Config, prev: Model = EMPTY_MODEL): Promise<Model> {
  return drainAsync(buildModelSteps(config, prev));
}

/**
 * The model of `config` and its delta from `prev` (the model of `prevConfig`). When only services
 * changed, only the entries of the services that came or went are built: the cost follows the
 * change, not the number of services. Which services changed comes from the source's change set
 * when it has one relative to `prevConfig` (the Kubernetes source), else by object identity (the
 * config sources hand over unchanged services as the same objects). Otherwise: a full build and diff.
 */
export function updateModel(prevConfig: Config | undefined, config: Config, prev: Model, changes?: ConfigChanges): { model: Model; delta: ModelDelta } {
  return drain(updateModelSteps(prevConfig, config, prev, changes));
}

export function updateModelAsync(prevConfig: Config | undefined, config: Config, prev: Model, changes?: ConfigChanges): Promise<{ model: Model; delta: ModelDelta }> {
  return drainAsync(updateModelSteps(prevConfig, config, prev, changes));
}

/** The services of `a` not in `b` and those of `b` not in `a`, by identity (ignored ones left out).
 *  Sources keep the order of unchanged services, so a position-by-position pass finds most of it. */
function changedServices(a: readonly ServiceConfig[], b: readonly ServiceConfig[]): { gone: ServiceConfig[]; came: ServiceConfig[] } {
  let gone: ServiceConfig[] = [], came: ServiceConfig[] = [];
  if (a.length === b.length) {
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) { gone.push(a[i]!); came.push(b[i]!); }
    // A service that moved is in both lists: it neither came nor went.
    const g = new Set(gone), c = new Set(came);
    gone = gone.filter((s) => !c.has(s));
    came = came.filter((s) => !g.has(s));
  } else {
    const before = new Set(a), after = new Set(b);
    gone = a.filter((s) => !after.has(s));
    came = b.filter((s) => !before.has(s));
  }
  return { gone: gone.filter((s) => !s.ignored), came: came.filter((s) => !s.ignored) };
}

/** Everything but the services: what the routes, local addresses and drafting context come from. */
function settingsOf(c: Config): string {
  return JSON.stringify({ ...c, services: undefined });
}

function* updateModelSteps(prevConfig: Config | undefined, config: Config, prev: Model, changes?: ConfigChanges): Steps<{ model: Model; delta: ModelDelta }> {
  const cache = prev.drafts;
  // a change set counts only when it is relative to the config the model was built from
  const known = changes !== undefined && changes.since === prevConfig ? changes : undefined;
  const settingsChanged = known ? known.settingsChanged : prevConfig !== undefined && settingsOf(prevConfig) !== settingsOf(config);
  if (prevConfig === undefined || cache === undefined || settingsChanged) {
    const model = yield* buildModelSteps(config, prev);
    return { model, delta: diffModel(prev, model) };
  }
  const { gone, came } = known
    ? { gone: known.gone.filter((s) => !s.ignored), came: known.came.filter((s) => !s.ignored) }
    : changedServices(prevConfig.services, config.services);
  if (gone.length + came.length > Math.max(16, config.services.length / 8)) {
    const model = yield* buildModelSteps(config, prev);
    return { model, delta: diffModel(prev, model) };
  }
  const ctx = draftContext(config);
  const draftsOf = (s: ServiceConfig): readonly Draft[] => {
    let mine = cache.byService.get(s);
    if (!mine) { mine = serviceDrafts(s, ctx); cache.byService.set(s, mine); }
    return mine;
  };

  // The entries' changes are collected apart and laid over prev's map at the end (LayeredMap): the
  // cost follows the services that changed, not the number of entries.
  const changed = new Map<string, ServiceEntry | undefined>();
  const now = (key: string): ServiceEntry | undefined => (changed.has(key) ? changed.get(key) : prev.services.get(key));
  const removed = new Map<string, ServiceEntry>();
  for (const s of gone) {
    for (const d of draftsOf(s)) {
      const e = now(d.key);
      if (e && e.service === d.service && e.portName === d.portName) { changed.set(d.key, undefined); removed.set(d.key, e); }
    }
  }
  const incoming = came.flatMap((s) => draftsOf(s));
  // A key that comes back keeps its id, so no new key may take it meanwhile.
  const kept = incoming.flatMap((d) => { const old = prev.services.get(d.key); return old ? [old.id] : []; });
  let used: Set<number> | undefined;
  let nextId = 0;
  const allocate = (): number => {
    // Ids in use are collected once, and only when a key new to the engine needs one.
    used ??= new Set([...[...prev.services.values()].flatMap((e) => (now(e.key) ? [e.id] : [])), ...kept]);
    while (used.has(nextId)) nextId++;
    used.add(nextId);
    return nextId++;
  };
  const upserts: ServiceEntry[] = [];
  for (const d of incoming) {
    if (now(d.key)) continue; // another service has the key (validation rejects this)
    const old = prev.services.get(d.key);
    removed.delete(d.key);
    if (old && old.sig === d.sig) { changed.set(d.key, old); continue; }
    const e: ServiceEntry = { ...d, id: old ? old.id : allocate() };
    changed.set(d.key, e);
    upserts.push(e);
  }
  const setEntries: Array<[string, ServiceEntry]> = [], deleted: string[] = [];
  for (const [key, e] of changed) if (e) setEntries.push([key, e]); else deleted.push(key);
  const services = LayeredMap.of(prev.services).with(setEntries, deleted);
  yield;
  // Echo markers follow the addresses that gained their first entry or lost their last one.
  const before = prev.vips ?? vipsOf(prev.services.values());
  const counts = new Map<string, number>();
  const count = (e: ServiceEntry, by: number) => {
    if (answersPing(e)) counts.set(e.addr, (counts.get(e.addr) ?? before.get(e.addr) ?? 0) + by);
  };
  for (const e of removed.values()) count(e, -1);
  for (const e of upserts) if (!prev.services.has(e.key)) count(e, +1);
  const addVips: string[] = [], deleteVips: string[] = [], vipCounts: Array<[string, number]> = [], vipsGone: string[] = [];
  for (const [addr, n] of counts) {
    const was = before.get(addr) ?? 0;
    if (n > 0) vipCounts.push([addr, n]); else vipsGone.push(addr);
    if (was === 0 && n > 0) addVips.push(addr);
    else if (was > 0 && n <= 0) deleteVips.push(addr);
  }
  const vips = LayeredMap.of(before).with(vipCounts, vipsGone);
  const model: Model = { services, routes: prev.routes, localAddrs: prev.localAddrs, nodeIds: prev.nodeIds, vips, drafts: cache };
  return {
    model,
    delta: {
      clear: false, deleteServices: [...removed.values()], upsertServices: upserts, deleteRoutes: [], upsertRoutes: [],
      deleteLocalAddrs: [], addLocalAddrs: [], deleteVips, addVips,
    },
  };
}

/** An endpoint is on this node when its nodeName says so, and only then, as kube-proxy decides
 *  (pkg/proxy/endpointslicecache.go: IsLocal is nodeName == this node's name): an endpoint without
 *  a nodeName is remote even when its address lies in this node's pod CIDR. The traffic policies
 *  and the health check node ports go by this. The address argument is not consulted; it stays for
 *  the callers that pass it. */
export function localEndpointTest(node: Config["node"]): (b: Pick<BackendConfig, "nodeName">, ip?: Ip) => boolean {
  return (b) => b.nodeName === node.name;
}

/** How a config drafts its services' entries: which endpoints are local, where this node is, the backend selection. */
function draftContext(config: Config): DraftContext {
  const select = config.loadBalancing.mode === "maglev" ? Select.Maglev : Select.Random;
  const node = config.node;
  const v6 = node.nodeAddresses.map((a) => parseIp(a) as Ip).find((ip) => ip.family === 6);
  return {
    isLocal: localEndpointTest(node),
    node: { name: node.name, zone: node.zone },
    // kube-proxy's nodeIP of each family, and the source this node's own connections to a VIP take (wasp0's address)
    self: {
      4: { nodeIp: parseIp(node.underlayIP) as Ip, gateway: firstAddress(node.podCIDR) },
      6: { nodeIp: v6, gateway: node.podCIDRv6 === undefined ? undefined : firstAddress6(node.podCIDRv6) },
    },
    select,
    maglevSize: select === Select.Maglev ? config.loadBalancing.maglevTableSize ?? 0 : 0,
  };
}

function* buildModelSteps(config: Config, prev: Model): Steps<Model> {
  const node = config.node;
  const ctx = draftContext(config);
  const { select, maglevSize } = ctx;

  // Collect the entries first, ids after: a key present in prev must keep its id even when a new key
  // that comes earlier in this config would have taken that number. A service object seen by the
  // previous build (the config sources keep unchanged services' objects) gives its entries again.
  const context = `${node.name}|${node.zone ?? ""}|${node.underlayIP}|${node.nodeAddresses.join(",")}|${node.podCIDR}|${node.podCIDRv6 ?? ""}|${select}|${maglevSize}`;
  const cache: DraftCache = prev.drafts?.context === context ? prev.drafts : { context, byService: new WeakMap() };
  const drafts = new Map<string, Draft>();
  for (let i = 0; i < config.services.length; i++) {
    if (every64(i)) yield;
    const s = config.services[i]!;
    if (s.ignored) continue;
    let mine = cache.byService.get(s);
    if (!mine) {
      mine = serviceDrafts(s, ctx);
      cache.byService.set(s, mine);
    }
    // The first service to claim a key has it (validation rejects a key claimed twice).
    for (const d of mine) if (!drafts.has(d.key)) drafts.set(d.key, d);
  }

  const ids = new IdAllocator(0);
  for (const key of drafts.keys()) {
    const old = prev.services.get(key);
    if (old) ids.reserve(old.id);
  }
  const services = new Map<string, ServiceEntry>();
  let n = 0;
  for (const [key, d] of drafts) {
    if (every64(n++)) yield;
    const old = prev.services.get(key);
    if (old && old.sig === d.sig) services.set(key, old);
    else services.set(key, { ...d, id: old ? old.id : ids.allocate() });
  }

  // Routes: this node's pod prefixes are Local, every other node's are Remote with a stable node id.
  const nodeIdAlloc = new IdAllocator(1);
  for (const n of config.nodes) {
    const old = prev.nodeIds.get(n.name);
    if (old !== undefined && old !== 0) nodeIdAlloc.reserve(old);
  }
  const nodeIds = new Map<string, number>([[node.name, 0]]);
  const routes = new Map<string, Route>();
  const addRoute = (prefix: string, kind: RouteKind, nodeId: number, nodeName: string, underlay: number, vtepMac: string) => {
    const c = parseCidr(prefix) as Cidr;
    const key = formatCidr(c);
    const sig = `${kind}|${nodeId}|${nodeName}|${underlay}|${vtepMac}`;
    const old = prev.routes.get(key);
    routes.set(key, old && old.sig === sig ? old : {
      key, prefix16: c.bytes, prefixLen128: mappedPrefixLen(c), family: c.family, kind, nodeId, nodeName, underlay, vtepMac, sig,
    });
  };
  for (const p of [node.podCIDR, node.podCIDRv6]) if (p !== undefined) addRoute(p, RouteKind.Local, 0, node.name, 0, ZERO_MAC);
  for (const n of config.nodes) {
    const old = prev.nodeIds.get(n.name);
    const id = old !== undefined && old !== 0 ? old : nodeIdAlloc.allocate();
    nodeIds.set(n.name, id);
    const mac = (n.vtepMAC ?? deriveVtepMac(n.underlayIP)).toLowerCase();
    const underlay = ipv4ToU32(parseIp(n.underlayIP) as Ip);
    for (const p of [n.podCIDR, n.podCIDRv6]) if (p !== undefined) addRoute(p, RouteKind.Remote, id, n.name, underlay, mac);
  }

  const localAddrs = new Set(node.nodeAddresses.map((a) => formatIp(parseIp(a) as Ip)));
  return { services, routes, localAddrs, nodeIds, vips: vipsOf(services.values()), drafts: cache };
}

interface DraftContext {
  isLocal: (b: BackendConfig) => boolean;
  node: NodeTopology;
  self: Record<Family, { nodeIp: Ip | undefined; gateway: string | undefined }>;
  select: Select;
  maglevSize: number;
}

function serviceDrafts(s: ServiceConfig, ctx: DraftContext): Draft[] {
  const out = new Map<string, Draft>();
  const affinity = s.sessionAffinity === "ClientIP";
  // The families of the service's cluster IPs are those its NodePorts serve (IPv4 without any).
  const families = [...new Set(s.clusterIPs.map((t) => (parseIp(t) as Ip).family))];
  if (families.length === 0) families.push(4);
  const name = `${s.namespace}/${s.name}`;
  // Each endpoint parsed once per service, not once per entry.
  const endpoints = s.backends.map((b) => {
    const ip = parseIp(b.ip) as Ip;
    return { ready: b.ready, serving: b.serving, terminating: b.terminating, hints: b.hints, port: b.port, ip, addr: formatIp(ip), local: ctx.isLocal(b) };
  });

  for (const p of s.ports) {
    const portName = p.name ?? String(p.port);
    // Backends of one family per entry (the engine does not translate between families), filtered by
    // the traffic policy that applies to the entry, then ordered as kube-proxy picks them. Entries of
    // one port with the same family and policy share one list.
    const lists = new Map<string, { backends: ModelBackend[]; eligible: number; dropWhenEmpty: boolean }>();
    const backendsFor = (family: Family, policy: "Cluster" | "Local") => {
      const listKey = `${family}${policy}`;
      const cached = lists.get(listKey);
      if (cached) return cached;
      const ofFamily = endpoints.filter((b) => b.ip.family === family);
      // Topology hints narrow the Cluster policy's endpoints; a Local policy's are this node's already.
      const { backends, eligible } = policy === "Cluster"
        ? orderBackends(ofFamily, topologyPreference(ofFamily, ctx.node))
        : orderBackends(ofFamily.filter((b) => b.local));
      // kube-proxy rejects traffic to a service nothing can serve, but drops it silently when a
      // Local policy leaves this node without endpoints that another policy of the service reaches.
      const reachable = s.internalTrafficPolicy === "Cluster" || s.externalTrafficPolicy === "Cluster";
      const dropWhenEmpty = eligible === 0 && policy === "Local" && reachable && orderBackends(ofFamily).eligible > 0;
      const list = {
        eligible, dropWhenEmpty,
        backends: backends.map((b): ModelBackend => ({ addr: b.addr, addr16: b.ip.bytes, port: b.port ?? p.targetPort ?? p.port, weight: 1 })),
      };
      lists.set(listKey, list);
      return list;
    };
    const add = (addr: string, addr16: Uint8Array, family: Family, port: number, kind: ServiceKind, flags: number, policy: "Cluster" | "Local") => {
      const key = serviceKey(addr, port, p.protocol);
      if (out.has(key)) return; // the same address listed twice in one service (validation rejects it across services)
      const { backends, eligible, dropWhenEmpty } = backendsFor(family, policy);
      const d = {
        key, addr, addr16, family, port, protocol: p.protocol,
        kind, select: ctx.select, maglevSize: ctx.maglevSize,
        flags: flags | (affinity ? ServiceFlag.AFFINITY : 0) | (dropWhenEmpty ? ServiceFlag.DROP_WHEN_EMPTY : 0),
        affinitySec: affinity ? s.affinityTimeoutSec : 0,
        backends, eligible, sourceRanges: kind === ServiceKind.LoadBalancer ? sourceRangesFor(addr, family) : [],
        service: name, portName,
      };
      out.set(key, { ...d, sig: serviceSig(d) });
    };
    // kube-proxy's firewall (proxier.go, "loadBalancerSourceRanges"): the ranges of the entry's family;
    // when one holds the node's own IP (allowFromNode) the node's connections pass too: kube-proxy
    // lets the VIP itself through as a source, and here they also come from wasp0's address.
    const sourceRangesFor = (addr: string, family: Family): SourceRange[] => {
      const mine = s.loadBalancerSourceRanges.map((t) => parseCidr(t) as Cidr).filter((c) => c.family === family);
      if (mine.length === 0) return [];
      const self = ctx.self[family];
      const hosts = self.nodeIp !== undefined && mine.some((c) => cidrContains(c, self.nodeIp as Ip))
        ? [addr, ...(self.gateway === undefined ? [] : [self.gateway])].map((a) => parseCidr(`${a}/${family === 4 ? 32 : 128}`) as Cidr)
        : [];
      return [...mine, ...hosts].map((c) => ({ text: formatCidr(c), prefix16: c.bytes, prefixLen128: mappedPrefixLen(c) }));
    };
    const addIp = (text: string, kind: ServiceKind, flags: number, policy: "Cluster" | "Local") => {
      const ip = parseIp(text) as Ip;
      add(formatIp(ip), ip.bytes, ip.family, p.port, kind, flags, policy);
    };
    // kube-proxy masquerades traffic from outside the cluster to a ClusterIP (with --cluster-cidr) and to
    // the external kinds under externalTrafficPolicy Cluster; Local keeps the client's source address.
    const external = s.externalTrafficPolicy;
    const extFlags = external === "Cluster" ? ServiceFlag.MASQUERADE_EXTERNAL : 0;
    for (const t of s.clusterIPs) addIp(t, ServiceKind.ClusterIp, ServiceFlag.MASQUERADE_EXTERNAL, s.internalTrafficPolicy);
    for (const t of s.externalIPs) addIp(t, ServiceKind.ExternalIp, extFlags, external);
    for (const t of s.loadBalancerIPs) addIp(t, ServiceKind.LoadBalancer, extFlags, external);
    if (p.nodePort !== undefined && s.type !== "ClusterIP") {
      // One entry per family the service has (a dual-stack service serves its NodePort on both).
      for (const family of families) {
        add(formatIp(ANY[family]), ANY[family].bytes, family, p.nodePort, ServiceKind.NodePort, extFlags | ServiceFlag.ANY_LOCAL_ADDR, external);
      }
    }
  }
  return [...out.values()];
}

function serviceSig(d: Omit<ServiceEntry, "id" | "sig">): string {
  let s = `${d.family}|${d.kind}|${d.select}|${d.maglevSize}|${d.flags}|${d.affinitySec}|${d.eligible}|${d.service}|${d.portName}`;
  for (const b of d.backends) s += `|${b.addr},${b.port},${b.weight}`;
  for (const r of d.sourceRanges) s += `|from ${r.text}`;
  return s;
}

function sameService(a: ServiceEntry, b: ServiceEntry): boolean {
  return a === b || (a.id === b.id && a.sig === b.sig && sameBytes(a.addr16, b.addr16));
}

function sameRoute(a: Route, b: Route): boolean {
  return a === b || a.sig === b.sig;
}

/**
 * What changed from prev to next: upserts for new or changed entries, deletes for vanished ones.
 * Unchanged entries cost one map lookup and an identity compare (buildModel reuses prev's objects).
 */
export function diffModel(prev: Model, next: Model): ModelDelta {
  const deleteServices: ServiceKey[] = [], upsertServices: ServiceEntry[] = [];
  for (const [key, e] of next.services) {
    const old = prev.services.get(key);
    if (!old || !sameService(old, e)) upsertServices.push(e);
  }
  for (const [key, e] of prev.services) if (!next.services.has(key)) deleteServices.push(e);

  const deleteRoutes: Route[] = [], upsertRoutes: Route[] = [];
  for (const [key, r] of next.routes) {
    const old = prev.routes.get(key);
    if (!old || !sameRoute(old, r)) upsertRoutes.push(r);
  }
  for (const [key, r] of prev.routes) if (!next.routes.has(key)) deleteRoutes.push(r);

  const addLocalAddrs = [...next.localAddrs].filter((a) => !prev.localAddrs.has(a));
  const deleteLocalAddrs = [...prev.localAddrs].filter((a) => !next.localAddrs.has(a));
  const prevVips = prev.vips ?? vipsOf(prev.services.values()), nextVips = next.vips ?? vipsOf(next.services.values());
  const addVips = [...nextVips.keys()].filter((a) => !prevVips.has(a));
  const deleteVips = [...prevVips.keys()].filter((a) => !nextVips.has(a));
  return { clear: false, deleteServices, upsertServices, deleteRoutes, upsertRoutes, deleteLocalAddrs, addLocalAddrs, deleteVips, addVips };
}

/** A full load: Clear, then every entry of the model. */
export function fullDelta(model: Model): ModelDelta {
  return {
    clear: true,
    deleteServices: [], upsertServices: [...model.services.values()],
    deleteRoutes: [], upsertRoutes: [...model.routes.values()],
    deleteLocalAddrs: [], addLocalAddrs: [...model.localAddrs],
    deleteVips: [], addVips: [...(model.vips ?? vipsOf(model.services.values())).keys()],
  };
}

/** True when a delta changes nothing. */
export function isEmptyDelta(d: ModelDelta): boolean {
  return !d.clear && d.deleteServices.length === 0 && d.upsertServices.length === 0 && d.deleteRoutes.length === 0 &&
    d.upsertRoutes.length === 0 && d.deleteLocalAddrs.length === 0 && d.addLocalAddrs.length === 0 &&
    d.deleteVips.length === 0 && d.addVips.length === 0;
}

/**
 * What the engine holds after applying `delta` to `model` (node ids as its routes say): the
 * host's record of the engine's tables, and the check that diff(a, b) applied to a gives b.
 */
export function applyDelta(model: Model, delta: ModelDelta): Model {
  const services = new Map(delta.clear ? [] : model.services);
  const routes = new Map(delta.clear ? [] : model.routes);
  const localAddrs = new Set(delta.clear ? [] : model.localAddrs);
  for (const k of delta.deleteServices) services.delete(k.key);
  for (const e of delta.upsertServices) services.set(e.key, e);
  for (const r of delta.deleteRoutes) routes.delete(r.key);
  for (const r of delta.upsertRoutes) routes.set(r.key, r);
  for (const a of delta.deleteLocalAddrs) localAddrs.delete(a);
  for (const a of delta.addLocalAddrs) localAddrs.add(a);
  const nodeIds = new Map<string, number>();
  for (const r of routes.values()) nodeIds.set(r.nodeName, r.nodeId);
  // The markers the ops leave, each with the entries on its address (0 for a marker left without one).
  const markers = new Set(delta.clear ? [] : (model.vips ?? vipsOf(model.services.values())).keys());
  for (const a of delta.deleteVips) markers.delete(a);
  for (const a of delta.addVips) markers.add(a);
  const counts = vipsOf(services.values());
  const vips = new Map([...markers].map((a) => [a, counts.get(a) ?? 0]));
  return { services, routes, localAddrs, nodeIds, vips };
}

/** A backend a reload took from an entry of `protocol`: the entry's address (undefined for a
 *  NodePort's "any address" entry) and port, and the backend. */
export interface GoneBackend { vip: string | undefined; port: number; backend: string; backendPort: number }

/**
 * The backends of `protocol` entries that `delta` takes away from `prev` (an entry deleted, or
 * upserted without one it had, ready or terminating): what kube-proxy clears from conntrack for UDP.
 */
export function goneBackends(prev: Model, delta: ModelDelta, protocol: Protocol): GoneBackend[] {
  const out: GoneBackend[] = [];
  const upserted = new Map(delta.upsertServices.map((e) => [e.key, e]));
  const gone = (old: ServiceEntry, now: ServiceEntry | undefined) => {
    if (old.protocol !== protocol) return;
    const keep = new Set((now?.backends ?? []).map((b) => `${b.addr}|${b.port}`));
    const any = (old.flags & ServiceFlag.ANY_LOCAL_ADDR) !== 0;
    for (const b of old.backends) {
      if (!keep.has(`${b.addr}|${b.port}`)) out.push({ vip: any ? undefined : old.addr, port: old.port, backend: b.addr, backendPort: b.port });
    }
  };
  for (const e of delta.deleteServices) { const old = prev.services.get(e.key); if (old) gone(old, undefined); }
  for (const [key, e] of upserted) { const old = prev.services.get(key); if (old) gone(old, e); }
  return out;
}
