// Kubernetes API objects (Service, EndpointSlice, Node) to the internal config's pieces, one object at
// a time, so a watch event costs the conversion of the object it names and nothing else. Pure: no
// clocks, no I/O. Inputs are `unknown`: the client's list calls hand over deserialized objects and its
// watch hands over raw JSON, and a malformed object must become a problem, never a throw.
//
// Semantics follow kube-proxy (pkg/proxy: servicechangetracker, endpointslicecache):
// - a Service port is matched to EndpointSlice ports by name and protocol; its backends listen on that
//   slice port's number (a named targetPort resolves per endpoint this way);
// - endpoint conditions: ready and serving are true when absent, terminating false when absent (kube-proxy's
//   endpointslicecache; the API reference says a nil serving "defers to ready", which differs only for
//   a not-ready terminating endpoint of a controller too old to set serving);
// - an endpoint that appears in several slices of one service counts once;
// - headless (clusterIP None) and ExternalName services programme nothing;
// - TCP, UDP and SCTP ports are served (the engine tracks SCTP as UDP and patches its CRC32c);
// - LoadBalancer ingress IPs with ipMode "Proxy" are left to the load balancer (kube-proxy ≥ 1.30);
// - an endpoint's hints.forZones and hints.forNodes pass on as they are, and a Node's zone is its
//   topology.kubernetes.io/zone label: the model applies them as pkg/proxy/topology.go does.
// A peer's overlay follows flannel's kube subnet manager (pkg/subnet/kube): a Node annotated with
// flannel.alpha.coreos.com/backend-data {"VNI":1,"VtepMAC":"aa:bb:..."} is reached at that VTEP MAC
// and at its flannel.alpha.coreos.com/public-ip (the address its VXLAN device sends from); a Node
// without them at its InternalIP and the MAC derived from it, as before.

import type { BackendConfig, PeerNodeConfig, Problem, Protocol, ServiceConfig, ServicePortConfig, TrafficPolicy } from "../config/schema.js";
import { DEFAULT_AFFINITY_TIMEOUT_SEC } from "../config/schema.js";
import { cidrContains, formatCidr, formatIp, parseCidr, parseIp, parseMac, type Cidr, type Family } from "../model/addr.js";

/** The label that ties an EndpointSlice to its Service (discovery.k8s.io/v1). */
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";
/** Cluster Autoscaler's taint on a node it is about to delete (kube-proxy's healthz turns 503). */
export const TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler";
/** The well-known label of a Node's zone (v1.LabelTopologyZone). */
export const ZONE_LABEL = "topology.kubernetes.io/zone";
/** flannel's Node annotations (its default prefix flannel.alpha.coreos.com). */
export const FLANNEL = {
  backendData: "flannel.alpha.coreos.com/backend-data",
  backendType: "flannel.alpha.coreos.com/backend-type",
  publicIP: "flannel.alpha.coreos.com/public-ip",
  kubeSubnetManager: "flannel.alpha.coreos.com/kube-subnet-manager",
} as const;

/** What a Node's flannel annotations say about its VXLAN endpoint. */
export interface FlannelVtep {
  /** backend-data's VtepMAC, lowercase. */
  vtepMAC?: string;
  /** backend-data's VNI. */
  vni?: number;
  /** public-ip: the underlay address its VXLAN device sends from. */
  publicIP?: string;
}

/** What the converter needs to know about this node's settings. */
export interface ConvertContext {
  serviceCIDR: Cidr;
  serviceCIDRv6?: Cidr | undefined;
}

/** A Service, converted: everything but the backends, which come from its slices. */
export type KubeService = Omit<ServiceConfig, "backends"> & {
  key: string;
  /** Things skipped on purpose (an unconfigured family, an ingress IP in ipMode Proxy), for the log. */
  notes: string[];
};

export interface SliceEndpoint {
  ip: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName?: string;
  /** hints.forZones[].name and hints.forNodes[].name; absent without hints. */
  hints?: { forZones: string[]; forNodes: string[] };
}

