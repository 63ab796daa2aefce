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
// Offload mode (offload-net.ts): no rule 100 (pods' traffic to each other and the kernel-carried
// flows never enter wasp0; only what is routed to wasp0, a service address with no conntrack entry
// yet, reaches the engine), and the other nodes' pod CIDRs go via the vxlan device waspvx.
//
// Everything has a fixed name or preference. wasp0 is persistent: when no daemon reads it (a crash,
// a restart, an upgrade) its routes stay and what they carry is dropped, never routed elsewhere. A
// daemon that starts adopts whatever picture is there (ensureNodeNet: what is wanted and missing is
// added, what is there and not wanted goes, a wanted rule is never removed, not even for a moment),
// and a daemon that stops leaves it for the next one; `wasp daemon --cleanup` removes it all.
import { existsSync } from "node:fs";
import { keepOnlyAddresses, runIp, type Runner } from "./ip-runner.js";
import { writeSysctl } from "../io/sysctl.js";
import { VXLAN_OVERHEAD } from "../model/vxlan.js";
import { localVtepMac } from "../model/model.js";
import { ensureOffloadTable, ensureOverlay, NFT_TABLE, removeOffloadTable, removeOverlay, runNft, VXLAN_DEVICE, type NftRunner, type OverlayInputs } from "./offload-net.js";
import { NODE_PORT_MAX, NODE_PORT_MIN, type Config } from "../config/index.js";
import { ENGINE_MAC, TAP_MAC } from "../engine/options.js";
import { canonicalCidr, firstAddress, firstAddress6, formatIp, parseIp, type Ip } from "../model/index.js";

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

export { runIp, type Runner };
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
  /** Offload mode: the kernel's overlay (the vxlan device and its peers). */
  overlay?: OverlayInputs;
}

/** What the node's network is made from; `external`: the services' external and LoadBalancer
 *  addresses (a daemon keeps them per service: service-facts.ts). */
export function nodeNetInputs(config: Config, offload: boolean, external: ExternalRoutes): NodeNetInputs {
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
    ...(offload ? { overlay: overlayInputs(config) } : {}),
    ...(v6 === undefined ? {} : {
      v6: {
        podCIDR: v6, gateway: firstAddress6(v6), serviceCIDR: config.serviceCIDRv6,
        remotePodCIDRs: config.nodes.flatMap((n) => (n.podCIDRv6 === undefined ? [] : [n.podCIDRv6])),
        externalIPs: external(6), nodeAddresses: addresses(6),
      },
    }),
  };
}

/** The external and LoadBalancer addresses routed to wasp0, one family's sorted ("a.b.c.d/32"). */
export type ExternalRoutes = (family: 4 | 6) => string[];

function overlayInputs(config: Config): OverlayInputs {
  return {
    vni: config.vxlan.vni, port: config.vxlan.port, underlayIP: config.node.underlayIP, mtu: config.node.underlayMTU - VXLAN_OVERHEAD,
    mac: localVtepMac(config.node), podCIDR: config.node.podCIDR,
    peers: config.nodes.map((n) => ({ name: n.name, podCIDR: n.podCIDR, podCIDRv6: n.podCIDRv6, underlayIP: n.underlayIP, vtepMac: localVtepMac(n) })),
  };
}

/** The IPv4 part in the shape the IPv6 part has. */
function v4Part(i: NodeNetInputs): FamilyInputs {
  return { podCIDR: i.podCIDR, gateway: i.gateway, serviceCIDR: i.serviceCIDR, remotePodCIDRs: i.remotePodCIDRs, externalIPs: i.externalIPs, nodeAddresses: i.nodeAddresses };
}

function parts(i: NodeNetInputs): Array<[Fam, FamilyInputs]> {
  return [["-4", v4Part(i)], ...(i.v6 ? [["-6", i.v6] as [Fam, FamilyInputs]] : [])];
}

/** The prefixes of one family routed to wasp0, in the order they are added (offload mode: the other
 *  nodes' pod CIDRs go via waspvx instead). */
function routed(i: NodeNetInputs, f: FamilyInputs): string[] {
  return [...(f.serviceCIDR === undefined ? [] : [f.serviceCIDR]), ...(i.overlay ? [] : f.remotePodCIDRs), ...f.externalIPs];
}

export function sameInputs(a: NodeNetInputs, b: NodeNetInputs): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** How a prefix reaches wasp0: on the device (TUN), or via the engine's neighbour entry (TAP). */
function through(inputs: NodeNetInputs, fam: Fam = "-4"): string[] {
  if (!inputs.tap) return ["dev", DEVICE];
  return fam === "-4" ? ["via", GATEWAY_TAP, "dev", DEVICE, "onlink"] : ["via", GATEWAY_TAP6, "dev", DEVICE];
}

interface RuleRow {
  priority: number; table?: string; iif?: string; action?: string; src?: string; srclen?: number; dst?: string; dstlen?: number;
  ipproto?: string; dport_start?: number; dport_end?: number;
}

