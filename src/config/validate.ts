// Pure validation of a node config: shape (schema.ts) and the rules that relate fields (here). Every
// problem is reported at once: a bad field does not hide the problems of the others.

import type { z } from "zod";
import { cidrContains, cidrsOverlap, formatCidr, formatIp, parseCidr, parseIp, type Cidr, type Family, type Ip } from "../model/addr.js";
import { drain, drainAsync, every64, type Steps } from "../model/steps.js";
import { VXLAN_OVERHEAD } from "../model/vxlan.js";
import { closest } from "./suggest.js";
import {
  BackendSchema, DEFAULT_AFFINITY_TIMEOUT_SEC, describe, PeerNodeSchema, ServiceSchema, TOP_LEVEL,
  type BackendConfig, type Config, type NodeConfig, type PeerNodeConfig, type Problem, type ServiceConfig, type ServiceInput,
} from "./schema.js";

type ServiceItem = { i: number; s: ServiceConfig; /** which spelling the file used, for problem paths */ ipKey: "clusterIP" | "clusterIPs" };
type Top = { -readonly [K in keyof typeof TOP_LEVEL]?: z.output<(typeof TOP_LEVEL)[K]> };

/** `services[2].ports[0].port` from ["services", 2, "ports", 0, "port"]. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out === "" ? String(p) : `.${String(p)}`;
  return out;
}

/** The keys the object schema at `path` under `schema` knows (through optional, default, array). */
function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let s: any = schema;
  const unwrap = () => { while (s?._zod?.def?.innerType) s = s._zod.def.innerType; };
  for (const p of path) {
    unwrap();
    if (typeof p === "number") s = s?._zod?.def?.element;
    else s = s?._zod?.def?.shape?.[p];
  }
  unwrap();
  return Object.keys(s?._zod?.def?.shape ?? {});
}

/** "is not a known setting", with the one it likely meant (`node.underlayMtu`: underlayMTU). */
function unknownSetting(key: string, known: readonly string[]): string {
  const guess = closest(key, known);
  return `is not a known setting${guess ? `; did you mean ${guess}?` : " (misspelt?)"}`;
}

function addIssues(problems: Problem[], base: readonly PropertyKey[], issues: readonly z.core.$ZodIssue[], schema?: z.ZodType): void {
  for (const iss of issues) {
    const path = [...base, ...iss.path];
    if (iss.code === "unrecognized_keys") {
      const known = schema ? keysAt(schema, iss.path) : [];
      for (const k of iss.keys) problems.push({ path: formatPath([...path, k]), message: unknownSetting(k, known) });
    } else {
      problems.push({ path: formatPath(path), message: iss.message });
    }
  }
}

export type Validated = { config: Config } | { problems: Problem[] };

/** Checks a parsed config document. Returns the config with every default filled in, or every problem found. */
export function validateConfig(raw: unknown): Validated {
  return drain(validateSteps(raw));
}

/**
 * The services of the last config a source validated, by their text: a reload re-checks only the
 * services whose text changed (the rules relating services to each other still see all of them).
 * Each run keeps just the services it met, so the cache is the size of one config.
 */
export class ServiceCache {
  private entries = new Map<string, { s: ServiceConfig; ipKey: "clusterIP" | "clusterIPs" }>();
  private next: typeof this.entries | undefined;

  /** @internal */ begin(): void { this.next = new Map(); }
  /** @internal */ end(ok: boolean): void { if (ok && this.next) this.entries = this.next; this.next = undefined; }
  /** @internal */ get(text: string) {
    const e = this.entries.get(text);
    if (e) this.next?.set(text, e);
    return e;
  }
  /** @internal */ put(text: string, e: { s: ServiceConfig; ipKey: "clusterIP" | "clusterIPs" }): void { this.next?.set(text, e); }
  get size(): number { return this.entries.size; }
}

/** validateConfig with breaks for the event loop: what the daemon uses for a reload. */
export async function validateConfigAsync(raw: unknown, cache?: ServiceCache): Promise<Validated> {
  cache?.begin();
  let ok = false;
  try {
    const r = await drainAsync(validateSteps(raw, cache));
    ok = "config" in r;
    return r;
  } finally {
    cache?.end(ok);
  }
}