/** An EndpointSlice, converted. */
export interface KubeSlice {
  key: string;
  /** `namespace/service` it belongs to. */
  service: string;
  family: Family;
  /** name ("" when unnamed) + protocol → port number. */
  ports: Array<{ name: string; protocol: Protocol; port: number }>;
  endpoints: SliceEndpoint[];
  /** endpoints.kubernetes.io/last-change-trigger-time, ms since the epoch, for network_programming_duration_seconds. */
  triggerMs?: number;
}

/** A Node, converted. */
export interface KubeNode {
  name: string;
  /** First InternalIP of each family. */
  internalIPv4?: string;
  internalIPv6?: string;
  /** InternalIP and ExternalIP addresses: where NodePorts answer. */
  addresses: string[];
  podCIDR?: string;
  podCIDRv6?: string;
  /** Not being deleted and not tainted ToBeDeletedByClusterAutoscaler (kube-proxy's nodeEligible). */
  eligible: boolean;
  /** The topology.kubernetes.io/zone label. */
  zone?: string;
  /** Its flannel annotations (backend type vxlan), when it has any. */
  flannel?: FlannelVtep;
  /** The flannel annotations as they are (FLANNEL keys present), to tell whether publishing would change them. */
  flannelAnnotations: Record<string, string>;
  /** Annotations that could not be used, for the log (the Node itself is fine). */
  notes: string[];
}

export type Converted<T> = { ok: T } | { problems: Problem[] };

// ─── reading unknown JSON ───

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);
const describe = (v: unknown): string =>
  v === undefined ? "missing" : v === null ? "null" : typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) ? "a list" : typeof v === "object" ? "an object" : String(v);

/** Collects problems under one object's name: `Service default/web spec.ports[0].port`. */
class Reader {
  readonly problems: Problem[] = [];
  constructor(readonly what: string) {}

  problem(path: string, message: string): void {
    this.problems.push({ path: `${this.what} ${path}`, message });
  }

  obj(v: unknown, path: string, required = false): Obj | undefined {
    if (v === undefined || v === null) {
      if (required) this.problem(path, "is missing; expected an object");
      return undefined;
    }
    if (!isObj(v)) { this.problem(path, `is ${describe(v)}; expected an object`); return undefined; }
    return v;
  }

  list(v: unknown, path: string): unknown[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) { this.problem(path, `is ${describe(v)}; expected a list`); return []; }
    return v;
  }

  str(v: unknown, path: string, required = false): string | undefined {
    if (v === undefined || v === null || v === "") {
      if (required) this.problem(path, "is missing; expected a string");
      return undefined;
    }
    if (typeof v !== "string") { this.problem(path, `is ${describe(v)}; expected a string`); return undefined; }
    return v;
  }

  bool(v: unknown, path: string, absent: boolean): boolean {
    if (v === undefined || v === null) return absent;
    if (typeof v !== "boolean") { this.problem(path, `is ${describe(v)}; expected true or false`); return absent; }
    return v;
  }

  int(v: unknown, path: string, lo: number, hi: number, rule: string): number | undefined {
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) { this.problem(path, `is ${describe(v)}; ${rule}`); return undefined; }
    return v;
  }

  ip(v: unknown, path: string): { text: string; family: Family } | undefined {
    const s = this.str(v, path, true);
    if (s === undefined) return undefined;
    const ip = parseIp(s);
    if (!ip) { this.problem(path, `is ${describe(s)}; expected an IPv4 or IPv6 address`); return undefined; }
    return { text: formatIp(ip), family: ip.family };
  }

  cidr(v: unknown, path: string): { text: string; family: Family } | undefined {
    const s = this.str(v, path, true);
    if (s === undefined) return undefined;
    const c = parseCidr(s);
    if (!c) { this.problem(path, `is ${describe(s)}; expected a CIDR like 10.244.1.0/24`); return undefined; }
    if (c.hostBitsSet) { this.problem(path, `is ${describe(s)}, which has bits set after the prefix`); return undefined; }
    return { text: formatCidr(c), family: c.family };
  }
}

