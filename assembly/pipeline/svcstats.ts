// Per-service-entry counters (packets, bytes, new flows), indexed by the entry id the host gave.
// Not part of a generation: an entry keeps its numbers across reloads while its id lives.
let base: usize = 0;
let cap: u32 = 0;
export const STAT = 24;   // u64 packets | u64 bytes | u64 new flows

export function statsInit(at: usize, n: u32): usize {
  base = at; cap = n;
  memory.fill(base, 0, <usize>n * STAT);
  return base + <usize>n * STAT;
}
export function statsAddr(): usize { return base; }
export function statsCap(): u32 { return cap; }

/** service is id + 1 (0: none). */
@inline export function packet(service: u32, bytes: u32): void {
  if (service == 0 || service > cap) return;
  const p = base + <usize>(service - 1) * STAT;
  store<u64>(p, load<u64>(p) + 1);
  store<u64>(p, load<u64>(p, 8) + <u64>bytes, 8);
}
@inline export function newFlow(service: u32): void {
  if (service == 0 || service > cap) return;
  const p = base + <usize>(service - 1) * STAT;
  store<u64>(p, load<u64>(p, 16) + 1, 16);
}
/** The host resets an id's counters when it hands the id to a new entry. */
export function statsReset(id: u32): void {
  if (id < cap) memory.fill(base + <usize>id * STAT, 0, STAT);
}
