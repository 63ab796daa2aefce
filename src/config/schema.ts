// The shape of the node config, field by field. Each value check states the rule in its message so a
// problem reads "<path> is <value>; <rule>". Checks that relate several fields live in validate.ts.

import { z } from "zod";
import { formatCidr, isV4Mapped, parseCidr, parseIp, type Family } from "../model/addr.js";

/** A value as a problem sentence names it: `70000`, `"tcp"`, `missing`, `a list`. */
export function describe(v: unknown): string {
  if (v === undefined) return "missing";
  if (v === null) return "empty";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return "a list";
  return "a mapping";
}

const rule = (hint: string) => ({ error: (iss: { input?: unknown }) => `is ${describe(iss.input)}; ${hint}` });

const int = (lo: number, hi: number, hint: string) =>
  z.number(rule(hint)).refine((v) => Number.isInteger(v) && v >= lo && v <= hi, rule(hint));

const PORT_RULE = "a port is 1-65535";
export const PortSchema = int(1, 65535, PORT_RULE);
export const NODE_PORT_MIN = 30000;
export const NODE_PORT_MAX = 32767;
const NodePortSchema = int(NODE_PORT_MIN, NODE_PORT_MAX, `a nodePort is ${NODE_PORT_MIN}-${NODE_PORT_MAX}`);
const Bool = z.boolean(rule("expected true or false"));

// Kubernetes names: a DNS-1123 label for services and namespaces, a DNS-1123 subdomain for nodes.
const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_RULE = "a name is lowercase letters, digits and '-', at most 63, starting and ending alphanumeric";
const Label = z.string(rule(LABEL_RULE)).refine((s) => LABEL.test(s), rule(LABEL_RULE));
const NODE_NAME_RULE = "a node name is a DNS subdomain (lowercase letters, digits, '-' and '.')";
const NodeName = z.string(rule(NODE_NAME_RULE)).refine((s) => SUBDOMAIN.test(s), rule(NODE_NAME_RULE));
// A label value (topology.kubernetes.io/zone): at most 63 of letters, digits, '-', '_' and '.', alphanumeric at the ends.
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
const ZONE_RULE = "a zone is a label value: at most 63 letters, digits, '-', '_' and '.', starting and ending alphanumeric";
const Zone = z.string(rule(ZONE_RULE)).refine((s) => LABEL_VALUE.test(s), rule(ZONE_RULE));

const ipOf = (family: Family | undefined, hint: string) =>
  z.string(rule(hint)).superRefine((s, ctx) => {
    const ip = parseIp(s);
    if (!ip || (family !== undefined && ip.family !== family)) {
      ctx.addIssue({ code: "custom", message: `is ${describe(s)}; ${hint}` });
    } else if (isV4Mapped(ip)) {
      ctx.addIssue({ code: "custom", message: `is ${describe(s)}, an IPv4-mapped IPv6 address; write it as IPv4` });
    }
  });
export const Ipv4Schema = ipOf(4, "expected an IPv4 address like 10.99.0.1");
export const IpSchema = ipOf(undefined, "expected an IPv4 or IPv6 address");

const cidrOf = (family: Family, example: string) =>
  z.string(rule(`expected an IPv${family} CIDR like ${example}`)).superRefine((s, ctx) => {
    const c = parseCidr(s);
    if (!c || c.family !== family) {
      ctx.addIssue({ code: "custom", message: `is ${describe(s)}; expected an IPv${family} CIDR like ${example}` });
    } else if (c.hostBitsSet) {
      ctx.addIssue({ code: "custom", message: `is ${describe(s)}, which has bits set after the prefix; write ${formatCidr(c)}` });
    }
  });