/** `namespace/name` of an object, or a problem when its metadata lacks them. */
function identify(kind: string, raw: unknown, namespaced: boolean): { r: Reader; meta: Obj; namespace: string; name: string } | { problems: Problem[] } {
  const r = new Reader(kind);
  const o = r.obj(raw, "(object)", true);
  const meta = o && r.obj(o["metadata"], "metadata", true);
  const name = meta && r.str(meta["name"], "metadata.name", true);
  const namespace = namespaced ? meta && r.str(meta["namespace"], "metadata.namespace", true) : "";
  if (!meta || name === undefined || namespace === undefined) return { problems: r.problems };
  return { r: new Reader(namespaced ? `${kind} ${namespace}/${name}` : `${kind} ${name}`), meta, namespace, name };
}

const PROTOCOLS = new Set(["TCP", "UDP", "SCTP"]);

function protocolOf(r: Reader, v: unknown, path: string): Protocol | undefined {
  if (v === undefined || v === null) return "TCP"; // the API's default
  if (typeof v !== "string" || !PROTOCOLS.has(v)) { r.problem(path, `is ${describe(v)}; expected TCP, UDP or SCTP`); return undefined; }
  return v as Protocol;
}

// ─── Service ───

const TYPES = new Set(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]);

export function convertService(raw: unknown, ctx: ConvertContext): Converted<KubeService> {
  const id = identify("Service", raw, true);
  if ("problems" in id) return id;
  const { r, namespace, name } = id;
  const key = `${namespace}/${name}`;
  const o = raw as Obj;
  const spec = r.obj(o["spec"], "spec", true);
  if (!spec) return { problems: r.problems };
  const notes: string[] = [];

  const typeRaw = spec["type"] ?? "ClusterIP";
  if (typeof typeRaw !== "string" || !TYPES.has(typeRaw)) r.problem("spec.type", `is ${describe(typeRaw)}; expected ClusterIP, NodePort, LoadBalancer or ExternalName`);
  const type = (TYPES.has(typeRaw as string) ? typeRaw : "ClusterIP") as ServiceConfig["type"];

  const ipTexts = r.list(spec["clusterIPs"], "spec.clusterIPs");
  const clusterIpRaw = ipTexts.length > 0 ? ipTexts : spec["clusterIP"] !== undefined && spec["clusterIP"] !== null && spec["clusterIP"] !== "" ? [spec["clusterIP"]] : [];
  const headless = clusterIpRaw.includes("None");
  const base = {
    key, namespace, name, type, clusterIPs: [] as string[], externalIPs: [] as string[], loadBalancerIPs: [] as string[],
    loadBalancerSourceRanges: [] as string[], ports: [] as ServicePortConfig[],
    sessionAffinity: "None" as const, affinityTimeoutSec: DEFAULT_AFFINITY_TIMEOUT_SEC, externalTrafficPolicy: "Cluster" as const, internalTrafficPolicy: "Cluster" as const,
  };
  if (type === "ExternalName" || headless) {
    return r.problems.length ? { problems: r.problems } : { ok: { ...base, ignored: true, notes } };
  }

  // An address of a family this node is not set up for is skipped, as a single-stack kube-proxy does.
  const familyOk = (f: Family, path: string, text: string): boolean => {
    if (f === 6 && !ctx.serviceCIDRv6) { notes.push(`${path} ${text} skipped: IPv6 is not configured on this node`); return false; }
    return true;
  };
  const clusterIPs: string[] = [];
  clusterIpRaw.forEach((v, i) => {
    const path = ipTexts.length > 0 ? `spec.clusterIPs[${i}]` : "spec.clusterIP";
    const ip = r.ip(v, path);
    if (!ip || !familyOk(ip.family, path, ip.text)) return;
    const range = ip.family === 4 ? ctx.serviceCIDR : ctx.serviceCIDRv6;
    if (range && !cidrContains(range, parseIp(ip.text) as NonNullable<ReturnType<typeof parseIp>>)) {
      r.problem(path, `is ${describe(ip.text)}, outside the service CIDR ${formatCidr(range)}; set --service-cidr to the cluster's service-cluster-ip-range`);
      return;
    }
    clusterIPs.push(ip.text);
  });
  if (clusterIpRaw.length === 0) r.problem("spec.clusterIP", `is missing; a ${type} service has a cluster IP (or "None" when headless)`);

  const addrList = (v: unknown, path: string): string[] => {
    const out: string[] = [];
    r.list(v, path).forEach((x, i) => {
      const ip = r.ip(x, `${path}[${i}]`);
      if (ip && familyOk(ip.family, `${path}[${i}]`, ip.text)) out.push(ip.text);
    });
    return out;
  };
  const externalIPs = addrList(spec["externalIPs"], "spec.externalIPs");
  const loadBalancerIPs: string[] = [];
  if (type === "LoadBalancer") {
    const status = r.obj(o["status"], "status");
    const lb = status && r.obj(status["loadBalancer"], "status.loadBalancer");
    r.list(lb?.["ingress"], "status.loadBalancer.ingress").forEach((x, i) => {
      const at = `status.loadBalancer.ingress[${i}]`;
      const ing = r.obj(x, at, true);
      if (!ing || ing["ip"] === undefined || ing["ip"] === null || ing["ip"] === "") return; // a hostname-only ingress
      if (ing["ipMode"] === "Proxy") { notes.push(`${at} skipped: ipMode Proxy (the load balancer proxies)`); return; }
      const ip = r.ip(ing["ip"], `${at}.ip`);
      if (ip && familyOk(ip.family, `${at}.ip`, ip.text)) loadBalancerIPs.push(ip.text);
    });
  }

  // spec.loadBalancerSourceRanges, only for type LoadBalancer (the API refuses it on others): kube-proxy
  // parses each with ParseCIDRSloppy, so host bits are cleared, not refused.
  const loadBalancerSourceRanges: string[] = [];
  if (type === "LoadBalancer") {
    r.list(spec["loadBalancerSourceRanges"], "spec.loadBalancerSourceRanges").forEach((x, i) => {
      const at = `spec.loadBalancerSourceRanges[${i}]`;
      const t = r.str(x, at, true);
      const c = t === undefined ? undefined : parseCidr(t.trim());
      if (t !== undefined && !c) { r.problem(at, `is ${describe(t)}; expected a CIDR like 203.0.113.0/24`); return; }
      if (!c) return;
      if (!loadBalancerSourceRanges.includes(formatCidr(c))) loadBalancerSourceRanges.push(formatCidr(c));
    });
  }

  const ports: ServicePortConfig[] = [];
  const portList = r.list(spec["ports"], "spec.ports");
  if (portList.length === 0) r.problem("spec.ports", "is empty; a service that is not headless needs at least one port");
  portList.forEach((x, i) => {
    const at = `spec.ports[${i}]`;
    const p = r.obj(x, at, true);
    if (!p) return;
    const port = r.int(p["port"], `${at}.port`, 1, 65535, "a port is 1-65535");
    const protocol = protocolOf(r, p["protocol"], `${at}.protocol`);
    const portName = r.str(p["name"], `${at}.name`);
    let nodePort: number | undefined;
    if (p["nodePort"] !== undefined && p["nodePort"] !== null && p["nodePort"] !== 0 && type !== "ClusterIP") {
      nodePort = r.int(p["nodePort"], `${at}.nodePort`, 1, 65535, "a nodePort is 1-65535");
    }
    if (port === undefined || protocol === undefined) return;
    ports.push({ ...(portName !== undefined && { name: portName }), port, protocol, ...(nodePort !== undefined && { nodePort }) });
  });

  const affinityRaw = spec["sessionAffinity"] ?? "None";
  if (affinityRaw !== "None" && affinityRaw !== "ClientIP") r.problem("spec.sessionAffinity", `is ${describe(affinityRaw)}; expected None or ClientIP`);
  const sessionAffinity = affinityRaw === "ClientIP" ? "ClientIP" : "None";
  let affinityTimeoutSec = DEFAULT_AFFINITY_TIMEOUT_SEC;
  const sac = r.obj(spec["sessionAffinityConfig"], "spec.sessionAffinityConfig");
  const cip = sac && r.obj(sac["clientIP"], "spec.sessionAffinityConfig.clientIP");
  if (cip && cip["timeoutSeconds"] !== undefined && cip["timeoutSeconds"] !== null) {
    affinityTimeoutSec = r.int(cip["timeoutSeconds"], "spec.sessionAffinityConfig.clientIP.timeoutSeconds", 1, 86400, "a timeout is 1-86400 seconds") ?? affinityTimeoutSec;
  }

  const policy = (v: unknown, path: string): TrafficPolicy => {
    if (v === undefined || v === null || v === "" || v === "Cluster" || v === "Global") return "Cluster"; // "Global": the pre-1.22 spelling
    if (v === "Local") return "Local";
    r.problem(path, `is ${describe(v)}; expected Cluster or Local`);
    return "Cluster";
  };
  const externalTrafficPolicy = policy(spec["externalTrafficPolicy"], "spec.externalTrafficPolicy");
  const internalTrafficPolicy = policy(spec["internalTrafficPolicy"], "spec.internalTrafficPolicy");

  let healthCheckNodePort: number | undefined;
  const hc = spec["healthCheckNodePort"];
  if (type === "LoadBalancer" && externalTrafficPolicy === "Local" && hc !== undefined && hc !== null && hc !== 0) {
    healthCheckNodePort = r.int(hc, "spec.healthCheckNodePort", 1, 65535, "a port is 1-65535");
  }

  if (r.problems.length) return { problems: r.problems };
  return {
    ok: {
      ...base, ignored: clusterIPs.length === 0, clusterIPs, externalIPs, loadBalancerIPs, loadBalancerSourceRanges, ports,
      sessionAffinity, affinityTimeoutSec, externalTrafficPolicy, internalTrafficPolicy, notes,
      ...(healthCheckNodePort !== undefined && { healthCheckNodePort }),
    },
  };
}

