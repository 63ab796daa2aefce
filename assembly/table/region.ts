// Regions of linear memory for the tables that grow with what is loaded (the two generations, the
// flow records and their index, affinity, per-service counters, the staging area). init() lays out
// the fixed regions and hands the rest of memory, from `start` up, to this allocator. A table that
// outgrows its region asks for a bigger one, moves, and gives the old one back; a region given back
// is reused (first fit, neighbours merged). Linear memory only grows (memory.grow) and never
// shrinks, so a region is taken from the top only when no free one fits.
//
// Pages are made resident by the first write, not by memory.grow: memory above `clean` has never
// been written and reads as zero, so a region cut from it needs no zeroing, and a table that fills
// its region slowly (the flow records) costs memory only as it fills.
//
// ╒═══ FREE: up to FREE_MAX blocks, sorted by address, 8 bytes each ═══╕  u32 start | u32 bytes
const PAGE: usize = 65536;
const ALIGN: usize = 64;
const FREE_MAX: u32 = 64;
const FREE: usize = memory.data(<i32>(FREE_MAX * 8), 16);
let nFree: u32 = 0;
let top: usize = 0;        // end of the highest region handed out
let clean: usize = 0;      // memory from here up was never written (reads as zero)
let limit: usize = 0;      // most bytes of linear memory allowed; 0: what memory.grow gives
let refusedBytes: usize = 0;   // the last region that could not be had (0 once one fits again)

@inline function roundUp(n: usize): usize { return (n + ALIGN - 1) & ~(ALIGN - 1); }
@inline function freeStart(i: u32): usize { return <usize>load<u32>(FREE + (<usize>i << 3)); }
@inline function freeBytes(i: u32): usize { return <usize>load<u32>(FREE + (<usize>i << 3), 4); }
@inline function setFree(i: u32, start: usize, bytes: usize): void {
  store<u32>(FREE + (<usize>i << 3), <u32>start);
  store<u32>(FREE + (<usize>i << 3), <u32>bytes, 4);
}

function removeFree(i: u32): void {
  memory.copy(FREE + (<usize>i << 3), FREE + (<usize>(i + 1) << 3), <usize>(nFree - i - 1) << 3);
  nFree--;
}

/** Hands memory from `start` (after init()'s fixed regions) to the allocator; limitBytes 0: no ceiling. */
export function regionInit(start: usize, limitBytes: usize): void {
  top = roundUp(start);
  clean = top;
  limit = limitBytes;
  nFree = 0;
  refusedBytes = 0;
}

/** Makes linear memory at least `end` bytes long, within the ceiling. */
export function ensureMemory(end: usize): bool {
  if (limit != 0 && end > limit) return false;
  const have = <usize>memory.size() * PAGE;
  if (end <= have) return true;
  return memory.grow(<i32>((end - have + PAGE - 1) / PAGE)) >= 0;
}

/** A region of `bytes` (64-byte aligned), zeroed when `zero`; 0 when memory is out (the ceiling or
 *  memory.grow refused it). Never called on the packet path. */
export function regionAlloc(bytes: usize, zero: bool): usize {
  const n = roundUp(bytes);
  if (n == 0 || n > 0x7fff0000) return 0;
  for (let i: u32 = 0; i < nFree; i++) {
    const s = freeStart(i), b = freeBytes(i);
    if (b < n) continue;
    if (b == n) removeFree(i); else setFree(i, s + n, b - n);
    if (zero) memory.fill(s, 0, n);
    refusedBytes = 0;
    return s;
  }
  // From the top, starting inside a free block that ends there.
  let s = top;
  if (nFree > 0 && freeStart(nFree - 1) + freeBytes(nFree - 1) == top) s = freeStart(nFree - 1);
  if (!ensureMemory(s + n)) { refusedBytes = n; return 0; }
  if (s < top) removeFree(nFree - 1);
  // Only what lies below `clean` was ever written.
  if (zero && s < clean) memory.fill(s, 0, (s + n < clean ? s + n : clean) - s);
  top = s + n;
  if (top > clean) clean = top;
  refusedBytes = 0;
  return s;
}

/** Gives back a region regionAlloc handed out (its whole size). */
export function regionFree(at: usize, bytes: usize): void {
  const n = roundUp(bytes);
  if (at == 0 || n == 0) return;
  // insertion point, by address
  let i: u32 = 0;
  while (i < nFree && freeStart(i) < at) i++;
  let s = at, b = n;
  if (i > 0 && freeStart(i - 1) + freeBytes(i - 1) == s) { i--; s = freeStart(i); b += freeBytes(i); removeFree(i); }
  if (i < nFree && s + b == freeStart(i)) { b += freeBytes(i); removeFree(i); }
  if (s + b == top) { top = s; return; }   // the top moves down; what lies above it is remembered as not clean
  if (nFree == FREE_MAX) return;          // more holes than the list holds: this one is not reused
  memory.copy(FREE + (<usize>(i + 1) << 3), FREE + (<usize>i << 3), <usize>(nFree - i) << 3);
  setFree(i, s, b);
  nFree++;
}

/** Bytes of linear memory now, and the ceiling (0: none). */
export function memoryBytes(): usize { return <usize>memory.size() * PAGE; }
export function memoryLimit(): usize { return limit; }
/** Bytes of the last region that could not be had, 0 when the last request was met. */
export function regionRefused(): usize { return refusedBytes; }
