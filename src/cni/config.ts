// The network configuration of a "wasp" network: schema and pure validation (no files, no clock).
import { closest } from "../config/suggest.js";
import { parseCidr } from "../ipam/cidr.js";
import { VXLAN_OVERHEAD } from "../model/vxlan.js";

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
  /** The daemon's control socket (STATUS asks whether it answers). */
  daemonSocket?: string;
  /** The daemon's CNI socket: dist/wasp hands every call to it (native/front/wasp-front.c reads
   *  this field from stdin itself; $WASP_CNI_SOCKET overrides it, /run/wasp/cni.sock without). */
  cniSocket?: string;
  runtimeConfig?: Record<string, unknown>;
  prevResult?: unknown;
  /** GC: the attachments to keep (CNI spec 1.1 "cni.dev/valid-attachments"). */
  validAttachments?: Array<{ containerID: string; ifname: string }>;
}

export interface Problem {
  path: string;
  message: string;
}

/** Every field the wasp plugin reads, and those a runtime adds to any plugin's config (CNI spec:
 *  name and cniVersion from the conflist, prevResult, runtimeConfig from capabilities, args). */
export const KNOWN_FIELDS = [
  "cniVersion", "name", "type", "podCIDR", "podCIDRv6", "mtu", "underlayMTU", "dataDir", "dns", "daemonSocket", "cniSocket",
  "runtimeConfig", "prevResult", "capabilities", "args", "cni.dev/valid-attachments", "cni.dev/attachments",
] as const;

export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";
export const DEFAULT_UNDERLAY_MTU = 1500;

// Hand-written rather than zod: the plugin is a short-lived process on every pod start, and
// loading zod cost 75-100 ms of it (measured with a bundled build); these checks cost nothing.
type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const shown = (v: unknown) => JSON.stringify(v);
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.\-]*$/;

function kind(v: unknown): string {
  return Array.isArray(v) ? "array" : v === null ? "null" : typeof v;
}

/** Checks c[key] against a type; records "missing" or "wrong type" problems; true when usable. */
function want(c: Obj, key: string, type: "string" | "number" | "object" | "string[]", required: boolean, out: Problem[], at = ""): boolean {
  const path = at + key, v = c[key];
  if (v === undefined) {
    if (required) out.push({ path, message: `${path} is missing` });
    return false;
  }
  const ok = type === "string[]" ? Array.isArray(v) && v.every((x) => typeof x === "string")
    : type === "object" ? isObj(v)
    : type === "number" ? typeof v === "number" && Number.isFinite(v)
    : typeof v === type;
  if (!ok) out.push({ path, message: `${path} (${shown(v)}): expected ${type === "string[]" ? "a list of strings" : type === "object" ? "an object" : `a ${type}`}, got ${kind(v)}` });
  return ok;
}

function intIn(c: Obj, key: string, lo: number, hi: number, out: Problem[]): void {
  if (!want(c, key, "number", false, out)) return;
  const v = c[key] as number;
  if (!Number.isInteger(v) || v < lo || v > hi) out.push({ path: key, message: `${key} (${v}): must be a whole number from ${lo} to ${hi}` });
}

function absPath(c: Obj, key: string, out: Problem[]): void {
  if (want(c, key, "string", false, out) && !(c[key] as string).startsWith("/")) {
    out.push({ path: key, message: `${key} (${shown(c[key])}): must be an absolute path` });
  }
}

function attachments(c: Obj, key: string, out: Problem[]): void {
  const v = c[key];
  if (v === undefined) return;
  if (!Array.isArray(v)) { out.push({ path: key, message: `${key} (${shown(v)}): expected a list of {containerID, ifname}` }); return; }
  v.forEach((a, i) => {
    const at = `${key}[${i}].`;
    if (!isObj(a)) { out.push({ path: `${key}[${i}]`, message: `${key}[${i}] (${shown(a)}): expected an object` }); return; }
    want(a, "containerID", "string", true, out, at);
    want(a, "ifname", "string", true, out, at);
  });
}