// ─── EndpointSlice ───

export function convertEndpointSlice(raw: unknown): Converted<KubeSlice> | { ignored: string } {
  const id = identify("EndpointSlice", raw, true);
  if ("problems" in id) return id;
  const { r, meta, namespace, name } = id;
  const o = raw as Obj;
  const labels = r.obj(meta["labels"], "metadata.labels");
  const svc = labels?.[SERVICE_NAME_LABEL];
  // Slices without the label are not a Service's (a mirror controller's or a user's own): kube-proxy skips them.
  if (typeof svc !== "string" || svc === "") return { ignored: `no ${SERVICE_NAME_LABEL} label` };
  const at = o["addressType"];
  if (at === "FQDN") return { ignored: "addressType FQDN" };
  if (at !== "IPv4" && at !== "IPv6") { r.problem("addressType", `is ${describe(at)}; expected IPv4, IPv6 or FQDN`); return { problems: r.problems }; }
  const family: Family = at === "IPv4" ? 4 : 6;

  const ports: KubeSlice["ports"] = [];
  r.list(o["ports"], "ports").forEach((x, i) => {
    const p = r.obj(x, `ports[${i}]`, true);
    if (!p) return;
    // A port without a number means "all ports" and is for services without ports (headless): nothing to serve.
    if (p["port"] === undefined || p["port"] === null) return;
    const port = r.int(p["port"], `ports[${i}].port`, 1, 65535, "a port is 1-65535");
    const protocol = protocolOf(r, p["protocol"], `ports[${i}].protocol`);
    const pname = r.str(p["name"], `ports[${i}].name`) ?? "";
    if (port !== undefined && protocol !== undefined) ports.push({ name: pname, protocol, port });
  });

  const endpoints: SliceEndpoint[] = [];
  r.list(o["endpoints"], "endpoints").forEach((x, i) => {
    const ep = r.obj(x, `endpoints[${i}]`, true);
    if (!ep) return;
    const addrs = r.list(ep["addresses"], `endpoints[${i}].addresses`);
    if (addrs.length === 0) { r.problem(`endpoints[${i}].addresses`, "is empty; an endpoint has at least one address"); return; }
    // The API keeps one address per endpoint (consumers use the first): the others are ignored, as kube-proxy does.
    const ip = r.ip(addrs[0], `endpoints[${i}].addresses[0]`);
    const cond = r.obj(ep["conditions"], `endpoints[${i}].conditions`) ?? {};
    const ready = r.bool(cond["ready"], `endpoints[${i}].conditions.ready`, true);
    const serving = r.bool(cond["serving"], `endpoints[${i}].conditions.serving`, true);
    const terminating = r.bool(cond["terminating"], `endpoints[${i}].conditions.terminating`, false);
    const nodeName = r.str(ep["nodeName"], `endpoints[${i}].nodeName`);
    const hints = hintsOf(r, ep["hints"], `endpoints[${i}].hints`);
    if (!ip) return;
    if (ip.family !== family) { r.problem(`endpoints[${i}].addresses[0]`, `is ${describe(ip.text)}, an IPv${ip.family} address in an ${at} slice`); return; }
    endpoints.push({ ip: ip.text, ready, serving, terminating, ...(nodeName !== undefined && { nodeName }), ...(hints && { hints }) });
  });

  if (r.problems.length) return { problems: r.problems };
  const ann = isObj(meta["annotations"]) ? meta["annotations"] : undefined;
  const trig = ann?.["endpoints.kubernetes.io/last-change-trigger-time"];
  const triggerMs = typeof trig === "string" ? Date.parse(trig) : trig instanceof Date ? trig.getTime() : NaN;
  return {
    ok: { key: `${namespace}/${name}`, service: `${namespace}/${svc}`, family, ports, endpoints, ...(Number.isFinite(triggerMs) && { triggerMs }) },
  };
}

