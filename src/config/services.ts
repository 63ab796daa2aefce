// One service's rules (normalizeService) and the rules among services and nodes (CrossCheck): the
// half of validation that relates a field to others. validate.ts runs it over a whole config;
// json-text.ts re-runs it for the services a change touched, against the claims of all the others.

import type { z } from "zod";
import { cidrContains, cidrsOverlap, formatCidr, formatIp, parseCidr, parseIp, type Cidr, type Family, type Ip } from "../model/addr.js";
import { every64, type Steps } from "../model/steps.js";
import { VXLAN_OVERHEAD } from "../model/vxlan.js";
import {
  BackendSchema, DEFAULT_AFFINITY_TIMEOUT_SEC, describe, TOP_LEVEL,
  type BackendConfig, type PeerNodeConfig, type Problem, type ServiceConfig, type ServiceInput,
} from "./schema.js";

/** A validated service, and which spelling the file used for its cluster IPs, for problem paths. */
export type Entry = { s: ServiceConfig; ipKey: "clusterIP" | "clusterIPs" };
/** A validated service at its index in the services list. */
export type ServiceItem = { i: number } & Entry;
/** The top-level settings that passed their schema. */
export type Top = { -readonly [K in keyof typeof TOP_LEVEL]?: z.output<(typeof TOP_LEVEL)[K]> };

export function normalizeService(s: ServiceInput, at: string, problems: Problem[]): ServiceConfig | undefined {
  let clusterIPs = s.clusterIPs ?? (s.clusterIP !== undefined ? [s.clusterIP] : []);
  if (s.clusterIP !== undefined && s.clusterIPs !== undefined && s.clusterIPs[0] !== s.clusterIP) {
    problems.push({ path: `${at}.clusterIP`, message: `is ${describe(s.clusterIP)} but clusterIPs[0] is ${describe(s.clusterIPs[0])}; they must agree (or give only clusterIPs)` });
    return undefined;
  }
  const headless = clusterIPs.includes("None");
  if (headless && clusterIPs.length > 1) {
    problems.push({ path: `${at}.clusterIPs`, message: 'mixes "None" with addresses; a headless service has clusterIPs ["None"] only' });
    return undefined;
  }
  if (headless) clusterIPs = [];
  if (s.sessionAffinityConfig !== undefined && s.sessionAffinity !== "ClientIP") {
    problems.push({ path: `${at}.sessionAffinityConfig`, message: 'is set but sessionAffinity is "None"; set sessionAffinity: ClientIP or remove it' });
  }
  return {
    name: s.name,
    namespace: s.namespace,
    type: s.type,
    ignored: headless || s.type === "ExternalName",
    clusterIPs,
    externalIPs: s.externalIPs,
    loadBalancerIPs: s.loadBalancerIPs,
    loadBalancerSourceRanges: s.loadBalancerSourceRanges,
    ports: s.ports,
    sessionAffinity: s.sessionAffinity,
    affinityTimeoutSec: s.sessionAffinityConfig?.clientIP.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SEC,
    externalTrafficPolicy: s.externalTrafficPolicy,
    internalTrafficPolicy: s.internalTrafficPolicy,
    ...(s.healthCheckNodePort !== undefined ? { healthCheckNodePort: s.healthCheckNodePort } : {}),
    backends: s.backends.map(backendOf),
  };
}

/** A backend as the engine's model reads it. Written out, not spread: V8 gave every `{ ...b, serving }`
 *  a hidden class of its own (60,000 of them, ~10 MiB, at 30,000 services; seen in a heap snapshot). */
function backendOf(b: z.output<typeof BackendSchema>): BackendConfig {
  const o: BackendConfig = { ip: b.ip, ready: b.ready, serving: b.serving ?? b.ready, terminating: b.terminating };
  if (b.port !== undefined) o.port = b.port;
  if (b.nodeName !== undefined) o.nodeName = b.nodeName;
  if (b.hints !== undefined) o.hints = b.hints;
  return o;
}

const ip = (text: string): Ip => parseIp(text) as Ip; // only on text the schema accepted
const cidr = (text: string | undefined): Cidr | undefined => (text === undefined ? undefined : parseCidr(text));
const inside = (inner: Cidr, outer: Cidr) => cidrsOverlap(inner, outer) && inner.prefixLen >= outer.prefixLen;

/** Who holds a name, a cluster IP, a (VIP, port, protocol) key or a node port, and its words. */
type Owner = { s: ServiceConfig; who: string };
type Holder = Owner | ServiceItem;
/** The words for a claim's holder: `services[3] (default/web)`. Names, cluster IPs and entry keys
 *  (three per service, kept for the life of a config) hold the item itself and make the words only
 *  for a problem; at 30,000 services, words made up front took about 10 MiB. */