function structural(c: Obj): Problem[] {
  const out: Problem[] = [];
  want(c, "cniVersion", "string", true, out);
  // CNI spec: a network name starts with an alphanumeric, then alphanumerics, '_', '.', '-'.
  if (want(c, "name", "string", true, out) && !NAME_RE.test(c.name as string)) {
    out.push({ path: "name", message: `name (${shown(c.name)}): must start with a letter or digit, then letters, digits, '_', '.', '-'` });
  }
  if (want(c, "type", "string", true, out) && c.type === "") out.push({ path: "type", message: "type is empty" });
  want(c, "podCIDR", "string", true, out);
  want(c, "podCIDRv6", "string", false, out);
  intIn(c, "mtu", 576, 65535, out);
  intIn(c, "underlayMTU", 626, 65535, out);
  absPath(c, "dataDir", out);
  absPath(c, "daemonSocket", out);
  absPath(c, "cniSocket", out);
  if (want(c, "dns", "object", false, out)) {
    const d = c.dns as Obj;
    for (const k of ["nameservers", "search", "options"]) want(d, k, "string[]", false, out, "dns.");
    want(d, "domain", "string", false, out, "dns.");
  }
  want(c, "runtimeConfig", "object", false, out);
  want(c, "prevResult", "object", false, out);
  attachments(c, "cni.dev/valid-attachments", out);
  // libcni sends the same list under this name too (the spec's earlier spelling).
  attachments(c, "cni.dev/attachments", out);
  return out;
}

/**
 * Fields wasp does not read. The CNI spec lets a plugin refuse unknown fields (only `args` must be
 * ignored), and a silently ignored typo is worse: `"mut": 1400` leaves the pods at MTU 1450. An
 * `ipam` section names an IPAM plugin that would never run: wasp allocates from podCIDR itself and
 * keeps its records under dataDir, so the addresses would not be the ones that section promises.
 */
export function strictProblems(c: Record<string, unknown>): Problem[] {
  const out: Problem[] = [];
  for (const k of Object.keys(c)) {
    if ((KNOWN_FIELDS as readonly string[]).includes(k) || k.startsWith("cni.dev/")) continue;
    if (k === "ipam") {
      const t = isObj(c.ipam) && typeof c.ipam.type === "string" ? ` (type ${JSON.stringify(c.ipam.type)})` : "";
      out.push({ path: k, message: `ipam${t}: wasp does its own IPAM, so an IPAM plugin is never run; remove the ipam section: pod addresses come from podCIDR (and podCIDRv6), their records live under dataDir (default ${DEFAULT_DATA_DIR}/<name>/)` });
      continue;
    }
    const guess = closest(k, KNOWN_FIELDS);
    out.push({ path: k, message: `${k} is not a field the wasp plugin reads${guess ? `; did you mean ${guess}?` : ""} (fields: ${KNOWN_FIELDS.slice(3, 11).join(", ")})` });
  }
  return out;
}

/** Validates a parsed network config; reports every problem at once. `strict`: fields wasp does
 *  not read are problems too (ADD, CHECK, STATUS); else they come back as warnings (DEL and GC,
 *  which must clean up whatever the config says). */
export function validateNetConf(raw: unknown, strict = true): { config: NetConf; warnings: Problem[] } | { problems: Problem[] } {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { problems: [{ path: "(config)", message: "the network config is not a JSON object" }] };
  }
  const c = raw as Obj;
  const problems = structural(c);
  const unread = strictProblems(c);
  if (strict) problems.push(...unread);
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
  if (problems.length) return { problems };
  const d = c as Obj & {
    cniVersion: string; name: string; type: string; podCIDR: string; podCIDRv6?: string; dataDir?: string; dns?: Dns;
    daemonSocket?: string; cniSocket?: string; runtimeConfig?: Obj; prevResult?: Obj;
    "cni.dev/valid-attachments"?: NetConf["validAttachments"]; "cni.dev/attachments"?: NetConf["validAttachments"];
  };
  return {
    config: {
      cniVersion: d.cniVersion, name: d.name, type: d.type, podCIDR: d.podCIDR, podCIDRv6: d.podCIDRv6,
      mtu, underlayMTU, dataDir: d.dataDir ?? DEFAULT_DATA_DIR, dns: d.dns ?? {},
      daemonSocket: d.daemonSocket, cniSocket: d.cniSocket, runtimeConfig: d.runtimeConfig, prevResult: d.prevResult,
      validAttachments: d["cni.dev/valid-attachments"] ?? d["cni.dev/attachments"],
    },
    warnings: strict ? [] : unread,
  };
}

/** One message for a list of problems, e.g. for a CNI error's msg. */
export function describeProblems(problems: Problem[]): string {
  return problems.length === 1 ? problems[0]!.message : `${problems.length} problems: ${problems.map((p) => p.message).join("; ")}`;
}