/** An endpoint's hints: {forZones: [{name}], forNodes: [{name}]}; undefined when it has none. */
function hintsOf(r: Reader, v: unknown, path: string): SliceEndpoint["hints"] {
  const h = r.obj(v, path);
  if (!h) return undefined;
  const names = (key: "forZones" | "forNodes"): string[] => {
    const out: string[] = [];
    r.list(h[key], `${path}.${key}`).forEach((x, i) => {
      const o = r.obj(x, `${path}.${key}[${i}]`, true);
      const name = o && r.str(o["name"], `${path}.${key}[${i}].name`, true);
      if (name !== undefined && !out.includes(name)) out.push(name);
    });
    return out;
  };
  const forZones = names("forZones"), forNodes = names("forNodes");
  return forZones.length + forNodes.length > 0 ? { forZones, forNodes } : undefined;
}

// ─── Node ───

export function convertNode(raw: unknown): Converted<KubeNode> {
  const id = identify("Node", raw, false);
  if ("problems" in id) return id;
  const { r, meta, name } = id;
  const o = raw as Obj;
  const spec = r.obj(o["spec"], "spec") ?? {};
  const status = r.obj(o["status"], "status") ?? {};

  // spec.podCIDRs holds one CIDR per family (the first equals spec.podCIDR); older nodes have only podCIDR.
  let podCIDR: string | undefined, podCIDRv6: string | undefined;
  const cidrs = r.list(spec["podCIDRs"], "spec.podCIDRs");
  const cidrList = cidrs.length > 0 ? cidrs.map((c, i) => [c, `spec.podCIDRs[${i}]`] as const)
    : spec["podCIDR"] !== undefined && spec["podCIDR"] !== null && spec["podCIDR"] !== "" ? [[spec["podCIDR"], "spec.podCIDR"] as const] : [];
  for (const [c, path] of cidrList) {
    const v = r.cidr(c, path);
    if (v?.family === 4 && podCIDR === undefined) podCIDR = v.text;
    if (v?.family === 6 && podCIDRv6 === undefined) podCIDRv6 = v.text;
  }

  let internalIPv4: string | undefined, internalIPv6: string | undefined;
  const addresses: string[] = [];
  r.list(status["addresses"], "status.addresses").forEach((x, i) => {
    const a = r.obj(x, `status.addresses[${i}]`, true);
    if (!a) return;
    const t = a["type"];
    if (t !== "InternalIP" && t !== "ExternalIP") return; // Hostname, InternalDNS, ExternalDNS
    const ip = r.ip(a["address"], `status.addresses[${i}].address`);
    if (!ip) return;
    if (!addresses.includes(ip.text)) addresses.push(ip.text);
    if (t === "InternalIP" && ip.family === 4 && internalIPv4 === undefined) internalIPv4 = ip.text;
    if (t === "InternalIP" && ip.family === 6 && internalIPv6 === undefined) internalIPv6 = ip.text;
  });

  let eligible = meta["deletionTimestamp"] === undefined || meta["deletionTimestamp"] === null;
  for (const t of r.list(spec["taints"], "spec.taints")) if (isObj(t) && t["key"] === TO_BE_DELETED_TAINT) eligible = false;
  const labels = r.obj(meta["labels"], "metadata.labels");
  const zone = labels && r.str(labels[ZONE_LABEL], `metadata.labels["${ZONE_LABEL}"]`);
  const notes: string[] = [];
  const annotations = isObj(meta["annotations"]) ? meta["annotations"] : {};
  const flannel = flannelVtepOf(annotations, notes);
  const flannelAnnotations: Record<string, string> = {};
  for (const k of Object.values(FLANNEL)) if (typeof annotations[k] === "string") flannelAnnotations[k] = annotations[k];

  if (r.problems.length) return { problems: r.problems };
  return {
    ok: {
      name, addresses, eligible, notes, flannelAnnotations, ...(zone !== undefined && { zone }), ...(flannel && { flannel }),
      ...(internalIPv4 !== undefined && { internalIPv4 }), ...(internalIPv6 !== undefined && { internalIPv6 }),
      ...(podCIDR !== undefined && { podCIDR }), ...(podCIDRv6 !== undefined && { podCIDRv6 }),
    },
  };
}

