// Which records of a capture replay feeds the engine, and as what. A capture may mix what the engine
// reads (the kernel's packets out of wasp0, VXLAN from other nodes on the underlay) with what it
// wrote (packets into wasp0) and with traffic that never reaches it; each interface has a role:
//   pod       wasp0's side: packets the kernel sent into wasp0 (direction "out", or unknown) go in
//             as the engine reads them; packets into the kernel (direction "in") are the engine's
//             own output and are left out
//   underlay  only VXLAN datagrams to this node's underlay address and VXLAN port go in (from the
//             underlay socket); everything else on the underlay is not the engine's
//   auto      VXLAN to this node as underlay, anything else as pod (a classic `tcpdump -i wasp0
//             -Q out` capture, or one of the underlay)
//   skip      nothing goes in
// An interface named wasp0 is pod unless told otherwise; `--interface ID=ROLE` names one by pcapng
// interface id or name, or a Linux cooked v2 capture's interface index as ifindex:N.
import { SlotFlag } from "../engine/abi.js";
import { CliError, EXIT } from "./client.js";
import { ipFields, partialChecksum } from "./packet-fields.js";
import { linkPayload, type Capture, type CaptureRecord, type LinkPayload } from "./pcap.js";

export const ROLES = ["pod", "underlay", "auto", "skip"] as const;
export type Role = (typeof ROLES)[number];

/** Why a record did not go in (the summary counts each). */
export type SkipReason = "range" | "filter" | "interface" | "engine_output" | "not_for_engine" | "not_ip" | "too_big";

export interface InterfaceRule { iface?: number; name?: string; ifindex?: number; role: Role }

export function parseInterfaceRules(specs: readonly string[]): InterfaceRule[] {
  return specs.map((spec) => {
    const m = /^(.+)=([a-z]+)$/.exec(spec);
    const role = m?.[2] as Role | undefined;
    if (!m || !role || !ROLES.includes(role)) {
      throw new CliError(`--interface ${JSON.stringify(spec)} is not ID=ROLE (ID: a pcapng interface id or name, or ifindex:N; ROLE: ${ROLES.join(", ")})`, EXIT.USAGE);
    }
    const id = m[1]!;
    if (/^\d+$/.test(id)) return { iface: Number(id), role };
    const ix = /^ifindex:(\d+)$/.exec(id);
    if (ix) return { ifindex: Number(ix[1]), role };
    return { name: id, role };
  });
}

export function parseRole(text: string): Role {
  if (!(ROLES as readonly string[]).includes(text)) throw new CliError(`--from ${JSON.stringify(text)}: give one of ${ROLES.join(", ")}`, EXIT.USAGE);
  return text as Role;
}

/** The role of a record's interface: a rule for it, else wasp0 is pod, else `fallback`. */
export function roleOf(cap: Capture, rec: CaptureRecord, link: LinkPayload, rules: readonly InterfaceRule[], fallback: Role): Role {
  const name = cap.interfaces[rec.iface]?.name;
  const rule = rules.find((r) => (r.iface !== undefined && r.iface === rec.iface) || (r.name !== undefined && r.name === name)
    || (r.ifindex !== undefined && r.ifindex === link.ifindex));
  if (rule) return rule.role;
  return name === "wasp0" && fallback === "auto" ? "pod" : fallback;
}

/** One record as the engine takes it: the bytes, the slot flags, the peer of a VXLAN datagram. */
export interface EngineInput { bytes: Uint8Array; flags: number; peer: number; role: "pod" | "underlay"; vnet?: Uint8Array; ip: Uint8Array }

/** A VXLAN datagram to this node (IPv4, UDP to the VXLAN port): its UDP payload and the sender. */
export function vxlanPayload(ip: Uint8Array, underlay: number, port: number): { payload: Uint8Array; peer: number } | undefined {
  if (ip[0]! >> 4 !== 4 || ip[9] !== 17 || ip.length < 28) return undefined;
  const hl = (ip[0]! & 15) * 4, dst = ((ip[16]! << 24) | (ip[17]! << 16) | (ip[18]! << 8) | ip[19]!) >>> 0;
  if (dst !== underlay || ((ip[hl + 2]! << 8) | ip[hl + 3]!) !== port) return undefined;
  const peer = ((ip[12]! << 24) | (ip[13]! << 16) | (ip[14]! << 8) | ip[15]!) >>> 0;
  return { payload: ip.subarray(hl + 8), peer };
}

export interface InputContext {
  tap: boolean;
  underlay: number;
  vxlanPort: number;
  /** The IP packet as a TAP hands it over: in an Ethernet frame from wasp0 to the engine. */
  toFrame(ip: Uint8Array): Uint8Array;
}

/** What the engine takes for a record of role `role`, or why it takes nothing. */
export function engineInput(link: LinkPayload, direction: "in" | "out" | undefined, role: Role, c: InputContext): EngineInput | SkipReason {
  if (role === "skip") return "interface";
  const vnet = link.vnet ?? (link.ip ? partialVnet(link.ip, c.tap) : undefined);
  const withVnet = (b: Uint8Array) => {
    if (!vnet) return b;
    const out = new Uint8Array(vnet.length + b.length);
    out.set(vnet, 0); out.set(b, vnet.length);
    return out;
  };
  const vnetFlag = vnet ? SlotFlag.VNET : 0;
  if (!link.ip) {
    // ARP on a TAP's wasp0: the engine answers it
    if (c.tap && link.frame && role !== "underlay" && direction !== "in") return { bytes: withVnet(link.frame), flags: SlotFlag.ETHERNET | vnetFlag, peer: 0, role: "pod", ip: link.frame, ...(vnet ? { vnet } : {}) };
    return "not_ip";
  }
  const vx = role === "pod" ? undefined : vxlanPayload(link.ip, c.underlay, c.vxlanPort);
  if (vx) {
    if (direction === "out") return "not_for_engine";
    return { bytes: vx.payload, flags: SlotFlag.FROM_OVERLAY, peer: vx.peer, role: "underlay", ip: link.ip };
  }
  if (role === "underlay") return "not_for_engine";
  if (role === "pod" && direction === "in") return "engine_output";
  const bytes = c.tap ? link.frame ?? c.toFrame(link.ip) : link.ip;
  return { bytes: withVnet(bytes), flags: (c.tap ? SlotFlag.ETHERNET : 0) | vnetFlag, peer: 0, role: "pod", ip: link.ip, ...(vnet ? { vnet } : {}) };
}

const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;

/**
 * The daemon reads wasp0 with a virtio header (IFF_VNET_HDR) and a capture does not show it. A pod's
 * packet whose checksum was left to offload came with NEEDS_CSUM, and the engine patches such a
 * partial sum unlike a whole one (RFC 1624 on the sum, not on its complement): replay gives it the
 * header the kernel gave the live engine, so both write the same bytes.
 */
function partialVnet(ip: Uint8Array, tap: boolean): Uint8Array | undefined {
  const f = ipFields(ip);
  const pc = f && partialChecksum(ip, f);
  if (!pc) return undefined;
  const h = new Uint8Array(10), start = pc.start + (tap ? 14 : 0);
  h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  h[6] = start & 0xff; h[7] = start >> 8; h[8] = pc.offset;
  return h;
}

/** The record's link layer, for the record's own link type. */
export function recordLink(rec: CaptureRecord, vnetHdrLen: number): LinkPayload {
  return linkPayload(rec.linktype, rec.data, vnetHdrLen);
}
