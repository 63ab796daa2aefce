// The node picture in routed TUN mode (shared/design.md): wasp0 holds the first address of the
// node's pod CIDR; policy rules send every packet from a local pod into wasp0 (the engine is the
// node's pod router), and the main table sends service and remote pod prefixes there too.
//
// ╒═══ policy rules, by preference (IPv4) ═══╕
//    90  iif wasp0 lookup local        what the engine wrote back may be for this node ...
//    91  iif wasp0 lookup main         ... or for a pod (a /32 via its veth) or elsewhere;
//    92  iif wasp0 unreachable         never back into wasp0 by the rules below (a loop)
//   100  from <podCIDR> lookup 119     every packet of a local pod enters the engine
//   110  to <node addr> tcp dport 30000-32767 lookup 119    NodePorts on the node's own addresses
//   111  to <node addr> udp dport 30000-32767 lookup 119
//  1000  lookup local                  the kernel's rule, moved from 0 (see below)
// table 119 ("wasp"): default dev wasp0
// main: serviceCIDR, the other nodes' pod CIDRs, externalIPs and loadBalancerIPs (/32) dev wasp0
// (TAP mode: each of these via 169.254.1.1 onlink, a permanent neighbour with the engine's MAC)
//
// Why the local rule moves: at pref 0 it would deliver (a) a backend's reply to the node's own
// address (node -> ClusterIP) before the engine reverses it, and (b) NodePort traffic to the node's
// address, which must be DNATed. Behind the pod and NodePort rules, both reach wasp0; what the
// engine writes back comes in on wasp0 and meets the local table first (pref 90).
//
// Dual-stack (node.podCIDRv6 set): the same picture in IPv6 (ip -6 rules with the same preferences,
// table 119, wasp0 holding the first address of the IPv6 pod CIDR /128, serviceCIDRv6 and the
// other nodes' IPv6 pod CIDRs routed to wasp0; in TAP mode via fe80::1 with a permanent neighbour).
//
// Everything has a fixed name or preference, so a restart after kill -9 finds and removes what
// the killed daemon left (the kernel removes wasp0 itself, and its routes, with the last fd).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { writeSysctl } from "../io/sysctl.js";
import { NODE_PORT_MAX, NODE_PORT_MIN, type Config } from "../config/index.js";
import { ENGINE_MAC, TAP_MAC } from "../engine/options.js";
import { firstAddress, firstAddress6, formatIp, parseIp } from "../model/index.js";

export const DEVICE = "wasp0";
/** The TAP through which TSO packets for other nodes leave whole (UDP-tunnel GSO); like wasp0 it
 *  goes with the daemon's fd. */
export const TUNNEL_TAP = "wasp0tnl";
export const TABLE = 119; // 0x77, "w"
export const PREF_LOCAL_FROM_WASP = 90;
export const PREF_MAIN_FROM_WASP = 91;
export const PREF_UNREACHABLE_FROM_WASP = 92;
export const PREF_PODS = 100;
export const PREF_NODEPORT_TCP = 110;
export const PREF_NODEPORT_UDP = 111;
export const PREF_LOCAL_MOVED = 1000;
export const OUR_PREFS = [PREF_LOCAL_FROM_WASP, PREF_MAIN_FROM_WASP, PREF_UNREACHABLE_FROM_WASP, PREF_PODS,
  PREF_NODEPORT_TCP, PREF_NODEPORT_UDP] as const;
/**
 * The source the engine gives hairpin and external (NodePort, externalIP) traffic it masquerades is
 * wasp0's own address, the first of this node's pod CIDR (NodeNetInputs.gateway). A pod's reply to
 * it must come back through this node's engine to be reversed, and this address does so from
 * everywhere: a local pod's reply meets the pod rule (pref 100, before the moved local rule); a
 * pod on another node sends it to this node's pod CIDR, i.e. through the overlay into this
 * engine. A non-local address such as 169.254.1.2 works on one node but not across nodes (the
 * other node has no way back), which the two-node test shows.
 */

/** TAP mode: wasp0 has the MAC TAP_MAC (the engine addresses its frames to it) and the node
 *  reaches the engine (ENGINE_MAC, both in engine/options.ts) as the permanent neighbour
 *  GATEWAY_TAP: every route through wasp0 goes via it, so the kernel never has to ARP on the device. */
export const GATEWAY_TAP = "169.254.1.1";
export const GATEWAY_TAP6 = "fe80::1";
export const TUN_QUEUE_LEN = 10000;

