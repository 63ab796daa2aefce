// Open-addressing tables of u64 buckets (low 32 bits: the hash; 0: empty) with linear probing, as
// the flow index (table/conntrack.ts) and the source index (table/sources.ts) keep them.

/** Puts bucket x into table (mask + 1 buckets) at the first free place from its hash. */
export function bucketPut(table: usize, mask: u32, x: u64): void {
  let b = <u32>x & mask;
  while (load<u64>(table + (<usize>b << 3)) != 0) b = (b + 1) & mask;
  store<u64>(table + (<usize>b << 3), x);
}

/** Puts every bucket of `from` into `to` (a bigger table, zeroed). */
export function rehash(from: usize, fromMask: u32, to: usize, toMask: u32): void {
  for (let b: u32 = 0; b <= fromMask; b++) {
    const x = load<u64>(from + (<usize>b << 3));
    if (x != 0) bucketPut(to, toMask, x);
  }
}
