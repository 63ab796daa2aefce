// The network configuration of a "wasp" network: schema and pure validation (no files, no clock).
import { z } from "zod";
import { parseCidr } from "../ipam/cidr.js";

export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  podCIDR: string;
  podCIDRv6?: string;
  /** Pod MTU: underlayMTU - 50 (the VXLAN overhead) unless given. */
  mtu: number;
  underlayMTU: number;
  /** Root of the IPAM store; the network's records live in <dataDir>/<name>/. */
  dataDir: string;
  dns: Dns;
  daemonSocket?: string;
  runtimeConfig?: Record<string, unknown>;
  prevResult?: unknown;
  /** GC: the attachments to keep (CNI spec 1.1 "cni.dev/valid-attachments"). */
  validAttachments?: Array<{ containerID: string; ifname: string }>;
}

export interface Problem {
  path: string;
  message: string;
}

export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";
export const DEFAULT_UNDERLAY_MTU = 1500;
/** RFC 7348 VXLAN over IPv4: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;

const strList = z.array(z.string());
const attachment = z.object({ containerID: z.string().min(1), ifname: z.string().min(1) });

const schema = z.looseObject({
  cniVersion: z.string(),
  // CNI spec: a network name starts with an alphanumeric, then alphanumerics, '_', '.', '-'.
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.\-]*$/, "must start with a letter or digit, then letters, digits, '_', '.', '-'"),
  type: z.string().min(1),
  podCIDR: z.string(),
  podCIDRv6: z.string().optional(),
  mtu: z.number().int().min(576).max(65535).optional(),
  underlayMTU: z.number().int().min(626).max(65535).optional(),
  dataDir: z.string().startsWith("/", "must be an absolute path").optional(),
  dns: z.object({ nameservers: strList.optional(), domain: z.string().optional(), search: strList.optional(), options: strList.optional() }).optional(),
  daemonSocket: z.string().startsWith("/", "must be an absolute path").optional(),
  runtimeConfig: z.record(z.string(), z.unknown()).optional(),
  prevResult: z.record(z.string(), z.unknown()).optional(),
  "cni.dev/valid-attachments": z.array(attachment).optional(),
  // libcni sends the same list under this name too (the spec's earlier spelling).
  "cni.dev/attachments": z.array(attachment).optional(),
});

function issueText(i: z.core.$ZodIssue): Problem {
  const path = i.path.map((p) => (typeof p === "number" ? `[${p}]` : String(p))).join(".").replace(/\.\[/g, "[") || "(config)";
  if (i.code === "invalid_type" && !("input" in i && i.input !== undefined)) return { path, message: `${path} is missing` };
  const shown = "input" in i && i.input !== undefined ? ` (${JSON.stringify(i.input)})` : "";
  const why = i.message.replace(/^Invalid input: /, "");
  return { path, message: `${path}${shown}: ${why}` };
}

/** Validates a parsed network config; reports every problem at once. */
export function validateNetConf(raw: unknown): { config: NetConf } | { problems: Problem[] } {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { problems: [{ path: "(config)", message: "the network config is not a JSON object" }] };
  }
  const r = schema.safeParse(raw, { reportInput: true });
  const problems: Problem[] = r.success ? [] : r.error.issues.map(issueText);
  const c = raw as Record<string, unknown>;
  if (typeof c.podCIDR === "string") {
    const p = parseCidr(c.podCIDR);
    if (!p) problems.push({ path: "podCIDR", message: `podCIDR ${c.podCIDR} is not a CIDR` });
    else if (p.family !== 4) problems.push({ path: "podCIDR", message: `podCIDR ${c.podCIDR} is not IPv4; put an IPv6 pod CIDR in podCIDRv6` });
    else if (p.prefix > 30) problems.push({ path: "podCIDR", message: `podCIDR ${c.podCIDR} has no room for a pod; the prefix must be /30 or shorter` });
  }
  if (typeof c.podCIDRv6 === "string") {
    const p = parseCidr(c.podCIDRv6);
    if (!p) problems.push({ path: "podCIDRv6", message: `podCIDRv6 ${c.podCIDRv6} is not a CIDR` });
    else if (p.family !== 6) problems.push({ path: "podCIDRv6", message: `podCIDRv6 ${c.podCIDRv6} is not IPv6` });
    else if (p.prefix > 126) problems.push({ path: "podCIDRv6", message: `podCIDRv6 ${c.podCIDRv6} has no room for a pod; the prefix must be /126 or shorter` });
  }
  const underlayMTU = typeof c.underlayMTU === "number" ? c.underlayMTU : DEFAULT_UNDERLAY_MTU;
  if (typeof c.mtu === "number" && c.mtu > underlayMTU - VXLAN_OVERHEAD) {
    problems.push({ path: "mtu", message: `mtu ${c.mtu} does not fit a VXLAN packet into underlayMTU ${underlayMTU}; at most ${underlayMTU - VXLAN_OVERHEAD}` });
  }
  const mtu = typeof c.mtu === "number" ? c.mtu : underlayMTU - VXLAN_OVERHEAD;
  if (typeof c.podCIDRv6 === "string" && mtu < 1280) {
    problems.push({ path: "mtu", message: `mtu ${mtu} is below IPv6's minimum 1280 (RFC 8200 §5) and podCIDRv6 is set` });
  }
  if (!r.success || problems.length) return { problems };
  const d = r.data;
  return {
    config: {
      cniVersion: d.cniVersion, name: d.name, type: d.type, podCIDR: d.podCIDR, podCIDRv6: d.podCIDRv6,
      mtu, underlayMTU, dataDir: d.dataDir ?? DEFAULT_DATA_DIR, dns: d.dns ?? {},
      daemonSocket: d.daemonSocket, runtimeConfig: d.runtimeConfig, prevResult: d.prevResult,
      validAttachments: d["cni.dev/valid-attachments"] ?? d["cni.dev/attachments"],
    },
  };
}

/** One message for a list of problems, e.g. for a CNI error's msg. */
export function describeProblems(problems: Problem[]): string {
  return problems.length === 1 ? problems[0]!.message : `${problems.length} problems: ${problems.map((p) => p.message).join("; ")}`;
}