type Fam = "-4" | "-6";

/** One address family's part of the picture. */
export interface FamilyInputs {
  podCIDR: string;
  /** First address of podCIDR: wasp0's address. */
  gateway: string;
  serviceCIDR: string | undefined;
  remotePodCIDRs: string[];
  /** externalIPs and loadBalancerIPs (/32, /128): traffic from outside to them must enter wasp0. */
  externalIPs: string[];
  nodeAddresses: string[];
}

/** What the node picture is made from; equal inputs need no change on reload. */
export interface NodeNetInputs {
  /** TAP (L2) instead of TUN: routes go via GATEWAY_TAP. */
  tap: boolean;
  podCIDR: string;
  /** First address of podCIDR: wasp0's address. */
  gateway: string;
  serviceCIDR: string;
  remotePodCIDRs: string[];
  /** externalIPs and loadBalancerIPs (IPv4, /32): traffic from outside to them must enter wasp0. */
  externalIPs: string[];
  nodeAddresses: string[];
  /** Dual-stack nodes: the IPv6 part. */
  v6?: FamilyInputs;
}

export function nodeNetInputs(config: Config): NodeNetInputs {
  const external = (family: 4 | 6) => [...new Set(config.services.filter((sv) => !sv.ignored)
    .flatMap((sv) => [...sv.externalIPs, ...sv.loadBalancerIPs])
    .flatMap((a) => { const ip = parseIp(a); return ip?.family === family ? [`${formatIp(ip)}/${family === 4 ? 32 : 128}`] : []; }))].sort();
  const addresses = (family: 4 | 6) => config.node.nodeAddresses.filter((a) => parseIp(a)?.family === family);
  const v6 = config.node.podCIDRv6;
  return {
    tap: config.mode === "tap",
    podCIDR: config.node.podCIDR,
    gateway: firstAddress(config.node.podCIDR),
    serviceCIDR: config.serviceCIDR,
    remotePodCIDRs: config.nodes.map((n) => n.podCIDR),
    externalIPs: external(4),
    nodeAddresses: addresses(4),
    ...(v6 === undefined ? {} : {
      v6: {
        podCIDR: v6, gateway: firstAddress6(v6), serviceCIDR: config.serviceCIDRv6,
        remotePodCIDRs: config.nodes.flatMap((n) => (n.podCIDRv6 === undefined ? [] : [n.podCIDRv6])),
        externalIPs: external(6), nodeAddresses: addresses(6),
      },
    }),
  };
}

/** The IPv4 part in the shape the IPv6 part has. */
function v4Part(i: NodeNetInputs): FamilyInputs {
  return { podCIDR: i.podCIDR, gateway: i.gateway, serviceCIDR: i.serviceCIDR, remotePodCIDRs: i.remotePodCIDRs, externalIPs: i.externalIPs, nodeAddresses: i.nodeAddresses };
}

function parts(i: NodeNetInputs): Array<[Fam, FamilyInputs]> {
  return [["-4", v4Part(i)], ...(i.v6 ? [["-6", i.v6] as [Fam, FamilyInputs]] : [])];
}

/** The routed prefixes of one family, in the order they are added. */
function routed(f: FamilyInputs): string[] {
  return [...(f.serviceCIDR === undefined ? [] : [f.serviceCIDR]), ...f.remotePodCIDRs, ...f.externalIPs];
}

export function sameInputs(a: NodeNetInputs, b: NodeNetInputs): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export type Runner = (args: string[]) => string;

/** How a prefix reaches wasp0: on the device (TUN), or via the engine's neighbour entry (TAP). */
function through(inputs: NodeNetInputs, fam: Fam = "-4"): string[] {
  if (!inputs.tap) return ["dev", DEVICE];
  return fam === "-4" ? ["via", GATEWAY_TAP, "dev", DEVICE, "onlink"] : ["via", GATEWAY_TAP6, "dev", DEVICE];
}

/** `ip ARGS` in this process's namespace; throws with ip's message. */
export const runIp: Runner = (args) => {
  try {
    return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")} failed: ${err.stderr?.trim() || err.message}`);
  }
};

interface RuleRow { priority: number; table?: string; iif?: string; action?: string; src?: string; dst?: string }

function rules(ip: Runner, fam: Fam = "-4"): RuleRow[] {
  return JSON.parse(ip([fam, "-j", "rule", "show"]) || "[]") as RuleRow[];
}

