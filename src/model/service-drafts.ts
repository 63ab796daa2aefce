// A service's engine entries before they have ids (drafts): its ports times its addresses, each with
// the backends of its family that its traffic policy and topology give, ordered as kube-proxy picks
// them. A draft depends on the service and the drafting context alone, so drafts are kept per
// service object (DraftCache) and a reload drafts only the services that changed.

import { ServiceKind, Select, ServiceFlag } from "../engine/abi.js";
import type { Config, Protocol, ServiceConfig, BackendConfig } from "../config/schema.js";
import type { ModelBackend, ServiceEntry, SourceRange } from "./model.js";
import { cidrContains, firstAddress, firstAddress6, formatCidr, formatIp, mappedPrefixLen, parseCidr, parseIp, type Cidr, type Family, type Ip } from "./addr.js";

/** Entries by the ServiceConfig object that gave them, valid for one drafting context. */
export interface DraftCache {
  readonly context: string;
  readonly byService: WeakMap<ServiceConfig, readonly Draft[]>;
}
export type Draft = Omit<ServiceEntry, "id">;


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

/** An endpoint is on this node when its nodeName says so, and only then, as kube-proxy decides
 *  (pkg/proxy/endpointslicecache.go: IsLocal is nodeName == this node's name): an endpoint without
 *  a nodeName is remote even when its address lies in this node's pod CIDR. The traffic policies
 *  and the health check node ports go by this. */
export function localEndpointTest(node: Config["node"]): (b: Pick<BackendConfig, "nodeName">) => boolean {
  return (b) => b.nodeName === node.name;
}

/** How a config drafts its services' entries: which endpoints are local, where this node is, the backend selection. */
export function draftContext(config: Config): DraftContext {
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

export interface DraftContext {
  isLocal: (b: BackendConfig) => boolean;
  node: NodeTopology;
  self: Record<Family, { nodeIp: Ip | undefined; gateway: string | undefined }>;
  select: Select;
  maglevSize: number;
}

export function serviceDrafts(s: ServiceConfig, ctx: DraftContext): Draft[] {
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
        backends: backends.map((b): ModelBackend => ({ addr: b.addr, port: b.port ?? p.targetPort ?? p.port, weight: 1 })),
      };
      lists.set(listKey, list);
      return list;
    };
    const add = (addr: string, family: Family, port: number, kind: ServiceKind, flags: number, policy: "Cluster" | "Local") => {
      const key = serviceKey(addr, port, p.protocol);
      if (out.has(key)) return; // the same address listed twice in one service (validation rejects it across services)
      const { backends, eligible, dropWhenEmpty } = backendsFor(family, policy);
      const d = {
        key, addr, family, port, protocol: p.protocol,
        kind, select: ctx.select, maglevSize: ctx.maglevSize,
        flags: flags | (affinity ? ServiceFlag.AFFINITY : 0) | (dropWhenEmpty ? ServiceFlag.DROP_WHEN_EMPTY : 0),
        affinitySec: affinity ? s.affinityTimeoutSec : 0,
        backends, eligible, sourceRanges: kind === ServiceKind.LoadBalancer ? sourceRangesFor(addr, family) : [],
        service: name, portName, sig: "",
      };
      d.sig = serviceSig(d);
      out.set(key, d);
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
      add(formatIp(ip), ip.family, p.port, kind, flags, policy);
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
        add(formatIp(ANY[family]), family, p.nodePort, ServiceKind.NodePort, extFlags | ServiceFlag.ANY_LOCAL_ADDR, external);
      }
    }
  }
  return [...out.values()];
}

function serviceSig(d: Omit<ServiceEntry, "id" | "sig">): string {
  // join() makes one flat string; `+` and template literals made a tree of ~25 cons strings per
  // entry (~20 MiB at 30,000 services, seen in a heap snapshot)
  const parts: Array<string | number> = [d.family, d.kind, d.select, d.maglevSize, d.flags, d.affinitySec, d.eligible, d.service, d.portName];
  for (const b of d.backends) parts.push(`${b.addr},${b.port},${b.weight}`);
  for (const r of d.sourceRanges) parts.push(`from ${r.text}`);
  return parts.join("|");
}
