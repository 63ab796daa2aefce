import { createHash, randomBytes } from "node:crypto";
import { formatMac } from "../model/addr.js";

/**
 * The host end of a pod's veth: "wasp" + 11 hex digits of a hash of (containerID, ifname), 15
 * characters, Linux's limit. A function of the attachment alone, so DEL and GC find it with no state.
 */
export function hostVethName(containerId: string, ifname: string): string {
  return "wasp" + createHash("sha256").update(`${containerId}\0${ifname}`).digest("hex").slice(0, 11);
}

export const HOST_VETH_RE = /^wasp[0-9a-f]{11}$/;

/** A random unicast, locally administered MAC (IEEE 802: bit 0 of byte 0 clear, bit 1 set). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return formatMac(b);
}