const hasLocalAt = (rows: RuleRow[], pref: number) =>
  rows.some((r) => r.priority === pref && r.table === "local" && !r.iif && (!r.src || r.src === "all") && !r.dst);

/**
 * Removes what a daemon (this one or a killed one) left: our rules by preference, table 119, and
 * the moved local rule (restored to pref 0 first, so no moment is without one). Safe to repeat.
 */
export function cleanupNodeNet(ip: Runner = runIp): string[] {
  const done: string[] = [];
  const v6 = existsSync("/proc/sys/net/ipv6");
  for (const fam of (v6 ? ["-4", "-6"] : ["-4"]) as Fam[]) {
    const tag = fam === "-6" ? " (IPv6)" : "";
    let rows = rules(ip, fam);
    for (const pref of OUR_PREFS) {
      for (const _ of rows.filter((r) => r.priority === pref)) {
        try { ip([fam, "rule", "del", "pref", String(pref)]); done.push(`rule ${pref}${tag}`); } catch { /* gone */ }
      }
    }
    rows = rules(ip, fam);
    if (!hasLocalAt(rows, 0)) { ip([fam, "rule", "add", "pref", "0", "lookup", "local"]); done.push(`local rule back at 0${tag}`); }
    if (hasLocalAt(rows, PREF_LOCAL_MOVED)) {
      ip([fam, "rule", "del", "pref", String(PREF_LOCAL_MOVED), "lookup", "local"]);
      done.push(`local rule ${PREF_LOCAL_MOVED}${tag}`);
    }
    try { ip([fam, "route", "flush", "table", String(TABLE)]); } catch { /* empty table */ }
  }
  // A device left by a killed daemon vanishes with its fd; one made persistent by someone else does not.
  try { ip(["link", "del", DEVICE]); done.push(`link ${DEVICE}`); } catch { /* not there */ }
  return done;
}

/** Sysctls, address, routes and rules around an open wasp0. */
export function setupNodeNet(inputs: NodeNetInputs, ip: Runner = runIp): void {
  writeSysctl("net.ipv4.ip_forward", "1");
  // rp_filter would drop what the engine writes back (its source is routed via a veth, not wasp0)
  // and pod-to-pod packets on the veths (the pod rule routes their source into wasp0); the
  // effective value is max(all, device), so `all` must be 0 too.
  writeSysctl("net.ipv4.conf.all.rp_filter", "0");
  writeSysctl(`net.ipv4.conf.${DEVICE}.rp_filter`, "0");
  // node -> ClusterIP and NodePort replies come back out of wasp0 with a source of this node.
  writeSysctl(`net.ipv4.conf.${DEVICE}.accept_local`, "1");
  // Early demux hands a packet to a matching local socket before routing, and ip_forward drops a
  // packet that has one: a pod's reply to the node (node -> pod, a TCP or connected-UDP socket of
  // the node) must be forwarded into wasp0 by the pod rule first, so it is turned off.
  writeSysctl("net.ipv4.tcp_early_demux", "0");
  writeSysctl("net.ipv4.udp_early_demux", "0");
  if (inputs.v6) {
    if (!existsSync(`/proc/sys/net/ipv6/conf/${DEVICE}`)) throw new Error("node.podCIDRv6 is set but IPv6 is disabled on this node (no /proc/sys/net/ipv6)");
    writeSysctl("net.ipv6.conf.all.forwarding", "1");
    // The engine is the router: no router advertisements taken, no addresses made up from them.
    writeSysctl(`net.ipv6.conf.${DEVICE}.accept_ra`, "0");
    writeSysctl(`net.ipv6.conf.${DEVICE}.autoconf`, "0");
  } else if (existsSync(`/proc/sys/net/ipv6/conf/${DEVICE}`)) {
    // No router solicitations or MLD reports into the engine: the picture is IPv4.
    writeSysctl(`net.ipv6.conf.${DEVICE}.disable_ipv6`, "1");
  }
  // /32, not the CIDR: an unused pod address then has no route instead of looping through wasp0.
  ip(["addr", "replace", `${inputs.gateway}/32`, "dev", DEVICE]);
  if (inputs.v6) ip(["-6", "addr", "replace", `${inputs.v6.gateway}/128`, "dev", DEVICE, "nodad"]);
  if (inputs.tap) ip(["link", "set", DEVICE, "address", TAP_MAC]);
  // The TUN ring holds txqueuelen packets for the engine: 500 (the default) is 0.1 s of a 5 kpps
  // stream; a longer one rides out the moments the event loop spends on something else.
  ip(["link", "set", DEVICE, "txqueuelen", String(TUN_QUEUE_LEN)]);
  ip(["link", "set", DEVICE, "up"]);
  if (inputs.tap) ip(["neigh", "replace", GATEWAY_TAP, "lladdr", ENGINE_MAC, "dev", DEVICE, "nud", "permanent"]);
  if (inputs.tap && inputs.v6) ip(["-6", "neigh", "replace", GATEWAY_TAP6, "lladdr", ENGINE_MAC, "dev", DEVICE, "nud", "permanent"]);
  applyRouting(inputs, ip);
}