const whoOf = (o: ServiceItem) => `services[${o.i}] (${o.s.namespace}/${o.s.name})`;

/**
 * What the services claim that only one may hold (names, cluster IPs, entry keys, node ports), so
 * that a service is checked against all the others by lookups. A journal, when begun, records every
 * change: an incremental check that finds a problem rolls them back.
 */
export class Claims {
  readonly names = new Map<string, ServiceItem>();
  readonly clusterIps = new Map<string, ServiceItem>();
  readonly vips = new Map<string, ServiceItem>();
  readonly nodePorts = new Map<string, Owner>();
  private journal: Array<[Map<string, Holder>, string, Holder | undefined]> | undefined;

  set<H extends Holder>(m: Map<string, H>, key: string, owner: H): void {
    this.journal?.push([m, key, m.get(key)]);
    m.set(key, owner);
  }

  private drop(m: Map<string, Holder>, key: string, s: ServiceConfig): void {
    const o = m.get(key);
    if (o?.s !== s) return;
    this.journal?.push([m, key, o]);
    m.delete(key);
  }

  /** Frees what s holds (s passed every check when it took it). */
  release(s: ServiceConfig): void {
    this.drop(this.names, `${s.namespace}/${s.name}`, s);
    if (s.ignored) return;
    for (const t of s.clusterIPs) this.drop(this.clusterIps, formatIp(ip(t)), s);
    for (const { key } of vipKeys(s)) this.drop(this.vips, key, s);
    for (const p of s.ports) if (p.nodePort !== undefined) this.drop(this.nodePorts, `${p.nodePort}/${p.protocol}`, s);
    if (s.healthCheckNodePort !== undefined) this.drop(this.nodePorts, `${s.healthCheckNodePort}/TCP`, s);
  }

  begin(): void { this.journal = []; }
  commit(): void { this.journal = undefined; }
  rollback(): void {
    const j = this.journal ?? [];
    for (let k = j.length - 1; k >= 0; k--) {
      const [m, key, o] = j[k]!;
      if (o) m.set(key, o); else m.delete(key);
    }
    this.journal = undefined;
  }
}

/** The engine entry keys of a service's addresses (cluster IPs, then external and load balancer IPs;
 *  `a` indexes that list) on each of its ports, each once. */
function vipKeys(s: ServiceConfig): Array<{ key: string; text: string; a: number }> {
  const out: Array<{ key: string; text: string; a: number }> = [], seen = new Set<string>();
  [...s.clusterIPs, ...s.externalIPs, ...s.loadBalancerIPs].forEach((text, a) => {
    const canon = formatIp(ip(text));
    for (const p of s.ports) {
      const key = `${canon.includes(":") ? `[${canon}]` : canon}:${p.port}/${p.protocol}`;
      if (seen.has(key)) continue; // the same address twice in one service: one entry
      seen.add(key);
      out.push({ key, text, a });
    }
  });
  return out;
}

export class CrossCheck {
  private readonly svc: Partial<Record<Family, Cidr>>;
  private readonly cluster: Partial<Record<Family, Cidr>>;
  private readonly nodeNames: Set<string>;
  /** With node or nodes[] broken, a nodeName cannot be judged unknown. */
  private readonly nodesKnown: boolean;
  readonly claims = new Claims();

  constructor(
    private readonly top: Top,
    private readonly failed: ReadonlySet<string>,
    private readonly services: ServiceItem[],
    private readonly nodes: Array<{ i: number; n: PeerNodeConfig }>,
    /** Where problems go; an incremental check swaps in its own list. */
    public problems: Problem[],
  ) {
    this.svc = { 4: cidr(top.serviceCIDR), 6: cidr(top.serviceCIDRv6) };
    this.cluster = { 4: cidr(top.clusterCIDR), 6: cidr(top.clusterCIDRv6) };
    this.nodeNames = new Set<string>(nodes.map((x) => x.n.name));
    if (top.node) this.nodeNames.add(top.node.name);
    this.nodesKnown = top.node !== undefined && (top.nodes ?? []).length === nodes.length;
  }

