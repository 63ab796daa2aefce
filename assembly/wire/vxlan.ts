// RFC 7348 §5, offsets from the first byte of the VXLAN header.
import { ld8, ld32, st32 } from "../mem";
import { Drop } from "../abi";

const FLAGS = 0, VNI = 4;
export const VXLAN_HLEN: u32 = 8;
/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14): the encapsulation overhead. */
export const VXLAN_OVERHEAD: u32 = 50;
const FLAG_I: u32 = 0x08;

@final @unmanaged
export class Vxlan {
  @inline static at(p: usize): Vxlan { return changetype<Vxlan>(p); }
  @inline get flags(): u32 { return ld8(changetype<usize>(this) + FLAGS); }
  /** 24-bit VNI in bytes 4..6; byte 7 is reserved. */
  @inline get vni(): u32 { return ld32(changetype<usize>(this) + VNI) >> 8; }
}

/** RFC 7348: the I flag must be set; other flag bits and reserved fields are ignored on receipt. */
export function checkVxlan(p: usize, len: u32): Drop {
  if (len < VXLAN_HLEN) return Drop.BadVxlan;
  if ((Vxlan.at(p).flags & FLAG_I) == 0) return Drop.BadVxlan;
  return Drop.None;
}

export function emitVxlan(p: usize, vni: u32): void {
  st32(p + FLAGS, FLAG_I << 24);
  st32(p + VNI, vni << 8);
}
