// The wasm core's exports: init, the batch entry point, table commits, counters, and test hooks.
// Memory map after init(), from __heap_base: slots | packet buffers | stage | counters | trace |
// service stats | conntrack | affinity | overlay segments | overlayOut | offload | held fragments |
// the two table generations. Nothing grows after init().
import {
  InitResult, CommitResult, CFG_MAX_BATCH, CFG_CT_CAPACITY, CFG_MAX_SERVICES, CFG_MAX_BACKENDS, CFG_MAX_ROUTES,
  CFG_MAGLEV_CELLS, CFG_MODE, CFG_OFFLOAD, CFG_UNDERLAY_IP, CFG_VNI, CFG_VXLAN_PORT, CFG_UNDERLAY_MTU, CFG_SEED, SLOT_SIZE,
  HEADROOM, SLOT_PACKET_ROOM, COUNTER_COUNT, C_GENERATION, CT_FLAGS, FlowFlag, TRACE_BYTES, STATS_STRIDE,
} from "./abi";
import * as st from "./state";
import * as ct from "./table/conntrack";
import * as gen from "./table/generation";
import { pow2AtLeast } from "./table/hash";
import { processBatch } from "./pipeline/process";
import { revalidate } from "./pipeline/flow";
import { statsInit, statsAddr, statsReset as resetStats } from "./pipeline/svcstats";
import { affinityInit } from "./pipeline/affinity";
import { fragClear } from "./pipeline/frag";
import { holdBytesNeeded, holdInit, holdExpire, HOLD_CAP, releasedAddr as heldOut, releasedCount as heldOutN } from "./pipeline/fraghold";
import * as trace from "./pipeline/trace";
import { coalesceDecapped } from "./pipeline/overlay";
import { offloadInit, offloadBytesNeeded, offloadAddr as offloadMsgs, offloadBytes as offloadLen, offloadCount as offloadN, offloadResultsAddr as offloadResults, offloadFinish as finishOffload } from "./pipeline/offload";
import { segmentInit, extraSlots, extraCount as segmentsMade, overlayOutInit, overlayOutAddr as overlayOut, overlayOutCount as overlayOutN } from "./pipeline/segment";

const PAGE: usize = 65536;

/** Where the host writes the init config block (CFG_* offsets) before calling init(). */
export function configAddr(): usize { return st.CONFIG; }

function ensureMemory(end: usize): bool {
  const have = <usize>memory.size() * PAGE;
  if (end <= have) return true;
  const pages = <i32>((end - have + PAGE - 1) / PAGE);
  return memory.grow(pages) >= 0;
}

@inline function cfg(off: u32): u32 { return load<u32>(st.CONFIG + off); }
@inline function align(p: usize, a: usize): usize { return (p + a - 1) & ~(a - 1); }