  private problem(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  *run(): Steps<void> {
    this.checkCidrs();
    this.checkNodes();
    yield* this.checkServices();
    this.checkMaglev();
  }

  private checkCidrs(): void {
    for (const f of [4, 6] as const) {
      const s = this.svc[f], c = this.cluster[f], v = f === 4 ? "" : "v6";
      if (s && c && cidrsOverlap(s, c)) {
        this.problem(`serviceCIDR${v}`, `is ${describe(this.top[`serviceCIDR${v}`])}, overlapping clusterCIDR${v} ${this.top[`clusterCIDR${v}`]}; service and pod addresses must be apart`);
      }
    }
    const node = this.top.node;
    if (!node) return;
    const u = ip(node.underlayIP);
    for (const [name, c] of [["clusterCIDR", this.cluster[4]], ["serviceCIDR", this.svc[4]]] as const) {
      if (c && cidrContains(c, u)) this.problem("node.underlayIP", `is ${describe(node.underlayIP)}, inside ${name} ${this.top[name]}; the underlay address is outside the cluster's pod and service ranges`);
    }
    if (node.podCIDRv6 !== undefined && node.underlayMTU - VXLAN_OVERHEAD < 1280) {
      this.problem("node.underlayMTU", `is ${node.underlayMTU}; with podCIDRv6 it must be at least ${1280 + VXLAN_OVERHEAD} (IPv6 needs 1280 inside VXLAN's ${VXLAN_OVERHEAD} bytes)`);
    }
  }

  private checkNodes(): void {
    const node = this.top.node;
    type Item = { path: string; what: string; c: Cidr; rank: number };
    const items: Item[] = [];
    for (const f of [4, 6] as const) {
      const s = this.svc[f];
      if (s) items.push({ path: `serviceCIDR${f === 6 ? "v6" : ""}`, what: "the service CIDR", c: s, rank: 0 });
    }
    const podCidrsOf = (n: { podCIDR: string; podCIDRv6?: string | undefined }, at: string, what: string, rank: number) => {
      for (const [key, text] of [["podCIDR", n.podCIDR], ["podCIDRv6", n.podCIDRv6]] as const) {
        const c = cidr(text);
        if (!c) continue;
        items.push({ path: `${at}.${key}`, what, c, rank });
        const cl = this.cluster[c.family];
        const clKey = c.family === 4 ? "clusterCIDR" : "clusterCIDRv6";
        if (cl && !inside(c, cl)) this.problem(`${at}.${key}`, `is ${describe(text)}, outside ${clKey} ${this.top[clKey]}; a node's pod CIDR is part of the cluster CIDR`);
      }
    };
    if (node) podCidrsOf(node, "node", "this node's pod CIDR", 1);

    const names = new Map<string, string>(), underlays = new Map<string, string>();
    if (node) { names.set(node.name, "node.name (this node)"); underlays.set(node.underlayIP, "node.underlayIP (this node)"); }
    if (this.nodes.length > 0xfffe) this.problem("nodes", `has ${this.nodes.length} nodes; at most 65534 fit the engine's 16-bit node id`);
    for (const { i, n } of this.nodes) {
      const at = `nodes[${i}]`;
      const sameName = names.get(n.name);
      if (sameName) this.problem(`${at}.name`, `is ${describe(n.name)}, already used by ${sameName}; node names are unique`);
      else names.set(n.name, `${at}.name`);
      const u = formatIp(ip(n.underlayIP));
      const sameUnderlay = underlays.get(u);
      if (sameUnderlay) this.problem(`${at}.underlayIP`, `is ${describe(n.underlayIP)}, already used by ${sameUnderlay}; each node has its own underlay address`);
      else underlays.set(u, `${at}.underlayIP`);
      podCidrsOf(n, at, `the pod CIDR of ${at} (${n.name})`, 2 + i);
    }
    // Sorted by network address, a prefix overlaps an earlier one exactly when it starts before the
    // furthest end seen so far: O(n log n) instead of comparing every pair.
    const range = (c: Cidr) => {
      let start = 0n;
      for (const b of c.bytes) start = (start << 8n) | BigInt(b);
      const hostBits = BigInt((c.family === 4 ? 32 : 128) - c.prefixLen);
      return { start, end: start + (1n << hostBits) - 1n };
    };
    const ranged = items.map((it) => ({ ...it, ...range(it.c) })).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.end > b.end ? -1 : 1));
    let open: (typeof ranged)[number] | undefined;
    for (const cur of ranged) {
      if (open && cur.c.family === open.c.family && cur.start <= open.end) {
        const [blamed, other] = cur.rank >= open.rank ? [cur, open] : [open, cur];
        this.problem(blamed.path, `is "${formatCidr(blamed.c)}", overlapping ${other.what} ${formatCidr(other.c)} (${other.path}); pod CIDRs and the service CIDR must not overlap`);
      }
      if (!open || cur.c.family !== open.c.family || cur.end > open.end) open = cur;
    }
  }

  private *checkServices(): Steps<void> {
    for (const [n, item] of this.services.entries()) {
      if (every64(n)) yield;
      this.checkService(item);
    }
  }

  /** The rules of one service, among the services whose claims are in this.claims (its own go in). */
  checkService(item: ServiceItem): void {
    const { i, s, ipKey } = item;
    const { claims, nodeNames, nodesKnown } = this;
    {
      const at = `services[${i}]`, who = `${at} (${s.namespace}/${s.name})`;
      const nameKey = `${s.namespace}/${s.name}`;
      const sameName = claims.names.get(nameKey);
      if (sameName) this.problem(`${at}.name`, `is ${describe(s.name)} in namespace ${describe(s.namespace)}, already used by services[${sameName.i}]; a service name is unique in its namespace`);
      else claims.set(claims.names, nameKey, item);
      if (s.ignored) return;

      // Cluster IPs: one per family, each inside that family's service CIDR, each used once.
      const families = new Set<Family>();
      if (s.clusterIPs.length === 0) {
        this.problem(`${at}.clusterIPs`, `is missing; a ${s.type} service needs a cluster IP inside serviceCIDR ${this.top.serviceCIDR ?? ""}`.trimEnd());
      }
      if (s.clusterIPs.length > 2) this.problem(`${at}.clusterIPs`, `has ${s.clusterIPs.length} addresses; a service has at most one IPv4 and one IPv6 cluster IP`);
      s.clusterIPs.forEach((text, k) => {
        const path = ipKey === "clusterIPs" ? `${at}.clusterIPs[${k}]` : `${at}.clusterIP`;
        const a = ip(text);
        if (families.has(a.family)) this.problem(path, `is ${describe(text)}, a second IPv${a.family} address; a service has at most one cluster IP per family`);
        families.add(a.family);
        const sc = this.svc[a.family], scKey = a.family === 4 ? "serviceCIDR" : "serviceCIDRv6";
        if (!sc && a.family === 6 && !this.failed.has("serviceCIDRv6")) this.problem(path, `is ${describe(text)}, an IPv6 address, but serviceCIDRv6 is not set`);
        else if (sc && !cidrContains(sc, a)) this.problem(path, `is ${describe(text)}, outside ${scKey} ${this.top[scKey]}; a cluster IP is taken from the service CIDR`);
        const canon = formatIp(a), owner = claims.clusterIps.get(canon);
        if (owner) this.problem(path, `is ${describe(text)}, already the cluster IP of ${whoOf(owner)}; each service has its own`);
        else claims.set(claims.clusterIps, canon, item);
      });
      if (s.loadBalancerIPs.length > 0 && s.type !== "LoadBalancer") {
        this.problem(`${at}.loadBalancerIPs`, `is set on a ${s.type} service; loadBalancerIPs apply to type LoadBalancer`);
      }
      if (s.loadBalancerSourceRanges.length > 0 && s.type !== "LoadBalancer") {
        this.problem(`${at}.loadBalancerSourceRanges`, `is set on a ${s.type} service; loadBalancerSourceRanges apply to type LoadBalancer`);
      }
      if (s.externalTrafficPolicy === "Local" && s.type === "ClusterIP" && s.externalIPs.length === 0) {
        this.problem(`${at}.externalTrafficPolicy`, 'is "Local" on a ClusterIP service without externalIPs; it applies to NodePort, LoadBalancer and externalIPs');
      }

      if (s.healthCheckNodePort !== undefined) {
        const hk = `${s.healthCheckNodePort}/TCP`, owner = claims.nodePorts.get(hk);
        if (s.type !== "LoadBalancer" || s.externalTrafficPolicy !== "Local") {
          this.problem(`${at}.healthCheckNodePort`, `is ${s.healthCheckNodePort} on a ${s.type} service with externalTrafficPolicy ${s.externalTrafficPolicy}; it applies to type LoadBalancer with externalTrafficPolicy Local`);
        } else if (owner) this.problem(`${at}.healthCheckNodePort`, `is ${s.healthCheckNodePort}, already the TCP nodePort of ${owner.who}; a node port serves one thing`);
        else claims.set(claims.nodePorts, hk, { s, who: `${who} healthCheckNodePort` });
      }

      // Ports.
      if (s.ports.length === 0) this.problem(`${at}.ports`, "is empty; a service needs at least one port");
      const portKeys = new Map<string, number>(), portNames = new Map<string, number>();
      s.ports.forEach((p, k) => {
        const pat = `${at}.ports[${k}]`;
        if (s.ports.length > 1 && p.name === undefined) this.problem(`${pat}.name`, "is missing; each port of a service with several ports has a name");
        if (p.name !== undefined) {
          const same = portNames.get(p.name);
          if (same !== undefined) this.problem(`${pat}.name`, `is ${describe(p.name)}, already the name of ports[${same}]; port names are unique in a service`);
          else portNames.set(p.name, k);
        }
        const pk = `${p.port}/${p.protocol}`, samePort = portKeys.get(pk);
        if (samePort !== undefined) this.problem(`${pat}.port`, `is ${p.port}/${p.protocol}, already ports[${samePort}]; a port and protocol appear once in a service`);
        else portKeys.set(pk, k);
        if (p.nodePort !== undefined && s.type === "ClusterIP") {
          this.problem(`${pat}.nodePort`, `is ${p.nodePort} on a ClusterIP service; nodePort applies to NodePort and LoadBalancer services`);
        } else if (p.nodePort === undefined && s.type === "NodePort") {
          this.problem(`${pat}.nodePort`, "is missing; each port of a NodePort service needs a nodePort in 30000-32767");
        } else if (p.nodePort !== undefined) {
          const nk = `${p.nodePort}/${p.protocol}`, owner = claims.nodePorts.get(nk);
          if (owner) this.problem(`${pat}.nodePort`, `is ${p.nodePort}, already the ${p.protocol} nodePort of ${owner.who}; a nodePort is unique per protocol`);
          else claims.set(claims.nodePorts, nk, { s, who: `${who} ports[${k}]` });
        }
      });

      // Every (VIP, port, protocol) is the key of one engine entry, so it belongs to one service.
      const paths = [
        ...s.clusterIPs.map((_, k) => (ipKey === "clusterIPs" ? `${at}.clusterIPs[${k}]` : `${at}.clusterIP`)),
        ...s.externalIPs.map((_, k) => `${at}.externalIPs[${k}]`),
        ...s.loadBalancerIPs.map((_, k) => `${at}.loadBalancerIPs[${k}]`),
      ];
      for (const { key, text, a } of vipKeys(s)) {
        const owner = claims.vips.get(key);
        if (owner && owner.s !== s) this.problem(paths[a]!, `is ${describe(text)}, and ${key} is already served by ${whoOf(owner)}; an address, port and protocol belong to one service`);
        else claims.set(claims.vips, key, item);
      }

      // Backends.
      const targets = new Set(s.ports.map((p) => p.targetPort ?? p.port));
      const seenBackends = new Map<string, number>();
      s.backends.forEach((b, k) => {
        const bat = `${at}.backends[${k}]`, a = ip(b.ip);
        if (families.size > 0 && !families.has(a.family)) {
          this.problem(`${bat}.ip`, `is ${describe(b.ip)}, an IPv${a.family} address, but the service has no IPv${a.family} cluster IP`);
        }
        const sc = this.svc[a.family];
        if (sc && cidrContains(sc, a)) this.problem(`${bat}.ip`, `is ${describe(b.ip)}, inside the service CIDR; a backend is a pod or node address`);
        if (b.nodeName !== undefined && nodesKnown && !nodeNames.has(b.nodeName)) {
          this.problem(`${bat}.nodeName`, `is ${describe(b.nodeName)}, neither this node (node.name) nor one of nodes[]`);
        }
        if (b.port !== undefined && targets.size > 1) {
          this.problem(`${bat}.port`, `is ${b.port}, but the service's ports have ${targets.size} different target ports; set targetPort on the ports instead`);
        }
        const bk = `${formatIp(a)}|${b.port ?? ""}`, same = seenBackends.get(bk);
        if (same !== undefined) this.problem(bat, `is ${b.ip}${b.port !== undefined ? ` port ${b.port}` : ""} again (as backends[${same}]); list each backend once`);
        else seenBackends.set(bk, k);
      });
    }
  }

  private checkMaglev(): void {
    for (const item of this.services) this.checkMaglevOf(item);
  }

  checkMaglevOf({ i, s }: ServiceItem): void {
    const lb = this.top.loadBalancing;
    if (lb?.mode !== "maglev" || lb.maglevTableSize === undefined) return;
    const size = lb.maglevTableSize;
    // Maglev gives each backend about size/N cells; the paper (NSDI '16 §3.4) wants size ≫ N.
    if (s.backends.length >= size) {
      this.problem("loadBalancing.maglevTableSize",
        `is ${size}, not more than the ${s.backends.length} backends of services[${i}]; use a prime at least 100 times the largest backend count, or leave it out to let the engine choose`);
    }
  }
}