/**
 * A Node's flannel VXLAN endpoint from its annotations (flannel's backend/vxlan: backend-type
 * "vxlan", backend-data {"VNI":n,"VtepMAC":"..."}, public-ip), or undefined without them. An
 * annotation that cannot be used is left out with a note: the Node stays usable (its MAC is then
 * derived, as for a Node that never ran flannel).
 */
export function flannelVtepOf(annotations: Record<string, unknown>, notes: string[]): FlannelVtep | undefined {
  const type = annotations[FLANNEL.backendType], data = annotations[FLANNEL.backendData], pub = annotations[FLANNEL.publicIP];
  if (type !== undefined && type !== "vxlan") {
    if (data !== undefined) notes.push(`${FLANNEL.backendType} is ${describe(type)}, not vxlan: its backend-data names no VTEP`);
    return undefined;
  }
  const out: FlannelVtep = {};
  if (typeof data === "string" && data !== "" && data !== "null") {
    let parsed: unknown;
    try { parsed = JSON.parse(data); } catch { parsed = undefined; }
    const mac = isObj(parsed) ? parsed["VtepMAC"] : undefined, vni = isObj(parsed) ? parsed["VNI"] : undefined;
    const bytes = typeof mac === "string" ? parseMac(mac) : undefined;
    if (bytes && (bytes[0]! & 1) === 0) out.vtepMAC = (mac as string).toLowerCase();
    else notes.push(`${FLANNEL.backendData} is ${describe(data)}; expected {"VNI":1,"VtepMAC":"<unicast MAC>"}`);
    if (typeof vni === "number" && Number.isInteger(vni) && vni >= 0 && vni <= 0xffffff) out.vni = vni;
  }
  if (typeof pub === "string") {
    const ip = parseIp(pub);
    if (ip?.family === 4) out.publicIP = formatIp(ip);
    else notes.push(`${FLANNEL.publicIP} is ${describe(pub)}; expected an IPv4 address`);
  }
  return out.vtepMAC !== undefined || out.publicIP !== undefined ? out : undefined;
}

