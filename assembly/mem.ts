// Byte-order helpers and 16-byte addresses. Wire fields are big-endian; wasm memory is little-endian.

@inline export function ld8(p: usize): u32 { return <u32>load<u8>(p); }
@inline export function ld16(p: usize): u32 { return <u32>bswap<u16>(load<u16>(p)); }
@inline export function ld32(p: usize): u32 { return bswap<u32>(load<u32>(p)); }
@inline export function st8(p: usize, v: u32): void { store<u8>(p, <u8>v); }
@inline export function st16(p: usize, v: u32): void { store<u16>(p, bswap<u16>(<u16>v)); }
@inline export function st32(p: usize, v: u32): void { store<u32>(p, bswap<u32>(v)); }

// Addresses are 16 bytes in network order; IPv4 is IPv4-mapped IPv6 (::ffff:a.b.c.d, RFC 4291 §2.5.5.2),
// so one key format serves both families and nothing assumes 4-byte addresses.
export const ADDR_LEN: usize = 16;
const V4_MAPPED_HI: u64 = 0;
const V4_MAPPED_MID: u32 = 0xffff0000; // bytes 8..11 = 00 00 ff ff, read little-endian

@inline export function addrEq(a: usize, b: usize): bool {
  return load<u64>(a) == load<u64>(b) && load<u64>(a, 8) == load<u64>(b, 8);
}
@inline export function addrCopy(dst: usize, src: usize): void {
  store<u64>(dst, load<u64>(src));
  store<u64>(dst, load<u64>(src, 8), 8);
}
@inline export function addrZero(dst: usize): void {
  store<u64>(dst, 0);
  store<u64>(dst, 0, 8);
}
@inline export function addrIsZero(a: usize): bool {
  return (load<u64>(a) | load<u64>(a, 8)) == 0;
}
/** Writes ::ffff:<v4> where v4Be is the address as it lies on the wire (network order). */
@inline export function addrFromV4Be(dst: usize, v4Be: u32): void {
  store<u64>(dst, V4_MAPPED_HI);
  store<u32>(dst, V4_MAPPED_MID, 8);
  store<u32>(dst, v4Be, 12);
}
@inline export function addrIsV4(a: usize): bool {
  return load<u64>(a) == V4_MAPPED_HI && load<u32>(a, 8) == V4_MAPPED_MID;
}
/** The IPv4 address in network order (as stored on the wire) of an IPv4-mapped address. */
@inline export function addrV4Be(a: usize): u32 { return load<u32>(a, 12); }

/** Copies `a` masked to its first `bits` bits (of 128) into dst. Two 64-bit ANDs: the bytes are in
 *  network order, so a little-endian load sees the first byte lowest and the mask is byte-swapped. */
@inline export function addrMask(dst: usize, a: usize, bits: u32): void {
  const hi: u64 = bits >= 64 ? <u64>-1 : (bits == 0 ? 0 : bswap<u64>(<u64>-1 << (64 - <u64>bits)));
  const lo: u64 = bits >= 128 ? <u64>-1 : (bits <= 64 ? 0 : bswap<u64>(<u64>-1 << (128 - <u64>bits)));
  store<u64>(dst, load<u64>(a) & hi);
  store<u64>(dst, load<u64>(a, 8) & lo, 8);
}

/** True when `a` lies inside prefix/bits (bits counted of 128). */
export function addrInPrefix(a: usize, prefix: usize, bits: u32): bool {
  if (bits > 128) return false;
  let i: u32 = 0;
  for (; bits >= 8; bits -= 8, i++) if (load<u8>(a + i) != load<u8>(prefix + i)) return false;
  if (bits == 0) return true;
  const m = (0xff << (8 - bits)) & 0xff;
  return (ld8(a + i) & m) == (ld8(prefix + i) & m);
}
