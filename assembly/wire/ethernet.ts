// IEEE 802.3 Ethernet II, offsets from the first byte of the frame.
import { ld16, st16 } from "../mem";
import { Drop } from "../abi";

const DST = 0, SRC = 6, TYPE = 12;
export const ETH_HLEN: u32 = 14;
export const ETH_P_IPV4: u32 = 0x0800;
export const ETH_P_ARP: u32 = 0x0806;
export const ETH_P_IPV6: u32 = 0x86dd;

@final @unmanaged
export class Ethernet {
  @inline static at(p: usize): Ethernet { return changetype<Ethernet>(p); }
  @inline get type(): u32 { return ld16(changetype<usize>(this) + TYPE); }
  @inline set type(v: u32) { st16(changetype<usize>(this) + TYPE, v); }
  @inline get dstPtr(): usize { return changetype<usize>(this) + DST; }
  @inline get srcPtr(): usize { return changetype<usize>(this) + SRC; }
}

export function checkEthernet(len: u32): Drop {
  return len < ETH_HLEN ? Drop.BadEthernet : Drop.None;
}

/** Writes an Ethernet header at p. */
export function emitEthernet(p: usize, dstMac: usize, srcMac: usize, type: u32): void {
  memory.copy(p + DST, dstMac, 6);
  memory.copy(p + SRC, srcMac, 6);
  st16(p + TYPE, type);
}