/** Another node as the overlay needs it, or why it cannot be one yet: its flannel VTEP when it
 *  publishes one, else its first IPv4 InternalIP (and the MAC every wasp node derives from it). */
export function peerOf(n: KubeNode): PeerNodeConfig | { skip: string } {
  if (n.podCIDR === undefined) return { skip: "has no IPv4 pod CIDR yet (spec.podCIDR)" };
  const underlayIP = n.flannel?.publicIP ?? n.internalIPv4;
  if (underlayIP === undefined) return { skip: "has no IPv4 InternalIP in status.addresses" };
  return {
    name: n.name, underlayIP, podCIDR: n.podCIDR, ...(n.podCIDRv6 !== undefined && { podCIDRv6: n.podCIDRv6 }),
    ...(n.flannel?.vtepMAC !== undefined && { vtepMAC: n.flannel.vtepMAC }),
  };
}

// ─── joining a Service with its slices ───

/**
 * The internal services for one Kubernetes Service: one per service port, each with the backends of
 * the slice ports that match it by name and protocol, on that slice port's number. One per port
 * because a named targetPort can resolve to different numbers on different endpoints.
 */
export function joinService(svc: KubeService, slices: Iterable<KubeSlice>): ServiceConfig[] {
  const common = {
    name: svc.name, namespace: svc.namespace, type: svc.type, clusterIPs: svc.clusterIPs, externalIPs: svc.externalIPs,
    loadBalancerIPs: svc.loadBalancerIPs, loadBalancerSourceRanges: svc.loadBalancerSourceRanges,
    sessionAffinity: svc.sessionAffinity, affinityTimeoutSec: svc.affinityTimeoutSec,
    externalTrafficPolicy: svc.externalTrafficPolicy, internalTrafficPolicy: svc.internalTrafficPolicy,
    ...(svc.healthCheckNodePort !== undefined && { healthCheckNodePort: svc.healthCheckNodePort }),
  };
  if (svc.ignored) return [{ ...common, ignored: true, ports: svc.ports, backends: [] }];
  const sliceList = [...slices];
  return svc.ports.map((p): ServiceConfig => {
    const backends: BackendConfig[] = [];
    const seen = new Set<string>();
    for (const sl of sliceList) {
      const sp = sl.ports.find((x) => x.name === (p.name ?? "") && x.protocol === p.protocol);
      if (!sp) continue;
      for (const e of sl.endpoints) {
        const k = `${e.ip}|${sp.port}`;
        if (seen.has(k)) continue;
        seen.add(k);
        backends.push({
          ip: e.ip, port: sp.port, ready: e.ready, serving: e.serving, terminating: e.terminating,
          ...(e.nodeName !== undefined && { nodeName: e.nodeName }), ...(e.hints && { hints: e.hints }),
        });
      }
    }
    return { ...common, ignored: false, ports: [p], backends };
  });
}