function* validateSteps(raw: unknown, cache?: ServiceCache): Steps<Validated> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return { problems: [{ path: "(config)", message: `is ${describe(raw)}; expected a mapping of settings that starts with node:` }] };
  }
  const doc = raw as Record<string, unknown>;
  const problems: Problem[] = [];
  for (const key of Object.keys(doc)) {
    if (!(key in TOP_LEVEL)) problems.push({ path: key, message: unknownSetting(key, Object.keys(TOP_LEVEL)) });
  }
  const top: Top = {};
  const failed = new Set<string>(); // top-level settings with problems: rules that need them are skipped, not guessed
  for (const [key, schema] of Object.entries(TOP_LEVEL)) {
    const r = schema.safeParse(doc[key]);
    if (r.success) (top as Record<string, unknown>)[key] = r.data;
    else { addIssues(problems, [key], r.error.issues, schema); failed.add(key); }
  }

  const services: ServiceItem[] = [];
  const rawServices = top.services ?? [];
  for (let i = 0; i < rawServices.length; i++) {
    if (every64(i)) yield;
    const text = cache ? JSON.stringify(rawServices[i]) : undefined;
    const known = text !== undefined ? cache?.get(text) : undefined;
    if (known) { services.push({ i, ...known }); continue; }
    const r = ServiceSchema.safeParse(rawServices[i]);
    if (!r.success) { addIssues(problems, ["services", i], r.error.issues, ServiceSchema); continue; }
    const before = problems.length;
    const s = normalizeService(r.data, `services[${i}]`, problems);
    if (!s) continue;
    const ipKey = r.data.clusterIPs !== undefined ? "clusterIPs" : "clusterIP";
    services.push({ i, s, ipKey });
    // Only a service that is fine on its own is remembered (its problems name its index).
    if (text !== undefined && problems.length === before) cache?.put(text, { s, ipKey });
  }
  const nodes: Array<{ i: number; n: PeerNodeConfig }> = [];
  (top.nodes ?? []).forEach((rawNode, i) => {
    const r = PeerNodeSchema.safeParse(rawNode);
    if (r.success) nodes.push({ i, n: r.data });
    else addIssues(problems, ["nodes", i], r.error.issues, PeerNodeSchema);
  });

  // Rules that relate a list item to others see every item that parsed: a broken item has its own
  // problems reported and is left out, so it cannot cause a second, misleading one.
  yield* new CrossCheck(top, failed, services, nodes, problems).run();
  if (problems.length > 0 || !top.node || top.services === undefined || top.nodes === undefined) {
    return { problems };
  }
  const node: NodeConfig = { ...top.node, nodeAddresses: top.node.nodeAddresses ?? [top.node.underlayIP] };
  return {
    config: {
      mode: top.mode ?? "tun",
      node,
      serviceCIDR: top.serviceCIDR ?? "10.96.0.0/16",
      ...(top.serviceCIDRv6 !== undefined && { serviceCIDRv6: top.serviceCIDRv6 }),
      clusterCIDR: top.clusterCIDR ?? "10.244.0.0/16",
      ...(top.clusterCIDRv6 !== undefined && { clusterCIDRv6: top.clusterCIDRv6 }),
      vxlan: top.vxlan ?? { vni: 1, port: 8472 },
      conntrack: top.conntrack ?? { capacity: 262144 },
      tables: top.tables ?? { services: 4096, backends: 16384 },
      loadBalancing: top.loadBalancing ?? { mode: "random" },
      services: services.map((x) => x.s),
      nodes: nodes.map((x) => x.n),
    },
  };
}

function normalizeService(s: ServiceInput, at: string, problems: Problem[]): ServiceConfig | undefined {
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
    ports: s.ports,
    sessionAffinity: s.sessionAffinity,
    affinityTimeoutSec: s.sessionAffinityConfig?.clientIP.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SEC,
    externalTrafficPolicy: s.externalTrafficPolicy,
    internalTrafficPolicy: s.internalTrafficPolicy,
    ...(s.healthCheckNodePort !== undefined ? { healthCheckNodePort: s.healthCheckNodePort } : {}),
    backends: s.backends.map((b: z.output<typeof BackendSchema>): BackendConfig => ({ ...b, serving: b.serving ?? b.ready })),
  };
}

const ip = (text: string): Ip => parseIp(text) as Ip; // only on text the schema accepted
const cidr = (text: string | undefined): Cidr | undefined => (text === undefined ? undefined : parseCidr(text));
const inside = (inner: Cidr, outer: Cidr) => cidrsOverlap(inner, outer) && inner.prefixLen >= outer.prefixLen;

class CrossCheck {
  private readonly svc: Partial<Record<Family, Cidr>>;
  private readonly cluster: Partial<Record<Family, Cidr>>;

