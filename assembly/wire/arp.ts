// RFC 826 ARP for IPv4 over Ethernet, offsets from the first byte of the ARP header.
import { ld16, ld32, st16, st32 } from "../mem";
import { Drop } from "../abi";

const HTYPE = 0, PTYPE = 2, HLEN = 4, PLEN = 5, OPER = 6, SHA = 8, SPA = 14, THA = 18, TPA = 24;
export const ARP_LEN: u32 = 28;
export const ARP_REQUEST: u32 = 1;
export const ARP_REPLY: u32 = 2;

@final @unmanaged
export class Arp {
  @inline static at(p: usize): Arp { return changetype<Arp>(p); }
  @inline get oper(): u32 { return ld16(changetype<usize>(this) + OPER); }
  @inline get senderIp(): u32 { return ld32(changetype<usize>(this) + SPA); }
  @inline get targetIp(): u32 { return ld32(changetype<usize>(this) + TPA); }
  @inline get senderMacPtr(): usize { return changetype<usize>(this) + SHA; }
  @inline get targetMacPtr(): usize { return changetype<usize>(this) + THA; }
}

export function checkArp(p: usize, len: u32): Drop {
  if (len < ARP_LEN) return Drop.BadArp;
  if (ld16(p + HTYPE) != 1 || ld16(p + PTYPE) != 0x0800) return Drop.BadArp;
  if (load<u8>(p + HLEN) != 6 || load<u8>(p + PLEN) != 4) return Drop.BadArp;
  return Drop.None;
}

/** Turns the request at p into the reply "targetIp is at myMac", in place. */
export function emitArpReply(p: usize, myMac: usize): void {
  const asker = ld32(p + SPA), wanted = ld32(p + TPA);
  memory.copy(p + THA, p + SHA, 6);
  memory.copy(p + SHA, myMac, 6);
  st32(p + TPA, asker);
  st32(p + SPA, wanted);
  st16(p + OPER, ARP_REPLY);
}
