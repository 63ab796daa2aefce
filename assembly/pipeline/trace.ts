// `wasp trace`: when a slot carries the TRACE flag, each stage appends one record to the trace
// area (layout and the Stage numbers in abi.ts), after the u32 count at its start.
import { traceArea, traceCap } from "../state";
import { Stage, TRACE_RECORDS, TRACE_REC_SIZE, TRACE_STAGE, TRACE_A, TRACE_B, TRACE_SLOT } from "../abi";

let on = false;
let slot: usize = 0;

export function begin(enabled: bool, s: usize): void {
  on = enabled && traceCap >= TRACE_RECORDS + TRACE_REC_SIZE;
  slot = s;
}

export function reset(): void { if (traceCap >= TRACE_RECORDS) store<u32>(traceArea, 0); }

@inline export function step(stage: Stage, a: u32, b: u32): void {
  if (!on) return;
  const n: u32 = load<u32>(traceArea);
  if (TRACE_RECORDS + (n + 1) * TRACE_REC_SIZE > traceCap) return;
  const p = traceArea + TRACE_RECORDS + <usize>n * TRACE_REC_SIZE;
  store<u32>(p, <u32>stage, TRACE_STAGE); store<u32>(p, a, TRACE_A); store<u32>(p, b, TRACE_B); store<u32>(p, <u32>slot, TRACE_SLOT);
  store<u32>(traceArea, n + 1);
}