/** Routes and rules at start (idempotent: removes ours first). The local rule leaves pref 0 last. */
export function applyRouting(inputs: NodeNetInputs, ip: Runner = runIp): void {
  for (const [fam, f] of parts(inputs)) {
    const rows = rules(ip, fam);
    if (!hasLocalAt(rows, PREF_LOCAL_MOVED)) ip([fam, "rule", "add", "pref", String(PREF_LOCAL_MOVED), "lookup", "local"]);
    for (const pref of OUR_PREFS) {
      for (const _ of rows.filter((r) => r.priority === pref)) ip([fam, "rule", "del", "pref", String(pref)]);
    }
    try { ip([fam, "route", "flush", "dev", DEVICE, "table", "main"]); } catch { /* none */ }
    try { ip([fam, "route", "flush", "table", String(TABLE)]); } catch { /* none */ }
    ip([fam, "route", "replace", "default", ...through(inputs, fam), "table", String(TABLE)]);
    for (const c of routed(f)) ip([fam, "route", "replace", c, ...through(inputs, fam), "src", f.gateway]);
    ip([fam, "rule", "add", "pref", String(PREF_LOCAL_FROM_WASP), "iif", DEVICE, "lookup", "local"]);
    ip([fam, "rule", "add", "pref", String(PREF_MAIN_FROM_WASP), "iif", DEVICE, "lookup", "main"]);
    ip([fam, "rule", "add", "pref", String(PREF_UNREACHABLE_FROM_WASP), "iif", DEVICE, "unreachable"]);
    ip([fam, "rule", "add", "pref", String(PREF_PODS), "from", f.podCIDR, "lookup", String(TABLE)]);
    for (const a of f.nodeAddresses) nodePortRules("add", a, ip, fam);
    // Last: only now may the kernel's rule leave pref 0 (ours are in place behind nothing).
    if (hasLocalAt(rules(ip, fam), 0)) ip([fam, "rule", "del", "pref", "0", "lookup", "local"]);
  }
}

function nodePortRules(verb: "add" | "del", addr: string, ip: Runner, fam: Fam = "-4"): void {
  const ports = `${NODE_PORT_MIN}-${NODE_PORT_MAX}`;
  const host = `${addr}/${fam === "-4" ? 32 : 128}`;
  for (const [pref, proto] of [[PREF_NODEPORT_TCP, "tcp"], [PREF_NODEPORT_UDP, "udp"]] as const) {
    ip([fam, "rule", verb, "pref", String(pref), "to", host, "ipproto", proto, "dport", ports, "lookup", String(TABLE)]);
  }
}

/**
 * A reload's change to the picture, made in place: new routes and rules first, then the old ones
 * go, so no packet meets a moment without them. (podCIDR and serviceCIDR take a restart.)
 */
export function reconcileRouting(prev: NodeNetInputs, next: NodeNetInputs, ip: Runner = runIp): void {
  const before = new Map(parts(prev));
  for (const [fam, f] of parts(next)) {
    const was = before.get(fam) ?? { ...f, remotePodCIDRs: [], externalIPs: [], nodeAddresses: [] };
    const want = new Set(routed(f));
    for (const c of want) ip([fam, "route", "replace", c, ...through(next, fam), "src", f.gateway]);
    for (const c of routed(was)) {
      if (!want.has(c)) { try { ip([fam, "route", "del", c, "dev", DEVICE]); } catch { /* gone */ } }
    }
    for (const a of f.nodeAddresses) if (!was.nodeAddresses.includes(a)) nodePortRules("add", a, ip, fam);
    for (const a of was.nodeAddresses) {
      if (!f.nodeAddresses.includes(a)) { try { nodePortRules("del", a, ip, fam); } catch { /* gone */ } }
    }
  }
}

