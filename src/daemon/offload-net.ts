// The kernel's part of offload mode (shared/design.md: the engine decides, the kernel carries).
//
// ╒═══ nftables: table inet wasp ═══╕ one transaction, never deleted by a daemon start or stop, so
// the NAT of established flows has no gap across a restart:
//   nat_prerouting, nat_postrouting   nat chains with no rule: they register the kernel's NAT hooks
//                                     for both families; every binding is a conntrack entry the
//                                     engine made (ctnetlink), none is a rule
//   count_prerouting, count_output    `ct mark "wasp" counter`: the packets and bytes of offloaded
//                                     flows; a rule that uses conntrack is also what registers
//                                     conntrack's hooks in the namespace (an empty nat chain does not)
//   forward                           loop guard: a packet the engine wrote back that the kernel did
//                                     not translate would be routed into wasp0 again, until its TTL
//                                     ran out: dropped and counted instead
//
// ╒═══ the overlay: a Linux vxlan device in the flannel convention ═══╕ established flows to pods on
// other nodes are encapsulated by the kernel (wasp nodes in full-wasm mode and flannel nodes alike
// take its frames):
//   waspvx   vxlan id VNI dstport PORT local <underlay> nolearning, MAC = this node's VTEP MAC,
//            MTU = underlay - 50, address <pod CIDR network>/32
//   per peer: route <peer pod CIDR> via <its network address> dev waspvx onlink,
//             neigh <its network address> lladdr <its VTEP MAC> nud permanent,
//             fdb <its VTEP MAC> dst <its underlay IP> self permanent
import { execFile, execFileSync } from "node:child_process";
import { OFFLOAD_MARK } from "../engine/abi.js";
import { parseCidr, formatIp, type Cidr } from "../model/addr.js";
import { keepOnlyAddresses, type Runner } from "./ip-runner.js";

export const NFT_TABLE = "wasp";
export const VXLAN_DEVICE = "waspvx";
/** Named counters of the table: offloaded packets/bytes seen entering and leaving the node, and
 *  packets the loop guard dropped. */
export const COUNTERS = ["offloaded_in", "offloaded_out", "loop_dropped"] as const;

export interface PeerVtep { name: string; podCIDR: string; podCIDRv6?: string | undefined; underlayIP: string; vtepMac: string }

export interface OverlayInputs {
  vni: number;
  port: number;
  underlayIP: string;
  /** The pods' MTU: underlay - 50. */
  mtu: number;
  /** This node's VTEP MAC. */
  mac: string;
  /** This node's pod CIDR (its network address goes on the device, as flannel does). */
  podCIDR: string;
  peers: PeerVtep[];
}

