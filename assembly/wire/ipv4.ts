// RFC 791 §3.1, offsets from the first byte of the IPv4 header.
import { ld8, ld16, ld32, st8, st16 } from "../mem";
import { Drop } from "../abi";
import { csum, csumAdd } from "./checksum";

const VER_IHL = 0, TOS = 1, TOTAL_LEN = 2, ID = 4, FRAG = 6, TTL = 8, PROTO = 9, CHECK = 10, SRC = 12, DST = 16;
export const IPV4_MIN_LEN: u32 = 20;
export const IPV4_CHECK: u32 = CHECK;
export const IPV4_SRC: u32 = SRC;
export const IPV4_DST: u32 = DST;
export const IPV4_TTL: u32 = TTL;
const FLAG_DF: u32 = 0x4000, FLAG_MF: u32 = 0x2000, OFFSET_MASK: u32 = 0x1fff;

@final @unmanaged
export class Ipv4 {
  @inline static at(p: usize): Ipv4 { return changetype<Ipv4>(p); }
  @inline get version(): u32 { return ld8(changetype<usize>(this)) >> 4; }
  @inline get headerLen(): u32 { return (ld8(changetype<usize>(this) + VER_IHL) & 0x0f) << 2; }
  @inline get totalLen(): u32 { return ld16(changetype<usize>(this) + TOTAL_LEN); }
  @inline set totalLen(v: u32) { st16(changetype<usize>(this) + TOTAL_LEN, v); }
  @inline get id(): u32 { return ld16(changetype<usize>(this) + ID); }
  @inline get fragField(): u32 { return ld16(changetype<usize>(this) + FRAG); }
  @inline get dontFragment(): bool { return (this.fragField & FLAG_DF) != 0; }
  @inline get moreFragments(): bool { return (this.fragField & FLAG_MF) != 0; }
  @inline get fragOffset(): u32 { return this.fragField & OFFSET_MASK; }
  @inline get ttl(): u32 { return ld8(changetype<usize>(this) + TTL); }
  @inline get proto(): u32 { return ld8(changetype<usize>(this) + PROTO); }
  @inline get check(): u32 { return ld16(changetype<usize>(this) + CHECK); }
  @inline set check(v: u32) { st16(changetype<usize>(this) + CHECK, v); }
  @inline get src(): u32 { return ld32(changetype<usize>(this) + SRC); }
  @inline get dst(): u32 { return ld32(changetype<usize>(this) + DST); }
  /** Network-order (as on the wire) loads, for keys. */
  @inline get srcBe(): u32 { return load<u32>(changetype<usize>(this), SRC); }
  @inline get dstBe(): u32 { return load<u32>(changetype<usize>(this), DST); }
}

/** Drop.None when every Ipv4 accessor stays inside `len` bytes at `p` and the header sums to zero. */
export function checkIpv4(p: usize, len: u32): Drop {
  if (len < IPV4_MIN_LEN) return Drop.TooShort;
  const ip = Ipv4.at(p), hl = ip.headerLen, total = ip.totalLen;
  if (hl < IPV4_MIN_LEN || hl > total || total > len) return Drop.BadIpv4Header;
  if ((hl == IPV4_MIN_LEN ? headerSum20(p) : csum(p, hl, 0)) != 0) return Drop.BadIpv4Checksum;
  return Drop.None;
}

/** The checksum of a 20-byte header (the common case, no options): five 32-bit words. */
@inline function headerSum20(p: usize): u32 {
  let s: u64 = <u64>load<u32>(p) + <u64>load<u32>(p, 4) + <u64>load<u32>(p, 8) + <u64>load<u32>(p, 12) + <u64>load<u32>(p, 16);
  s = (s & 0xffff) + ((s >> 16) & 0xffff) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return ~(<u32>s) & 0xffff;   // byte order does not matter for a zero test (RFC 1071 §2(B))
}

/** Decrements TTL and patches the header checksum (RFC 1624; TTL is the high byte of word 4). */
@inline export function ipv4DecTtl(p: usize): void {
  const ttl = ld8(p + TTL);
  st8(p + TTL, ttl - 1);
  // word 4 = TTL<<8 | proto; the sum drops by 0x0100
  let s: u32 = ld16(p + CHECK) + 0x0100;
  s = (s & 0xffff) + (s >> 16);
  st16(p + CHECK, s);
}

/** Writes a 20-byte header (no options) at p with a full checksum. Addresses in network order. */
export function emitIpv4(p: usize, totalLen: u32, id: u32, df: bool, ttl: u32, proto: u32, srcBe: u32, dstBe: u32): void {
  st8(p + VER_IHL, 0x45);
  st8(p + TOS, 0);
  st16(p + TOTAL_LEN, totalLen);
  st16(p + ID, id);
  st16(p + FRAG, df ? FLAG_DF : 0);
  st8(p + TTL, ttl);
  st8(p + PROTO, proto);
  st16(p + CHECK, 0);
  store<u32>(p, srcBe, SRC);
  store<u32>(p, dstBe, DST);
  st16(p + CHECK, csum(p, IPV4_MIN_LEN, 0));
}

/** Pseudo-header sum (RFC 793 §3.1 / RFC 768) for an IPv4 L4 segment of `l4len` bytes. */
@inline export function ipv4PseudoSum(ip: usize, proto: u32, l4len: u32): u64 {
  return csumAdd(ip + SRC, 8, 0) + <u64>proto + <u64>l4len;
}

/** Exposed for tests: the header checksum as a receiver would verify it. */
export function ipv4HeaderSumOk(p: usize): bool { return csum(p, Ipv4.at(p).headerLen, 0) == 0; }