/** Lays out every region from the config block. Call once. */
export function init(): InitResult {
  if (st.initialized) return InitResult.AlreadyInitialized;
  const maxBatch = cfg(CFG_MAX_BATCH), ctCap = cfg(CFG_CT_CAPACITY), maxSvc = cfg(CFG_MAX_SERVICES),
    maxBe = cfg(CFG_MAX_BACKENDS), maxRoutes = cfg(CFG_MAX_ROUTES), mgCells = cfg(CFG_MAGLEV_CELLS);
  if (maxBatch == 0 || maxBatch > 4096 || ctCap < 16 || ctCap > (1 << 24) || maxSvc == 0 || maxSvc > (1 << 20) ||
      maxBe > (1 << 22) || maxRoutes == 0 || maxRoutes > (1 << 16) || mgCells > (1 << 28) ||
      cfg(CFG_UNDERLAY_MTU) < 576 || cfg(CFG_UNDERLAY_MTU) > 65535 || cfg(CFG_VNI) > 0xffffff ||
      cfg(CFG_VXLAN_PORT) == 0 || cfg(CFG_VXLAN_PORT) > 65535) return InitResult.BadConfig;
  const stride: u32 = <u32>align(HEADROOM + SLOT_PACKET_ROOM, 64);
  let p = align(__heap_base, 64);
  const slots = p; p = align(p + <usize>maxBatch * SLOT_SIZE, 64);
  const bufs = p; p += <usize>maxBatch * stride;
  const stageCap: u32 = 1 << 20 + 0;
  const stage = align(p, 64);
  const stageBytes = <usize>(1 << 20) + <usize>maxSvc * 64 + <usize>maxBe * 20;
  p = stage + stageBytes;
  const counters = align(p, 64); p = counters + <usize>COUNTER_COUNT * 8;
  const traceA = align(p, 64); p = traceA + TRACE_BYTES;
  const statsAt = align(p, 64); p = statsAt + <usize>maxSvc * STATS_STRIDE;
  const ctAt = align(p, 64); p = ctAt + ct.ctBytesNeeded(ctCap);
  // affinityInit rounds its entry count up to a power of two: reserve what it will really use
  const affN = ctCap / 4 + 64;
  const affAt = align(p, 64); p = affAt + <usize>pow2AtLeast(affN) * 32 + 64;
  // GSO segments for the overlay: up to 48 per slot (a 64 KiB packet at MSS 1360), one MTU each
  const segSlots = maxBatch * 48, segStride = <u32>align(<usize>cfg(CFG_UNDERLAY_MTU) + 128, 64);
  const segAt = align(p, 64); p = segAt + 64 + <usize>segSlots * SLOT_SIZE + 64 + <usize>segSlots * segStride;
  // every Overlay output of a batch in wire order: one descriptor per slot and per segment slot
  const outAt = align(p, 64); p = outAt + <usize>(maxBatch + segSlots + HOLD_CAP) * SLOT_SIZE;
  // offload mode: a batch's ctnetlink requests and their results, one flow per slot at most
  const offAt = align(p, 64); p = offAt + offloadBytesNeeded(maxBatch);
  // early fragments held for their first fragment (pipeline/fraghold.ts)
  const holdAt = align(p, 64); p = holdAt + holdBytesNeeded();
  const genAt = align(p, 64);
  const end = genAt + gen.genBytesNeeded(maxSvc, maxBe, maxRoutes, mgCells);
  if (!ensureMemory(end)) return InitResult.OutOfMemory;
  memory.fill(slots, 0, <usize>maxBatch * SLOT_SIZE);
  memory.fill(counters, 0, <usize>COUNTER_COUNT * 8);
  st.setRegions(slots, maxBatch, bufs, stride, stage, <u32>stageBytes, counters, traceA, TRACE_BYTES);
  st.setNode(cfg(CFG_MODE) == 1, cfg(CFG_OFFLOAD) == 1, cfg(CFG_UNDERLAY_IP), cfg(CFG_VNI), cfg(CFG_VXLAN_PORT), cfg(CFG_UNDERLAY_MTU), cfg(CFG_SEED));
  statsInit(statsAt, maxSvc);
  ct.ctInit(ctAt, ctCap, cfg(CFG_SEED));
  affinityInit(affAt, affN);
  gen.genInit(genAt, maxSvc, maxBe, maxRoutes, mgCells);
  segmentInit(segAt, segSlots, segStride);
  overlayOutInit(outAt, maxBatch + segSlots + HOLD_CAP);
  offloadInit(offAt, maxBatch);
  holdInit(holdAt);
  fragClear();
  st.setInitialized();
  return InitResult.Ok + <InitResult>(stageCap & 0);
}

/** Runs the `count` slots at slotsAddr() through the pipeline at time nowSec (seconds, any epoch
 *  that only moves forward). Returns how many were not dropped. One call per batch. */
export function process(count: u32, nowSec: u32): u32 {
  if (!st.initialized) return 0;
  trace.reset();
  return processBatch(count, nowSec);
}

/** Applies `bytes` of ops staged at stageAddr() as one new generation (all or nothing). */
export function commit(bytes: u32): CommitResult {
  if (!st.initialized) return CommitResult.NotInitialized;
  if (bytes > st.stageCap) return CommitResult.BadOp;
  const r = gen.genCommit(st.stageArea, bytes);
  if (r == CommitResult.Ok) store<u64>(st.counters + (<usize>C_GENERATION << 3), <u64>gen.generationNumber());
  return r;
}

// After a reload, the sweep walks the flow table once (a cursor, `budget` records a call) and
// removes the UDP flows whose backend the new tables no longer have, so they leave the table at
// once instead of when their next packet arrives or their timeout passes.
let revalidateCursor: u32 = 0;
let scanGen: u32 = 0;          // the generation the current walk checks against
let revalidatedGen: u32 = 0;   // the last generation a walk finished for

/** Expires up to `budget` timed-out flows and checks up to 16 x `budget` flows against a new
 *  generation; the host calls it about once a second. Returns the flows expired or removed. */