/** `nft -f -` in this process's namespace; throws with nft's message. */
export type NftRunner = (script: string) => string;
export const runNft: NftRunner = (script) => {
  try {
    return execFileSync("nft", ["-f", "-"], { input: script, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === "ENOENT") throw new Error("nft is not installed: offload mode needs nftables (apt-get install nftables)");
    throw new Error(`nft -f failed: ${err.stderr?.trim() || err.message}`);
  }
};

/** The table's whole definition, one transaction: an existing table keeps its chains (and so its hooks)
 *  and counters; only its rules are replaced. */
export function offloadRuleset(device: string): string {
  const mark = `0x${OFFLOAD_MARK.toString(16)}`;
  return [
    `add table inet ${NFT_TABLE}`,
    ...COUNTERS.map((c) => `add counter inet ${NFT_TABLE} ${c}`),
    `add chain inet ${NFT_TABLE} nat_prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `add chain inet ${NFT_TABLE} nat_postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `add chain inet ${NFT_TABLE} count_prerouting { type filter hook prerouting priority mangle; policy accept; }`,
    `add chain inet ${NFT_TABLE} count_output { type filter hook output priority mangle; policy accept; }`,
    `add chain inet ${NFT_TABLE} forward { type filter hook forward priority filter; policy accept; }`,
    `flush chain inet ${NFT_TABLE} count_prerouting`,
    `flush chain inet ${NFT_TABLE} count_output`,
    `flush chain inet ${NFT_TABLE} forward`,
    `add rule inet ${NFT_TABLE} count_prerouting ct mark ${mark} counter name offloaded_in`,
    `add rule inet ${NFT_TABLE} count_output ct mark ${mark} counter name offloaded_out`,
    `add rule inet ${NFT_TABLE} forward iifname "${device}" oifname "${device}" counter name loop_dropped drop`,
    "",
  ].join("\n");
}

/** Why offload mode cannot run here, or undefined when it can: the table is checked by the kernel
 *  without being applied (`nft -c`: nf_tables with NAT and conntrack expressions). */
export function offloadBlocker(device: string): string | undefined {
  try {
    execFileSync("nft", ["-c", "-f", "-"], { input: offloadRuleset(device), encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
    return undefined;
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === "ENOENT") return "nft is not installed (apt-get install nftables)";
    return `the kernel refused the offload table (nf_tables NAT or conntrack missing?): ${err.stderr?.trim().split("\n").slice(-2).join(" ") || err.message}`;
  }
}

export function ensureOffloadTable(device: string, nft: NftRunner = runNft): void {
  nft(offloadRuleset(device));
}

/** Removes the table (wasp daemon --cleanup, or a start in full-wasm mode); true when it was there. */
export function removeOffloadTable(nft: NftRunner = runNft): boolean {
  try { nft(`delete table inet ${NFT_TABLE}\n`); return true; } catch { return false; }
}

export type OffloadCounters = Record<(typeof COUNTERS)[number], { packets: number; bytes: number }>;

/** The table's counters (packets and bytes each), read by `nft` in a child process that the event
 *  loop does not wait for: a read takes ~15 ms, and `wasp status` polled every millisecond held a
 *  reload back behind them (update_api_ms 44 ms against 6 in full-wasm mode). Reads asked for while
 *  one runs share it. */
export class OffloadCounterReader {
  private inFlight: Promise<OffloadCounters | undefined> | undefined;

  read(): Promise<OffloadCounters | undefined> {
    this.inFlight ??= new Promise((resolve) => {
      execFile("nft", ["-j", "list", "counters", "table", "inet", NFT_TABLE], { encoding: "utf8" }, (err, stdout) => {
        this.inFlight = undefined;
        resolve(err ? undefined : parseCounters(stdout));
      });
    });
    return this.inFlight;
  }
}

function parseCounters(text: string): OffloadCounters | undefined {
  const out = Object.fromEntries(COUNTERS.map((c) => [c, { packets: 0, bytes: 0 }])) as OffloadCounters;
  let doc: { nftables?: Array<{ counter?: { name: string; packets: number; bytes: number } }> };
  try { doc = JSON.parse(text) as typeof doc; } catch { return undefined; }
  for (const o of doc.nftables ?? []) {
    const c = o.counter;
    if (c && (COUNTERS as readonly string[]).includes(c.name)) out[c.name as (typeof COUNTERS)[number]] = { packets: c.packets, bytes: c.bytes };
  }
  return out;
}

/** The network address of a pod CIDR: the peer's next hop on waspvx (flannel's convention). */
function networkOf(cidr: string): string {
  const c = parseCidr(cidr) as Cidr;
  return formatIp({ family: c.family, bytes: c.bytes });
}

/** Creates or adopts waspvx as `o` describes and brings its peers to o.peers (prev: what a running
 *  daemon set up before, to remove peers that left; absent at start: every stale entry goes). A
 *  node without peers has no vxlan device (and binds no VXLAN port). */
export function ensureOverlay(o: OverlayInputs, prev: OverlayInputs | undefined, ip: Runner): void {
  if (o.peers.length === 0) { removeOverlay(ip); return; }
  const exists = (() => { try { ip(["-j", "link", "show", VXLAN_DEVICE]); return true; } catch { return false; } })();
  const want = ["type", "vxlan", "id", String(o.vni), "dstport", String(o.port), "local", o.underlayIP, "nolearning"];
  if (exists && prev && (prev.vni !== o.vni || prev.port !== o.port || prev.underlayIP !== o.underlayIP)) ip(["link", "del", VXLAN_DEVICE]);
  try { ip(["link", "add", VXLAN_DEVICE, ...want]); } catch { /* there: adopted */ }
  ip(["link", "set", VXLAN_DEVICE, "address", o.mac, "mtu", String(o.mtu), "up"]);
  ip(["addr", "replace", `${networkOf(o.podCIDR)}/32`, "dev", VXLAN_DEVICE]);
  keepOnlyAddresses(VXLAN_DEVICE, [`${networkOf(o.podCIDR)}/32`], ip);
  const keep = new Set<string>();
  for (const p of o.peers) {
    for (const cidr of [p.podCIDR, ...(p.podCIDRv6 ? [p.podCIDRv6] : [])]) {
      const fam = cidr.includes(":") ? "-6" : "-4", via = networkOf(cidr);
      ip([fam, "neigh", "replace", via, "lladdr", p.vtepMac, "dev", VXLAN_DEVICE, "nud", "permanent"]);
      ip([fam, "route", "replace", cidr, "via", via, "dev", VXLAN_DEVICE, "onlink"]);
      keep.add(cidr);
    }
    bridgeFdb(p.vtepMac, p.underlayIP);
  }
  // peers that left: their routes (the kernel drops the neighbours with the device or on flush)
  for (const fam of ["-4", "-6"] as const) {
    let rows: Array<{ dst: string }> = [];
    try { rows = JSON.parse(ip([fam, "-j", "route", "show", "dev", VXLAN_DEVICE, "table", "main"]) || "[]") as Array<{ dst: string }>; } catch { /* none */ }
    for (const r of rows) {
      if (r.dst && r.dst.includes("/") && !keep.has(r.dst)) { try { ip([fam, "route", "del", r.dst, "dev", VXLAN_DEVICE]); } catch { /* gone */ } }
    }
  }
  const macs = new Set(o.peers.map((p) => p.vtepMac.toLowerCase()));
  for (const e of fdbEntries()) if (!macs.has(e.mac)) { try { bridge(["fdb", "del", e.mac, "dev", VXLAN_DEVICE, "dst", e.dst, "self"]); } catch { /* gone */ } }
}

export function removeOverlay(ip: Runner): boolean {
  try { ip(["link", "del", VXLAN_DEVICE]); return true; } catch { return false; }
}

function bridge(args: string[]): string {
  return execFileSync("bridge", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function bridgeFdb(mac: string, dst: string): void {
  bridge(["fdb", "replace", mac, "dev", VXLAN_DEVICE, "dst", dst, "self", "permanent"]);
}

function fdbEntries(): Array<{ mac: string; dst: string }> {
  try {
    const rows = JSON.parse(bridge(["-j", "fdb", "show", "dev", VXLAN_DEVICE]) || "[]") as Array<{ mac: string; dst?: string }>;
    return rows.filter((r) => r.dst !== undefined && r.mac !== "00:00:00:00:00:00").map((r) => ({ mac: r.mac.toLowerCase(), dst: r.dst as string }));
  } catch { return []; }
}
