// RFC 8200 §3, offsets from the first byte of the IPv6 header.
import { ld8, ld16, ld32, st8, st16, st32 } from "../mem";
import { Drop } from "../abi";
import { csumAdd } from "./checksum";

const VER_TC_FLOW = 0, PAYLOAD_LEN = 4, NEXT = 6, HOP_LIMIT = 7, SRC = 8, DST = 24;
export const IPV6_HLEN: u32 = 40;
export const IPV6_SRC: u32 = SRC;
export const IPV6_DST: u32 = DST;
export const IPV6_HOP_LIMIT: u32 = HOP_LIMIT;

// Extension headers skipped on the way to the upper layer (RFC 8200 §4.1).
export const NH_HOP_BY_HOP: u32 = 0, NH_ROUTING: u32 = 43, NH_FRAGMENT: u32 = 44, NH_DEST_OPTS: u32 = 60,
  NH_AH: u32 = 51, NH_NONE: u32 = 59;
const MAX_EXT_HEADERS: u32 = 8;

@final @unmanaged
export class Ipv6 {
  @inline static at(p: usize): Ipv6 { return changetype<Ipv6>(p); }
  @inline get version(): u32 { return ld8(changetype<usize>(this)) >> 4; }
  @inline get payloadLen(): u32 { return ld16(changetype<usize>(this) + PAYLOAD_LEN); }
  @inline set payloadLen(v: u32) { st16(changetype<usize>(this) + PAYLOAD_LEN, v); }
  @inline get next(): u32 { return ld8(changetype<usize>(this) + NEXT); }
  @inline get hopLimit(): u32 { return ld8(changetype<usize>(this) + HOP_LIMIT); }
  @inline get srcPtr(): usize { return changetype<usize>(this) + SRC; }
  @inline get dstPtr(): usize { return changetype<usize>(this) + DST; }
}

/** Result of walking the extension headers: where the upper layer starts and what it is. */
@final @unmanaged
export class Ipv6Upper {
  l4: u32;        // offset of the upper-layer header from the IPv6 header
  proto: u32;     // upper-layer protocol number
  fragOffset: u32;// fragment offset in 8-byte units (0 when not a fragment)
  fragId: u32;    // fragment identification
  isFragment: bool;
  moreFragments: bool;
}

/** Checks the fixed header and walks extension headers; fills `out`. */
export function checkIpv6(p: usize, len: u32, out: Ipv6Upper): Drop {
  if (len < IPV6_HLEN) return Drop.TooShort;
  const ip = Ipv6.at(p);
  const total = IPV6_HLEN + ip.payloadLen;
  if (total > len) return Drop.BadIpv6Header;
  let nh = ip.next, off: u32 = IPV6_HLEN;
  out.isFragment = false; out.moreFragments = false; out.fragOffset = 0; out.fragId = 0;
  for (let i: u32 = 0; i < MAX_EXT_HEADERS; i++) {
    if (nh == NH_HOP_BY_HOP || nh == NH_ROUTING || nh == NH_DEST_OPTS) {
      if (off + 8 > total) return Drop.BadIpv6Header;
      const elen = (ld8(p + off + 1) + 1) << 3;
      if (off + elen > total) return Drop.BadIpv6Header;
      nh = ld8(p + off); off += elen;
    } else if (nh == NH_AH) {
      if (off + 8 > total) return Drop.BadIpv6Header;
      const elen = (ld8(p + off + 1) + 2) << 2;   // RFC 4302: length in 4-byte units minus 2
      if (off + elen > total) return Drop.BadIpv6Header;
      nh = ld8(p + off); off += elen;
    } else if (nh == NH_FRAGMENT) {
      if (off + 8 > total) return Drop.BadIpv6Header;
      const fo = ld16(p + off + 2);
      out.isFragment = true;
      out.fragOffset = fo >> 3;
      out.moreFragments = (fo & 1) != 0;
      out.fragId = ld32(p + off + 4);
      nh = ld8(p + off); off += 8;
    } else {
      out.l4 = off; out.proto = nh;
      return Drop.None;
    }
  }
  return Drop.BadIpv6Header;
}

/** Writes a 40-byte header at p. Addresses are 16-byte pointers. */
export function emitIpv6(p: usize, payloadLen: u32, next: u32, hopLimit: u32, src: usize, dst: usize): void {
  st32(p + VER_TC_FLOW, 0x60000000);
  st16(p + PAYLOAD_LEN, payloadLen);
  st8(p + NEXT, next);
  st8(p + HOP_LIMIT, hopLimit);
  memory.copy(p + SRC, src, 16);
  memory.copy(p + DST, dst, 16);
}

/** Pseudo-header sum (RFC 8200 §8.1) for an upper-layer packet of `l4len` bytes. */
@inline export function ipv6PseudoSum(ip: usize, proto: u32, l4len: u32): u64 {
  return csumAdd(ip + SRC, 32, 0) + <u64>proto + <u64>l4len;
}