  constructor(
    private readonly top: Top,
    private readonly failed: ReadonlySet<string>,
    private readonly services: ServiceItem[],
    private readonly nodes: Array<{ i: number; n: PeerNodeConfig }>,
    private readonly problems: Problem[],
  ) {
    this.svc = { 4: cidr(top.serviceCIDR), 6: cidr(top.serviceCIDRv6) };
    this.cluster = { 4: cidr(top.clusterCIDR), 6: cidr(top.clusterCIDRv6) };
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
    const byName = new Map<string, string>();
    const clusterIpOwner = new Map<string, string>();
    const vipOwner = new Map<string, string>();
    const nodePortOwner = new Map<string, string>();
    const nodeNames = new Set<string>(this.nodes.map((x) => x.n.name));
    if (this.top.node) nodeNames.add(this.top.node.name);
    // With node or nodes[] broken, a nodeName cannot be judged unknown.
    const nodesKnown = this.top.node !== undefined && (this.top.nodes ?? []).length === this.nodes.length;

    for (const [n, { i, s, ipKey }] of this.services.entries()) {
      if (every64(n)) yield;
      const at = `services[${i}]`, who = `${at} (${s.namespace}/${s.name})`;
      const nameKey = `${s.namespace}/${s.name}`;
      const sameName = byName.get(nameKey);
      if (sameName) this.problem(`${at}.name`, `is ${describe(s.name)} in namespace ${describe(s.namespace)}, already used by ${sameName}; a service name is unique in its namespace`);
      else byName.set(nameKey, at);
      if (s.ignored) continue;

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
        const canon = formatIp(a), owner = clusterIpOwner.get(canon);
        if (owner) this.problem(path, `is ${describe(text)}, already the cluster IP of ${owner}; each service has its own`);
        else clusterIpOwner.set(canon, who);
      });
      if (s.loadBalancerIPs.length > 0 && s.type !== "LoadBalancer") {
        this.problem(`${at}.loadBalancerIPs`, `is set on a ${s.type} service; loadBalancerIPs apply to type LoadBalancer`);
      }
      if (s.externalTrafficPolicy === "Local" && s.type === "ClusterIP" && s.externalIPs.length === 0) {
        this.problem(`${at}.externalTrafficPolicy`, 'is "Local" on a ClusterIP service without externalIPs; it applies to NodePort, LoadBalancer and externalIPs');
      }

      if (s.healthCheckNodePort !== undefined) {
        const hk = `${s.healthCheckNodePort}/TCP`, owner = nodePortOwner.get(hk);
        if (s.type !== "LoadBalancer" || s.externalTrafficPolicy !== "Local") {
          this.problem(`${at}.healthCheckNodePort`, `is ${s.healthCheckNodePort} on a ${s.type} service with externalTrafficPolicy ${s.externalTrafficPolicy}; it applies to type LoadBalancer with externalTrafficPolicy Local`);
        } else if (owner) this.problem(`${at}.healthCheckNodePort`, `is ${s.healthCheckNodePort}, already the TCP nodePort of ${owner}; a node port serves one thing`);
        else nodePortOwner.set(hk, `${who} healthCheckNodePort`);
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
          const nk = `${p.nodePort}/${p.protocol}`, owner = nodePortOwner.get(nk);
          if (owner) this.problem(`${pat}.nodePort`, `is ${p.nodePort}, already the ${p.protocol} nodePort of ${owner}; a nodePort is unique per protocol`);
          else nodePortOwner.set(nk, `${who} ports[${k}]`);
        }
      });

      // Every (VIP, port, protocol) is the key of one engine entry, so it belongs to one service.
      const vips: Array<[string, string]> = [
        ...s.clusterIPs.map((t, k): [string, string] => [ipKey === "clusterIPs" ? `${at}.clusterIPs[${k}]` : `${at}.clusterIP`, t]),
        ...s.externalIPs.map((t, k): [string, string] => [`${at}.externalIPs[${k}]`, t]),
        ...s.loadBalancerIPs.map((t, k): [string, string] => [`${at}.loadBalancerIPs[${k}]`, t]),
      ];
      const seenHere = new Set<string>();
      for (const [path, text] of vips) {
        const canon = formatIp(ip(text));
        for (const p of s.ports) {
          const key = `${canon.includes(":") ? `[${canon}]` : canon}:${p.port}/${p.protocol}`;
          if (seenHere.has(key)) continue; // the same address twice in one service: one entry
          seenHere.add(key);
          const owner = vipOwner.get(key);
          if (owner && owner !== who) this.problem(path, `is ${describe(text)}, and ${key} is already served by ${owner}; an address, port and protocol belong to one service`);
          else vipOwner.set(key, who);
        }
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
    const lb = this.top.loadBalancing;
    if (lb?.mode !== "maglev" || lb.maglevTableSize === undefined) return;
    const size = lb.maglevTableSize;
    for (const { i, s } of this.services) {
      // Maglev gives each backend about size/N cells; the paper (NSDI '16 §3.4) wants size ≫ N.
      if (s.backends.length >= size) {
        this.problem("loadBalancing.maglevTableSize",
          `is ${size}, not more than the ${s.backends.length} backends of services[${i}]; use a prime at least 100 times the largest backend count, or leave it out to let the engine choose`);
      }
    }
  }
}
