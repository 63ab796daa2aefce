// What the pipeline decided for the slot it is running: one record, reset once per slot by
// processSlot, filled by the stages, copied into the slot by processBatch (as VPP's graph nodes
// fill nexts[] for a frame). Static memory, so nothing allocates.
import { Verdict, Drop } from "../abi";

@final @unmanaged
export class SlotResult {
  /** Drop until a stage decides otherwise. */
  verdict: Verdict;
  /** Why a packet was dropped, or why the core answered it itself (None for an echo reply). */
  reason: Drop;
  /** Note.* bits: what the core did. */
  note: u32;
  /** Service entry id + 1 when the packet matched a service or a NATed flow, else 0. */
  service: u32;
  /** The output packet: its first byte (IP, Ethernet in TAP mode, outer IPv4 for Overlay) and length. */
  data: usize;
  len: u32;
  /** Overlay: the underlay IPv4 (host order) to send to. */
  peer: u32;
  /** The lowest address the core may write for this slot: its buffer start after the vnet header. */
  lowest: usize;
  /** The slot itself (offload mode: the host may still drop its packet after process()). */
  slot: usize;
}

export const out = changetype<SlotResult>(memory.data(offsetof<SlotResult>(), 16));

/** A fresh result for the next slot: dropped, nothing done yet. */
@inline export function resetResult(slot: usize, lowest: usize): void {
  out.verdict = Verdict.Drop; out.reason = Drop.None; out.note = 0; out.service = 0;
  out.data = 0; out.len = 0; out.peer = 0; out.lowest = lowest; out.slot = slot;
}

@inline export function drop(why: Drop): void { out.verdict = Verdict.Drop; out.reason = why; }
