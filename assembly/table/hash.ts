// One hash for every table: a multiply-xorshift mix over 64-bit words (wyhash-style folding).
// Keys are short (at most five words), so a simple strong mix beats a byte loop.

const K1: u64 = 0x9e3779b97f4a7c15;
const K2: u64 = 0xbf58476d1ce4e5b9;

@inline export function mix(h: u64, w: u64): u64 {
  h = (h ^ w) * K1;
  return h ^ (h >> 29);
}

@inline export function finish(h: u64): u32 {
  h = (h ^ (h >> 31)) * K2;
  h ^= h >> 32;
  return <u32>h;
}

/** Hash of a 16-byte address plus one extra 64-bit word. */
@inline export function hashAddrWord(addr: usize, w: u64, seed: u64): u32 {
  let h = mix(seed, load<u64>(addr));
  h = mix(h, load<u64>(addr, 8));
  h = mix(h, w);
  return finish(h);
}

/** Hash of two 16-byte addresses plus one 64-bit word (conntrack tuples). */
@inline export function hashTuple(a: usize, b: usize, w: u64): u32 {
  let h = mix(K2, load<u64>(a));
  h = mix(h, load<u64>(a, 8));
  h = mix(h, load<u64>(b));
  h = mix(h, load<u64>(b, 8));
  h = mix(h, w);
  return finish(h);
}

/** hashTuple with a per-node key mixed into its start: tuples an attacker chooses cannot be aimed at
 *  one bucket chain of the conntrack index (hash flooding). Maglev and the VXLAN source port use
 *  the unkeyed hashTuple, because every node must compute the same value for the same flow. */
@inline export function hashTupleKeyed(a: usize, b: usize, w: u64, key: u64): u32 {
  let h = mix(K2 ^ key, load<u64>(a));
  h = mix(h, load<u64>(a, 8));
  h = mix(h, load<u64>(b));
  h = mix(h, load<u64>(b, 8));
  h = mix(h, w);
  return finish(h);
}

/** Smallest power of two >= n (n >= 1). */
export function pow2AtLeast(n: u32): u32 {
  if (n <= 1) return 1;
  return 1 << (32 - clz<u32>(n - 1));
}
