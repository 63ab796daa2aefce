// Maglev lookup tables (Eisenbud et al., NSDI 2016, §3.4): each backend walks its own permutation of
// the table and claims the next free cell, round-robin, until the table is full. The fill needs a
// scratch "next" array of a u32 per backend, grown between batches (ensureScratch).
import { hashAddrWord, pow2AtLeast } from "./hash";
import { regionAlloc, regionFree } from "./region";
import { B_ADDR, B_PORT, BE } from "./generation-layout";

let maglevScratch: usize = 0;   // u32 per backend: the Maglev "next" array
let scratchCap: u32 = 0;

/** Room in the Maglev scratch for a service of n backends. */
export function ensureScratch(n: u32): bool {
  if (n <= scratchCap) return true;
  const cap = pow2AtLeast(n), at = regionAlloc(<usize>cap * 4, false);
  if (at == 0) return false;
  regionFree(maglevScratch, <usize>scratchCap * 4);
  maglevScratch = at; scratchCap = cap;
  return true;
}
/** Can a service of n eligible backends be filled now? */
export function scratchHolds(n: u32): bool { return n <= scratchCap; }

const MAGLEV_PRIMES: usize = memory.data<u32>([251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65537]);
export function maglevSizeFor(n: u32, asked: u32): u32 {
  if (asked >= 2) return asked;
  for (let i: u32 = 0; i < 9; i++) {
    const p = load<u32>(MAGLEV_PRIMES + (<usize>i << 2));
    if (p >= n * 100) return p;
  }
  return 65537;
}

export function isPrime(m: u32): bool {
  if (m < 2) return false;
  if (m % 2 == 0) return m == 2;
  for (let d: u32 = 3; <u64>d * d <= <u64>m; d += 2) if (m % d == 0) return false;
  return true;
}

export function maglevFill(table: usize, m: u32, backends: usize, n: u32): void {
  memory.fill(table, 0xff, <usize>m * 2);
  for (let i: u32 = 0; i < n; i++) store<u32>(maglevScratch + (<usize>i << 2), 0);
  let filled: u32 = 0;
  while (true) {
    for (let i: u32 = 0; i < n; i++) {
      const b = backends + <usize>i * BE;
      const w = <u64>load<u16>(b + B_PORT);
      const h1 = hashAddrWord(b + B_ADDR, w, 0x0ff5e7), h2 = hashAddrWord(b + B_ADDR, w, 0x5c1b);
      const offset = h1 % m, skip = h2 % (m - 1) + 1;
      let next = load<u32>(maglevScratch + (<usize>i << 2));
      let c = <u32>((<u64>offset + <u64>next * <u64>skip) % <u64>m);
      while (load<u16>(table + (<usize>c << 1)) != 0xffff) {
        next++;
        c = <u32>((<u64>offset + <u64>next * <u64>skip) % <u64>m);
      }
      store<u16>(table + (<usize>c << 1), <u16>i);
      store<u32>(maglevScratch + (<usize>i << 2), next + 1);
      if (++filled == m) return;
    }
  }
}
