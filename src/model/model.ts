// The internal model: what the engine's tables should hold, in the engine's own keys. Every config
// source (the file, the Kubernetes API) produces a Config; buildModel turns it into entries (each
// service's drafted in service-drafts.ts), and model-delta.ts into the few ops a reload needs.

import { ServiceKind, Select, ServiceFlag, RouteKind } from "../engine/abi.js";
import type { Config, Protocol } from "../config/schema.js";
import { drain, drainAsync, every64, type Steps } from "./steps.js";
import { draftContext, serviceDrafts, type Draft, type DraftCache } from "./service-drafts.js";
import { formatCidr, formatIp, formatMac, ipv4ToU32, mappedPrefixLen, parseCidr, parseIp, type Cidr, type Family, type Ip } from "./addr.js";

export { ServiceKind, Select, ServiceFlag, RouteKind };

/** IANA protocol numbers, as the engine's key holds them. */
export const PROTO: Record<Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };

export interface ModelBackend {
  /** Canonical address text (the op's 16 bytes are made from it when the entry is sent: a
   *  Uint8Array per address was 8 MiB of heap at 30,000 services). */
  readonly addr: string;
  readonly port: number;
  readonly weight: number;
}

/** The key of an engine service entry: (address, port, protocol). */
export interface ServiceKey {
  /** `10.96.0.10:80/TCP`, `[fd00::a]:80/TCP`; a NodePort entry has its family's unspecified address, `0.0.0.0:30080/TCP`, `[::]:30080/TCP`. */
  readonly key: string;
  /** Canonical address text, as the backends' (ModelBackend.addr). */
  readonly addr: string;
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

/** A draft with its id. Written out, not spread: V8 gave every `{ ...draft, id }` a hidden class of its
 *  own (30,000 of them at 30,000 services, seen in a heap snapshot). */
export function entryOf(d: Omit<ServiceEntry, "id">, id: number): ServiceEntry {
  return {
    key: d.key, addr: d.addr, family: d.family, port: d.port, protocol: d.protocol, kind: d.kind, id,
    select: d.select, maglevSize: d.maglevSize, flags: d.flags, affinitySec: d.affinitySec, backends: d.backends,
    eligible: d.eligible, sourceRanges: d.sourceRanges, service: d.service, portName: d.portName, sig: d.sig,
  };
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
export const answersPing = (e: ServiceKey & { kind: ServiceKind }): boolean => e.kind !== ServiceKind.NodePort;

/** Model.vips of a set of entries. */
export function vipsOf(services: Iterable<ServiceEntry>): Map<string, number> {
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

export function* buildModelSteps(config: Config, prev: Model): Steps<Model> {
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
    else services.set(key, entryOf(d, old ? old.id : ids.allocate()));
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

