// Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/** Ones'-complement sum of `len` bytes at p, added to `initial` (not folded, not complemented). */
export function csumAdd(p: usize, len: u32, initial: u64): u64 {
  let sum = initial;
  // 8 bytes a step: the sum of 16-bit big-endian words equals the byte-swapped sum of little-endian
  // words (RFC 1071 §2(B)), so add native u32 halves and swap once at the end.
  let acc: u64 = 0;
  while (len >= 8) {
    const w = load<u64>(p);
    acc += (w & 0xffffffff) + (w >> 32);
    p += 8; len -= 8;
  }
  if (len >= 4) { acc += <u64>load<u32>(p); p += 4; len -= 4; }
  if (len >= 2) { acc += <u64>load<u16>(p); p += 2; len -= 2; }
  if (len == 1) { acc += <u64>load<u8>(p); }
  // fold acc to 16 bits (little-endian word sum), then swap to network order
  acc = (acc & 0xffffffff) + (acc >> 32);
  acc = (acc & 0xffff) + (acc >> 16);
  acc = (acc & 0xffff) + (acc >> 16);
  acc = (acc & 0xffff) + (acc >> 16);
  sum += <u64>bswap<u16>(<u16>acc);
  return sum;
}

/** Folds a running sum to 16 bits (not complemented). */
@inline export function csumFold(sum: u64): u32 {
  sum = (sum & 0xffffffff) + (sum >> 32);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return <u32>sum;
}

/** The checksum field value for `len` bytes at p (complemented sum). */
@inline export function csum(p: usize, len: u32, initial: u64): u32 {
  return (~csumFold(csumAdd(p, len, initial))) & 0xffff;
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). All values host order, 16-bit fields.
@inline export function csumReplace16(check: u32, from: u32, to: u32): u32 {
  let s: u32 = (~check & 0xffff) + (~from & 0xffff) + (to & 0xffff);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

@inline export function csumReplace32(check: u32, from: u32, to: u32): u32 {
  let s: u32 = (~check & 0xffff) + (~from & 0xffff) + (~from >>> 16) + (to & 0xffff) + (to >>> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

// A partial checksum (virtio_net_hdr NEEDS_CSUM) holds the uncomplemented pseudo-header sum; the kernel
// finishes it later. Only the pseudo-header part (addresses) changes: HC' = HC + ~m + m'.
@inline export function csumPartialReplace32(check: u32, from: u32, to: u32): u32 {
  let s: u32 = (check & 0xffff) + (~from & 0xffff) + (~from >>> 16) + (to & 0xffff) + (to >>> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return s & 0xffff;
}
