// Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/** Ones'-complement sum of `len` bytes at p, added to `initial` (not folded, not complemented). */
export function csumAdd(p: usize, len: u32, initial: u64): u64 {
  let sum = initial;
  // 8 bytes a step: the sum of 16-bit big-endian words equals the byte-swapped sum of little-endian
  // words (RFC 1071 §2(B)), so add native u32 halves and swap once at the end.
  let acc: u64 = 0;
  // 32 bytes a step with SIMD: sixteen 16-bit words added pairwise into eight 32-bit lanes. A lane
  // grows by at most 2 * 0xffff a step, so it is folded into acc every 8,192 steps (256 KiB), far
  // below 2^32. Node's V8 runs wasm SIMD on SSE/AVX; this is the per-byte cost of every segment
  // the overlay makes or merges.
  while (len >= 32) {
    let v0 = i32x4.splat(0), v1 = i32x4.splat(0);
    let steps = len >> 5;
    if (steps > 8192) steps = 8192;
    len -= steps << 5;
    do {
      v0 = i32x4.add(v0, i32x4.extadd_pairwise_i16x8_u(v128.load(p)));
      v1 = i32x4.add(v1, i32x4.extadd_pairwise_i16x8_u(v128.load(p, 16)));
      p += 32;
    } while (--steps);
    const v = i64x2.add(i64x2.add(i64x2.extend_low_i32x4_u(v0), i64x2.extend_high_i32x4_u(v0)),
      i64x2.add(i64x2.extend_low_i32x4_u(v1), i64x2.extend_high_i32x4_u(v1)));
    acc += <u64>i64x2.extract_lane(v, 0) + <u64>i64x2.extract_lane(v, 1);
  }
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