export const Cidr4Schema = cidrOf(4, "10.244.1.0/24");
export const Cidr6Schema = cidrOf(6, "fd00:10:244:1::/64");
const CIDR_RULE = "expected a CIDR like 203.0.113.0/24 or 2001:db8::/64";
export const CidrSchema = z.string(rule(CIDR_RULE)).superRefine((s, ctx) => {
  const c = parseCidr(s);
  if (!c) ctx.addIssue({ code: "custom", message: `is ${describe(s)}; ${CIDR_RULE}` });
  else if (c.hostBitsSet) ctx.addIssue({ code: "custom", message: `is ${describe(s)}, which has bits set after the prefix; write ${formatCidr(c)}` });
});

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const MAC_RULE = "expected a unicast MAC like 02:0a:63:00:02:01";
const MacSchema = z.string(rule(MAC_RULE)).refine((s) => MAC.test(s) && (parseInt(s.slice(0, 2), 16) & 1) === 0, rule(MAC_RULE));

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}
export const MAGLEV_MIN = 7;
export const MAGLEV_MAX = 131071;
const MAGLEV_RULE = `a Maglev table size is a prime ${MAGLEV_MIN}-${MAGLEV_MAX} (e.g. 1021, 16381, 65521)`;
const MaglevSizeSchema = int(MAGLEV_MIN, MAGLEV_MAX, MAGLEV_RULE).refine(isPrime, rule(MAGLEV_RULE));

const obj = <S extends z.ZodRawShape>(shape: S, what: string) => z.strictObject(shape, rule(`expected a mapping of ${what}`));
const list = <T extends z.ZodType>(item: T, what: string) => z.array(item, rule(`expected a list of ${what}`));
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, rule(`expected ${values.slice(0, -1).join(", ")}${values.length > 1 ? " or " : ""}${values[values.length - 1]}`));

export const NodeSchema = obj({
  name: NodeName,
  underlayIP: Ipv4Schema,
  podCIDR: Cidr4Schema,
  podCIDRv6: Cidr6Schema.optional(),
  underlayMTU: int(576, 65535, "an MTU is 576-65535").default(1500),
  nodeAddresses: list(IpSchema, "addresses").optional(),
  vtepMAC: MacSchema.optional(),
  /** This node's topology.kubernetes.io/zone: endpoints hinted for it are preferred (hints.forZones). */
  zone: Zone.optional(),
}, "node settings (name, underlayIP, podCIDR, ...)");

export const PeerNodeSchema = obj({
  name: NodeName,
  underlayIP: Ipv4Schema,
  podCIDR: Cidr4Schema,
  podCIDRv6: Cidr6Schema.optional(),
  vtepMAC: MacSchema.optional(),
}, "node settings (name, underlayIP, podCIDR, podCIDRv6, vtepMAC)");

export const ServicePortSchema = obj({
  name: Label.optional(),
  port: PortSchema,
  protocol: oneOf(["TCP", "UDP", "SCTP"]).default("TCP"),
  targetPort: PortSchema.optional(),
  nodePort: NodePortSchema.optional(),
}, "port settings (name, port, protocol, targetPort, nodePort)");

export const BackendSchema = obj({
  ip: IpSchema,
  port: PortSchema.optional(),
  ready: Bool.default(true),
  serving: Bool.optional(),
  terminating: Bool.default(false),
  nodeName: NodeName.optional(),
  /** An EndpointSlice endpoint's hints (discovery.k8s.io/v1): the zones and nodes it is meant for. */
  hints: obj({
    forZones: list(Zone, "zones").default([]),
    forNodes: list(NodeName, "node names").default([]),
  }, "hints (forZones, forNodes)").optional(),
}, "backend settings (ip, port, ready, serving, terminating, nodeName, hints)");

const CLUSTER_IP_RULE = 'expected an IPv4 or IPv6 address, or "None" for a headless service';
const ClusterIpSchema = z.string(rule(CLUSTER_IP_RULE)).refine((s) => s === "None" || parseIp(s) !== undefined, rule(CLUSTER_IP_RULE));

