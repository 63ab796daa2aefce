// Per-service-entry counters (packets, bytes, new flows; layout in abi.ts), indexed by the entry
// id the host gave. Not part of a generation: an entry keeps its numbers across reloads while its id lives.
// The area grows with the highest id a commit names (statsEnsure, from commit()): it moves, so the
// host reads it through serviceStatsAddr() each time.
import { STATS_STRIDE, STATS_PACKETS, STATS_BYTES, STATS_NEW_FLOWS } from "../abi";
import { pow2AtLeast } from "../table/hash";
import { regionAlloc, regionFree } from "../table/region";

let base: usize = 0;
let cap: u32 = 0;

/** Room for the counters of ids below n (the area at least doubles when it moves); false when
 *  memory is out, with the area as it was. */
export function statsEnsure(n: u32): bool {
  if (n <= cap) return true;
  const next = pow2AtLeast(n > cap * 2 ? n : cap * 2), at = regionAlloc(<usize>next * STATS_STRIDE, true);
  if (at == 0) return false;
  if (cap != 0) { memory.copy(at, base, <usize>cap * STATS_STRIDE); regionFree(base, <usize>cap * STATS_STRIDE); }
  base = at; cap = next;
  return true;
}
export function statsAddr(): usize { return base; }
export function statsCap(): u32 { return cap; }

/** service is id + 1 (0: none). */
@inline export function packet(service: u32, bytes: u32): void {
  if (service == 0 || service > cap) return;
  const p = base + <usize>(service - 1) * STATS_STRIDE;
  store<u64>(p, load<u64>(p, STATS_PACKETS) + 1, STATS_PACKETS);
  store<u64>(p, load<u64>(p, STATS_BYTES) + <u64>bytes, STATS_BYTES);
}
@inline export function newFlow(service: u32): void {
  if (service == 0 || service > cap) return;
  const p = base + <usize>(service - 1) * STATS_STRIDE;
  store<u64>(p, load<u64>(p, STATS_NEW_FLOWS) + 1, STATS_NEW_FLOWS);
}
/** The host resets an id's counters when it hands the id to a new entry. */
export function statsReset(id: u32): void {
  if (id < cap) memory.fill(base + <usize>id * STATS_STRIDE, 0, STATS_STRIDE);
}