function rules(ip: Runner, fam: Fam = "-4"): RuleRow[] {
  return JSON.parse(ip([fam, "-j", "rule", "show"]) || "[]") as RuleRow[];
}

const hasLocalAt = (rows: RuleRow[], pref: number) =>
  rows.some((r) => r.priority === pref && r.table === "local" && !r.iif && (!r.src || r.src === "all") && !r.dst);

/** A policy rule: `ip rule add pref P <selector> <action>`, and the identity `ip -j rule show` gives it. */
interface Rule { pref: number; args: string[]; key: string }

function ruleKey(pref: number, sel: { src?: string; dst?: string; iif?: string; ipproto?: string; dport?: string }, action: string): string {
  return [pref, sel.src ?? "all", sel.dst ?? "", sel.iif ?? "", sel.ipproto ?? "", sel.dport ?? "", action].join("|");
}

/** The identity of a rule as the kernel lists it (prefixes with their length, /32 or /128 when none). */
function rowKey(r: RuleRow, fam: Fam): string {
  const full = fam === "-4" ? 32 : 128;
  const pfx = (a: string | undefined, len: number | undefined) => (a === undefined || a === "all" ? undefined : `${a}/${len ?? full}`);
  const dport = r.dport_start === undefined ? undefined : `${r.dport_start}-${r.dport_end ?? r.dport_start}`;
  return ruleKey(r.priority, { src: pfx(r.src, r.srclen), dst: pfx(r.dst, r.dstlen), iif: r.iif, ipproto: r.ipproto, dport }, r.action ?? r.table ?? "");
}

/** The rules of one family the picture wants (the kernel's local rule aside). */
function wantedRules(inputs: NodeNetInputs, fam: Fam, f: FamilyInputs): Rule[] {
  const out: Rule[] = [];
  const add = (pref: number, sel: { src?: string; dst?: string; iif?: string; ipproto?: string; dport?: string }, action: string) => {
    const args = [
      ...(sel.iif ? ["iif", sel.iif] : []), ...(sel.src ? ["from", sel.src] : []), ...(sel.dst ? ["to", sel.dst] : []),
      ...(sel.ipproto ? ["ipproto", sel.ipproto] : []), ...(sel.dport ? ["dport", sel.dport] : []),
      ...(action === "unreachable" ? ["unreachable"] : ["lookup", action]),
    ];
    out.push({ pref, args, key: ruleKey(pref, sel, action) });
  };
  const canon = (c: string) => canonicalCidr(c) ?? c;
  add(PREF_LOCAL_FROM_WASP, { iif: DEVICE }, "local");
  add(PREF_MAIN_FROM_WASP, { iif: DEVICE }, "main");
  add(PREF_UNREACHABLE_FROM_WASP, { iif: DEVICE }, "unreachable");
  // offload mode: a pod's packets enter wasp0 only when they are routed there (a service address)
  if (!inputs.overlay) add(PREF_PODS, { src: canon(f.podCIDR) }, String(TABLE));
  const ports = `${NODE_PORT_MIN}-${NODE_PORT_MAX}`;
  for (const a of f.nodeAddresses) {
    const host = `${formatIp(parseIp(a) as Ip)}/${fam === "-4" ? 32 : 128}`;
    add(PREF_NODEPORT_TCP, { dst: host, ipproto: "tcp", dport: ports }, String(TABLE));
    add(PREF_NODEPORT_UDP, { dst: host, ipproto: "udp", dport: ports }, String(TABLE));
  }
  return out;
}

/** What there is on a node: a family's rules and whether it has IPv6 at all. */
function families(): Fam[] {
  return existsSync("/proc/sys/net/ipv6") ? ["-4", "-6"] : ["-4"];
}

/**
 * Removes the whole picture (`wasp daemon --cleanup`): our rules, table 119, the moved local rule
 * (restored to pref 0 first, so no moment is without one), wasp0 (persistent: it stays otherwise),
 * the offload table and waspvx. Safe to repeat; returns what it removed.
 */