export const DEFAULT_AFFINITY_TIMEOUT_SEC = 10800;
export const ServiceSchema = obj({
  name: Label,
  namespace: Label.default("default"),
  type: oneOf(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]).default("ClusterIP"),
  clusterIP: ClusterIpSchema.optional(),
  clusterIPs: list(ClusterIpSchema, "addresses").optional(),
  externalName: z.string(rule("expected a DNS name")).optional(),
  externalIPs: list(IpSchema, "addresses").default([]),
  loadBalancerIPs: list(IpSchema, "addresses").default([]),
  /** Sources new connections to the LoadBalancer IPs may come from (none: any). */
  loadBalancerSourceRanges: list(CidrSchema, "CIDRs").default([]),
  ports: list(ServicePortSchema, "ports").default([]),
  sessionAffinity: oneOf(["None", "ClientIP"]).default("None"),
  sessionAffinityConfig: obj({
    clientIP: obj({
      timeoutSeconds: int(1, 86400, "a timeout is 1-86400 seconds").default(DEFAULT_AFFINITY_TIMEOUT_SEC),
    }, "settings (timeoutSeconds)").prefault({}),
  }, "settings (clientIP)").optional(),
  externalTrafficPolicy: oneOf(["Cluster", "Local"]).default("Cluster"),
  internalTrafficPolicy: oneOf(["Cluster", "Local"]).default("Cluster"),
  /** The TCP port on which this node tells load balancers how many local endpoints it has. */
  healthCheckNodePort: NodePortSchema.optional(),
  backends: list(BackendSchema, "backends").default([]),
}, "service settings (name, type, clusterIPs, ports, backends, ...)");

/** Top-level settings, parsed one by one so that a bad one does not hide the problems of the others. */
export const TOP_LEVEL = {
  mode: oneOf(["tun", "tap"]).default("tun"),
  node: NodeSchema,
  serviceCIDR: Cidr4Schema.default("10.96.0.0/16"),
  serviceCIDRv6: Cidr6Schema.optional(),
  clusterCIDR: Cidr4Schema.default("10.244.0.0/16"),
  clusterCIDRv6: Cidr6Schema.optional(),
  vxlan: obj({
    vni: int(0, 0xffffff, "a VXLAN VNI is 0-16777215 (24 bits, RFC 7348)").default(1),
    port: PortSchema.default(8472),
  }, "settings (vni, port)").prefault({}),
  // The most flows tracked: the flow table grows with the flows up to this (as nf_conntrack_max
  // bounds the kernel's), then evicts. The engine's table holds at most 2^24.
  conntrack: obj({
    capacity: int(1024, 1 << 24, "a conntrack capacity is 1024-16777216 flows").default(262144),
  }, "settings (capacity)").prefault({}),
  // The engine's tables grow with what is loaded; these are optional ceilings, never sizes: past
  // one, what fits is applied and the rest waits (wasp status says so). memoryMiB caps the engine's
  // whole memory (its packet buffers, about 40 MiB, included).
  tables: obj({
    services: int(1, 1 << 20, "tables.services is 1-1048576 service entries").optional(),
    backends: int(1, 1 << 22, "tables.backends is 1-4194304 backends").optional(),
    memoryMiB: int(48, 4096, "tables.memoryMiB is 48-4096 (the packet buffers take about 40 of it)").optional(),
  }, "settings (services, backends, memoryMiB)").optional(),
  loadBalancing: obj({
    mode: oneOf(["random", "maglev"]).default("random"),
    maglevTableSize: MaglevSizeSchema.optional(),
  }, "settings (mode, maglevTableSize)").prefault({}),
  services: list(z.unknown(), "services").default([]),
  nodes: list(z.unknown(), "nodes").default([]),
} as const;

export type ServiceInput = z.output<typeof ServiceSchema>;
export type PeerNodeInput = z.output<typeof PeerNodeSchema>;

// ─── the validated config (output of validateConfig) ───

export type Protocol = "TCP" | "UDP" | "SCTP";
export type TrafficPolicy = "Cluster" | "Local";

