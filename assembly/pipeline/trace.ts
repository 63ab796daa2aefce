// `wasp trace`: when a slot carries the TRACE flag, each stage appends one record
// (u32 stage, u32 a, u32 b, u32 slot address) after a u32 count at the start of the trace area.
import { traceArea, traceCap } from "../state";

export const PARSE: u32 = 1, DECAP: u32 = 2, CONNTRACK: u32 = 3, SERVICE: u32 = 4, BACKEND: u32 = 5, NAT: u32 = 6, ROUTE: u32 = 7;
const REC: u32 = 16;
let on = false;
let slot: usize = 0;

export function begin(enabled: bool, s: usize): void {
  on = enabled && traceCap >= <u32>4 + REC;
  slot = s;
}

export function reset(): void { if (traceCap >= 4) store<u32>(traceArea, 0); }

@inline export function step(stage: u32, a: u32, b: u32): void {
  if (!on) return;
  const n: u32 = load<u32>(traceArea);
  if (<u32>4 + (n + 1) * REC > traceCap) return;
  const p = traceArea + 4 + <usize>n * REC;
  store<u32>(p, stage); store<u32>(p, a, 4); store<u32>(p, b, 8); store<u32>(p, <u32>slot, 12);
  store<u32>(traceArea, n + 1);
}