export function sweep(nowSec: u32, budget: u32): u32 {
  if (!st.initialized) return 0;
  holdExpire(nowSec);
  let n = ct.ctExpire(nowSec, budget);
  const g = gen.generationNumber(), cap = ct.ctCapacity();
  if (revalidatedGen != g) {
    if (scanGen != g) { scanGen = g; revalidateCursor = 0; }   // a newer reload restarts the walk
    const end = <u64>revalidateCursor + <u64>budget * 16 < <u64>cap ? revalidateCursor + budget * 16 : cap;
    const tables = gen.activeGen();
    for (let i = revalidateCursor; i < end; i++) if (ct.ctLive(i) && revalidate(tables, i)) n++;
    revalidateCursor = end;
    if (end >= cap) { revalidatedGen = g; revalidateCursor = 0; }
  }
  return n;
}

export function slotsAddr(): usize { return st.slots; }
/** Extra output slots of the last process() call: the GSO segments after the first of each
 *  super-packet sent to another node, already encapsulated, verdict Overlay. */
export function extraSlotsAddr(): usize { return extraSlots(); }
export function extraCount(): u32 { return segmentsMade(); }
/** Every Overlay packet of the last process() call in wire order (each slot, then the segments
 *  it was cut into): the host sends this list to the underlay, not the slots themselves. */
export function overlayOutAddr(): usize { return overlayOut(); }
export function overlayOutCount(): u32 { return overlayOutN(); }
/** The early fragments the last process() call released after their first fragment, one slot
 *  each with its verdict: the host writes the Tun and Host ones after the batch's slots. */
export function releasedAddr(): usize { return heldOut(); }
export function releasedCount(): u32 { return heldOutN(); }
/** Offload mode, after process(): the batch's ctnetlink requests (layout in abi.ts), their count,
 *  where the host puts the kernel's answers, and offloadFinish() once it has (returns the flows
 *  the kernel refused, whose packets it dropped). */
export function offloadAddr(): usize { return offloadMsgs(); }
export function offloadBytes(): u32 { return offloadLen(); }
export function offloadCount(): u32 { return offloadN(); }
export function offloadResultsAddr(): usize { return offloadResults(); }
export function offloadFinish(): u32 { return finishOffload(); }
/** What the host's devices offload for the overlay: gso with the tunnel TAP's MAC (hi: first two
 *  bytes, lo: last four) sends TSO packets whole; decap lets a peer's whole TSO packet reach the
 *  TUN as one GSO packet. */
export function setTunnelOffloads(macHi: u32, macLo: u32, gso: u32, decap: u32): void { st.setTunnelOffloads(macHi, macLo, gso != 0, decap != 0); }
/** After process() of a batch from the underlay, for a TUN (link 0) or TAP (link 14) with vnet
 *  headers the host zeroed: merges runs of one flow's TCP segments into GSO packets (a merged
 *  slot's verdict becomes None). Returns the slots merged away. */
export function coalesce(count: u32, link: u32): u32 { return coalesceDecapped(st.slots, count <= st.maxBatch ? count : st.maxBatch, link); }
export function maxBatch(): u32 { return st.maxBatch; }
export function bufferAddr(): usize { return st.bufArea; }
export function bufferStride(): u32 { return st.bufStride; }
export function stageAddr(): usize { return st.stageArea; }
export function stageCapacity(): u32 { return st.stageCap; }
export function countersAddr(): usize { return st.counters; }
export function traceAddr(): usize { return st.traceArea; }
export function serviceStatsAddr(): usize { return statsAddr(); }
export function serviceStatsReset(id: u32): void { resetStats(id); }
export function generation(): u32 { return gen.generationNumber(); }
export function serviceCount(): u32 { return gen.genServiceCount(); }
export function routeCount(): u32 { return gen.genRouteCount(); }

// ── conntrack inspection (wasp conntrack, tests) ───────────────────────────────────────────
export function ctCapacity(): u32 { return ct.ctCapacity(); }
export function ctCount(): u32 { return ct.ctUsed(); }
/** Address of flow record i (CT_REC_SIZE bytes, layout in abi.ts), 0 when unused. */
export function ctRecord(i: u32): usize {
  if (i >= ct.ctCapacity()) return 0;
  const r = ct.rec(i);
  return (load<u8>(r + CT_FLAGS) & FlowFlag.USED) != 0 ? r : 0;
}
export function ctFlush(): void { ct.ctClear(); fragClear(); }

/** 0 when every table invariant holds, else a code naming the first broken one (tests, fuzz). */
export function checkInvariants(): u32 {
  if (!st.initialized) return 0;
  const c = ct.ctCheck();
  if (c != 0) return c;
  return gen.genCheck();
}

// ── test hooks: the checksum and each header view on its own (test/unit/wire/) ──────────────
export * from "./test-hooks";