export interface NodeConfig {
  name: string;
  underlayIP: string;
  podCIDR: string;
  podCIDRv6?: string;
  underlayMTU: number;
  /** Addresses NodePorts answer on; defaults to [underlayIP]. */
  nodeAddresses: string[];
  vtepMAC?: string;
  /** topology.kubernetes.io/zone of this node. */
  zone?: string;
}

export interface PeerNodeConfig {
  name: string;
  underlayIP: string;
  podCIDR: string;
  podCIDRv6?: string;
  vtepMAC?: string;
}

export interface ServicePortConfig {
  name?: string;
  port: number;
  protocol: Protocol;
  targetPort?: number;
  nodePort?: number;
}

export interface BackendConfig {
  ip: string;
  /** Overrides the port's targetPort for this backend. */
  port?: number;
  ready: boolean;
  /** Defaults to `ready`, as in an EndpointSlice. */
  serving: boolean;
  terminating: boolean;
  nodeName?: string;
  /**
   * Topology hints, as an EndpointSlice's endpoint carries them: the zones (hints.forZones) and nodes
   * (hints.forNodes) whose traffic it should take. The EndpointSlice controller sets them for
   * spec.trafficDistribution (PreferClose / PreferSameZone: zones; PreferSameNode: nodes) and for
   * the service.kubernetes.io/topology-mode annotation; kube-proxy goes by the hints alone.
   */
  hints?: { forZones: string[]; forNodes: string[] };
}

export interface ServiceConfig {
  name: string;
  namespace: string;
  type: "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName";
  /** Headless (clusterIP "None") and ExternalName services are accepted and programme nothing. */
  ignored: boolean;
  clusterIPs: string[];
  externalIPs: string[];
  loadBalancerIPs: string[];
  /**
   * spec.loadBalancerSourceRanges: a new connection to a LoadBalancer IP from a source outside these
   * prefixes is dropped, as kube-proxy's firewall does; empty: every source. Each family's IPs use the
   * ranges of their family (an IPv6 IP with only IPv4 ranges takes every source, as in kube-proxy).
   */
  loadBalancerSourceRanges: string[];
  ports: ServicePortConfig[];
  sessionAffinity: "None" | "ClientIP";
  affinityTimeoutSec: number;
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  /** type LoadBalancer with externalTrafficPolicy Local: served by the daemon as kube-proxy does. */
  healthCheckNodePort?: number;
  backends: BackendConfig[];
}

export interface Config {
  mode: "tun" | "tap";
  node: NodeConfig;
  serviceCIDR: string;
  serviceCIDRv6?: string;
  clusterCIDR: string;
  clusterCIDRv6?: string;
  vxlan: { vni: number; port: number };
  /** The most flows tracked (the table grows up to it). */
  conntrack: { capacity: number };
  /** Ceilings on the engine's tables, which otherwise grow with what is loaded. */
  tables?: { services?: number; backends?: number; memoryMiB?: number };
  /** maglevTableSize absent: the core picks a prime at least 100 times each service's backend count. */
  loadBalancing: { mode: "random" | "maglev"; maglevTableSize?: number };
  services: ServiceConfig[];
  /** The other nodes of the cluster. */
  nodes: PeerNodeConfig[];
}

/** One thing wrong with a config: where (services[2].ports[0].port) and a sentence ("is 70000; a port is 1-65535"). */
export interface Problem {
  path: string;
  message: string;
  /** For syntax errors: 1-based position in the file. */
  line?: number;
  column?: number;
}

/**
 * What changed from the config `since` to this one, from a source that knows (the Kubernetes
 * source's dirty Services, as kube-proxy's change trackers hand over previous and current per
 * name). A changed Service's old parts are in `gone`, its new ones in `came`; `settingsChanged`
 * says whether anything but the services changed. A consumer whose running config is not `since`
 * (it rejected one in between) diffs by itself instead.
 */
export interface ConfigChanges {
  since: Config;
  came: readonly ServiceConfig[];
  gone: readonly ServiceConfig[];
  settingsChanged: boolean;
}