export function cleanupNodeNet(ip: Runner = runIp, nft: NftRunner = runNft): string[] {
  const done: string[] = [];
  for (const fam of families()) {
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
  try { ip(["link", "del", DEVICE]); done.push(`link ${DEVICE}`); } catch { /* not there */ }
  if (removeOverlay(ip)) done.push(`link ${VXLAN_DEVICE}`);
  if (removeOffloadTable(nft)) done.push(`nft table inet ${NFT_TABLE}`);
  return done;
}

/** Sysctls, address, the offload table and overlay (offload mode), routes and rules around an open
 *  wasp0, from whatever a previous daemon left (see the header). prev: the picture this daemon set
 *  up before (a reload), absent at start. */
export function ensureNodeNet(inputs: NodeNetInputs, prev?: NodeNetInputs, ip: Runner = runIp, nft: NftRunner = runNft): void {
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
  keepOnlyAddresses(DEVICE, [`${inputs.gateway}/32`, ...(inputs.v6 ? [`${inputs.v6.gateway}/128`] : [])], ip);
  if (inputs.tap) ip(["link", "set", DEVICE, "address", TAP_MAC]);
  // The TUN ring holds txqueuelen packets for the engine: 500 (the default) is 0.1 s of a 5 kpps
  // stream; a longer one rides out the moments the event loop spends on something else.
  ip(["link", "set", DEVICE, "txqueuelen", String(TUN_QUEUE_LEN)]);
  ip(["link", "set", DEVICE, "up"]);
  if (inputs.tap) ip(["neigh", "replace", GATEWAY_TAP, "lladdr", ENGINE_MAC, "dev", DEVICE, "nud", "permanent"]);
  if (inputs.tap && inputs.v6) ip(["-6", "neigh", "replace", GATEWAY_TAP6, "lladdr", ENGINE_MAC, "dev", DEVICE, "nud", "permanent"]);
  if (inputs.overlay) {
    ensureOffloadTable(DEVICE, nft);
    ensureOverlay(inputs.overlay, prev?.overlay, ip);
  } else {
    // full-wasm mode: the engine's own underlay socket takes the VXLAN port, and nothing else NATs
    removeOverlay(ip);
    removeOffloadTable(nft);
  }
  ensureRouting(inputs, ip);
}

/** Routes and rules: every wanted one added where missing, every other one of ours removed, the
 *  local rule leaving pref 0 only once ours are in place. Safe to repeat. */
export function ensureRouting(inputs: NodeNetInputs, ip: Runner = runIp): void {
  const fams = new Map(parts(inputs));
  for (const fam of families()) {
    const f = fams.get(fam);
    let rows = rules(ip, fam);
    if (!f) {
      // a family this picture does not have (IPv6 on an IPv4 node): none of our rules in it
      for (const r of rows) if ((OUR_PREFS as readonly number[]).includes(r.priority)) { try { ip([fam, "rule", "del", "pref", String(r.priority)]); } catch { /* gone */ } }
      continue;
    }
    if (!hasLocalAt(rows, PREF_LOCAL_MOVED)) ip([fam, "rule", "add", "pref", String(PREF_LOCAL_MOVED), "lookup", "local"]);
    const want = wantedRules(inputs, fam, f), wantKeys = new Set(want.map((r) => r.key));
    const have = new Set(rows.filter((r) => (OUR_PREFS as readonly number[]).includes(r.priority)).map((r) => rowKey(r, fam)));
    // routes first, so a new rule finds its table filled
    ip([fam, "route", "replace", "default", ...through(inputs, fam), "table", String(TABLE)]);
    const wanted = routed(inputs, f).map((c) => canonicalCidr(c) ?? c);
    for (const c of wanted) ip([fam, "route", "replace", c, ...through(inputs, fam), "src", f.gateway]);
    const keep = new Set(wanted);
    for (const r of JSON.parse(ip([fam, "-j", "route", "show", "dev", DEVICE, "table", "main"]) || "[]") as Array<{ dst: string; protocol?: string }>) {
      if (r.protocol === "kernel") continue;   // the device's own address routes
      const dst = r.dst.includes("/") ? r.dst : `${r.dst}/${fam === "-4" ? 32 : 128}`;
      if (!keep.has(canonicalCidr(dst) ?? dst)) { try { ip([fam, "route", "del", r.dst, "dev", DEVICE]); } catch { /* gone */ } }
    }
    for (const r of want) if (!have.has(r.key)) ip([fam, "rule", "add", "pref", String(r.pref), ...r.args]);
    rows = rules(ip, fam);
    for (const r of rows) {
      if (!(OUR_PREFS as readonly number[]).includes(r.priority) || wantKeys.has(rowKey(r, fam))) continue;
      // exactly this rule, by its selector: another rule may share the preference
      try { ip([fam, "rule", "del", "pref", String(r.priority), ...staleSelector(r)]); } catch { /* gone */ }
    }
    // Last: only now may the kernel's rule leave pref 0 (ours are in place behind nothing).
    if (hasLocalAt(rules(ip, fam), 0)) ip([fam, "rule", "del", "pref", "0", "lookup", "local"]);
  }
}

/** The selector of a listed rule, to delete it and not its neighbour at the same preference. */
function staleSelector(r: RuleRow): string[] {
  return [
    ...(r.iif ? ["iif", r.iif] : []), ...(r.src && r.src !== "all" ? ["from", `${r.src}/${r.srclen ?? (r.src.includes(":") ? 128 : 32)}`] : []),
    ...(r.dst ? ["to", `${r.dst}/${r.dstlen ?? (r.dst.includes(":") ? 128 : 32)}`] : []),
    ...(r.ipproto ? ["ipproto", r.ipproto] : []), ...(r.dport_start !== undefined ? ["dport", `${r.dport_start}-${r.dport_end ?? r.dport_start}`] : []),
  ];
}
