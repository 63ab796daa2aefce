// The wasm core's exports: init, the batch entry point, table commits, counters, and test hooks.
// Memory map after init(), from __heap_base: slots | packet buffers | counters | trace | segments |
// overlay order | offload requests | held fragments, all fixed; then the regions of table/region.ts, which grow with
// what is loaded: the stage, service stats, flow records (in chunks) and their index, affinity, the
// two table generations. They grow inside commit(), stageReserve() and grow(), which the host calls
// between batches; process() never grows anything.
import {
  InitResult, CommitResult, CFG_MAX_BATCH, CFG_CT_CAPACITY, CFG_MAX_SERVICES, CFG_MAX_BACKENDS, CFG_MAX_ROUTES,
  CFG_MAGLEV_CELLS, CFG_MEMORY_LIMIT_MIB, CFG_MODE, CFG_OFFLOAD, CFG_UNDERLAY_IP, CFG_VNI, CFG_VXLAN_PORT, CFG_UNDERLAY_MTU, CFG_SEED, SLOT_SIZE,
  HEADROOM, SLOT_PACKET_ROOM, COUNTER_COUNT, C_GENERATION, CT_FLAGS, FlowFlag, TRACE_BYTES, STATS_STRIDE,
  CT_CLASS_COUNT, CtClass, CtState, FLOW_FLAGS_INSERTABLE,
} from "./abi";
import * as st from "./state";
import * as ct from "./table/conntrack";
import * as gen from "./table/generation";
import { regionInit, regionAlloc, regionFree, ensureMemory, memoryBytes as memBytes, memoryLimit } from "./table/region";
import { processBatch } from "./pipeline/process";
import { revalidate } from "./pipeline/flow";
import { statsEnsure, statsAddr, statsReset as resetStats } from "./pipeline/svcstats";
import { affinityResize } from "./pipeline/affinity";
import { fragClear } from "./pipeline/frag";
import { holdBytesNeeded, holdInit, holdExpire, HOLD_CAP, releasedAddr as heldOut, releasedCount as heldOutN } from "./pipeline/fraghold";
import * as trace from "./pipeline/trace";
import { coalesceDecapped } from "./pipeline/overlay";
import { offloadInit, offloadBytesNeeded, offloadAddr as offloadMsgs, offloadBytes as offloadLen, offloadCount as offloadN, offloadResultsAddr as offloadResults, offloadFinish as finishOffload } from "./pipeline/offload";
import { segmentInit, extraSlots, extraCount as segmentsMade, overlayOutInit, overlayOutAddr as overlayOut, overlayOutCount as overlayOutN } from "./pipeline/segment";

/** Where the host writes the init config block (CFG_* offsets) before calling init(). */
export function configAddr(): usize { return st.CONFIG; }

@inline function cfg(off: u32): u32 { return load<u32>(st.CONFIG + off); }
@inline function align(p: usize, a: usize): usize { return (p + a - 1) & ~(a - 1); }

/** The stage's first size; stageReserve() makes it bigger for a bigger commit. */
const STAGE_FIRST: u32 = 65536;
/** Affinity entries per flow record (a quarter), plus a few for a small table. */
@inline function affinityFor(flows: u32): u32 { return flows / 4 + 64; }

/** Lays out every region from the config block. Call once. */
export function init(): InitResult {
  if (st.initialized) return InitResult.AlreadyInitialized;
  const maxBatch = cfg(CFG_MAX_BATCH), ctCap = cfg(CFG_CT_CAPACITY), maxSvc = cfg(CFG_MAX_SERVICES),
    maxBe = cfg(CFG_MAX_BACKENDS), maxRoutes = cfg(CFG_MAX_ROUTES), mgCells = cfg(CFG_MAGLEV_CELLS), limitMib = cfg(CFG_MEMORY_LIMIT_MIB);
  if (maxBatch == 0 || maxBatch > 4096 || ctCap < 16 || ctCap > (1 << 24) || maxSvc > (1 << 20) ||
      maxBe > (1 << 22) || maxRoutes > (1 << 16) || mgCells > (1 << 28) || limitMib > 4096 ||
      cfg(CFG_UNDERLAY_MTU) < 576 || cfg(CFG_UNDERLAY_MTU) > 65535 || cfg(CFG_VNI) > 0xffffff ||
      cfg(CFG_VXLAN_PORT) == 0 || cfg(CFG_VXLAN_PORT) > 65535) return InitResult.BadConfig;
  const stride: u32 = <u32>align(HEADROOM + SLOT_PACKET_ROOM, 64);
  let p = align(__heap_base, 64);
  const slots = p; p = align(p + <usize>maxBatch * SLOT_SIZE, 64);
  const bufs = p; p += <usize>maxBatch * stride;
  const counters = align(p, 64); p = counters + <usize>COUNTER_COUNT * 8;
  const traceA = align(p, 64); p = traceA + TRACE_BYTES;
  // GSO segments for the overlay: up to 48 per slot (a 64 KiB packet at MSS 1360), one MTU each
  const segSlots = maxBatch * 48, segStride = <u32>align(<usize>cfg(CFG_UNDERLAY_MTU) + 128, 64);
  const segAt = align(p, 64); p = segAt + 64 + <usize>segSlots * SLOT_SIZE + 64 + <usize>segSlots * segStride;
  // every Overlay output of a batch in wire order: one descriptor per slot and per segment slot
  const outAt = align(p, 64); p = outAt + <usize>(maxBatch + segSlots + HOLD_CAP) * SLOT_SIZE;
  // offload mode: a batch's ctnetlink requests and their results, one flow per slot at most
  const offAt = align(p, 64); p = offAt + offloadBytesNeeded(maxBatch);
  // early fragments held for their first fragment (pipeline/fraghold.ts)
  const holdAt = align(p, 64); p = holdAt + holdBytesNeeded();
  const limit = <usize>limitMib << 20;
  regionInit(p, limit);
  if (!ensureMemory(align(p, 64))) return InitResult.OutOfMemory;
  const stage = regionAlloc(STAGE_FIRST, false);
  if (stage == 0 || !statsEnsure(64) || !ct.ctInit(ctCap, cfg(CFG_SEED)) || !affinityResize(affinityFor(ct.ctCapacity())) ||
      !gen.genInit(maxSvc, maxBe, maxRoutes, mgCells)) return InitResult.OutOfMemory;
  memory.fill(slots, 0, <usize>maxBatch * SLOT_SIZE);
  memory.fill(counters, 0, <usize>COUNTER_COUNT * 8);
  st.setRegions(slots, maxBatch, bufs, stride, stage, STAGE_FIRST, counters, traceA, TRACE_BYTES);
  st.setNode(cfg(CFG_MODE) == 1, cfg(CFG_OFFLOAD) == 1, cfg(CFG_UNDERLAY_IP), cfg(CFG_VNI), cfg(CFG_VXLAN_PORT), cfg(CFG_UNDERLAY_MTU));
  segmentInit(segAt, segSlots, segStride);
  overlayOutInit(outAt, maxBatch + segSlots + HOLD_CAP);
  offloadInit(offAt, maxBatch);
  holdInit(holdAt);
  fragClear();
  st.setInitialized();
  return InitResult.Ok;
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
  if (r == CommitResult.Ok) {
    store<u64>(st.counters + (<usize>C_GENERATION << 3), <u64>gen.generationNumber());
    // Counters of ids past the area are not kept until it can grow (svcstats.ts ignores them).
    statsRefused = !statsEnsure(gen.genNeededIds());
  }
  return r;
}

let statsRefused = false;

/** Makes the stage hold at least `bytes` of ops (it moves; its old content is not kept). Returns its
 *  address, or 0 when memory is out (the old stage stays). Call between batches. */
export function stageReserve(bytes: u32): usize {
  if (!st.initialized) return 0;
  if (bytes <= st.stageCap) return st.stageArea;
  const cap = <u32>align(<usize>bytes + (<usize>bytes >> 2), 65536);
  const at = regionAlloc(cap, false);
  if (at == 0) return 0;
  regionFree(st.stageArea, st.stageCap);
  st.setStage(at, cap);
  return at;
}

/** Gives the flow table more room when its load passed the threshold (GROW_AT_EIGHTHS in
 *  table/conntrack.ts): doubles its records, rebuilds its index, resizes affinity. The host calls it
 *  between batches, never from process(). 0: nothing to do; 1: grew; 2: memory was out (it stays as
 *  it is, evicting when full; sweep() tries again). */
export function grow(): u32 {
  if (!st.initialized || !ct.ctWantsRoom() || ct.ctGrowRefused()) return 0;
  return growFlows() ? 1 : 2;
}

function growFlows(): bool {
  if (!ct.ctGrow()) return false;
  // Affinity that cannot follow stays as it is: it forgets clients sooner, and that is all.
  affinityResize(affinityFor(ct.ctCapacity()));
  return true;
}

/** What could not grow for want of memory: bit 0 the flow table (it evicts when full), bit 1 the
 *  per-service counters (new ids are not counted). A refused commit says so in its result. */
export function tablesRefused(): u32 { return (ct.ctGrowRefused() ? 1 : 0) | (statsRefused ? 2 : 0); }
/** Bytes of linear memory, and the ceiling (0: none). */
export function memoryBytes(): usize { return memBytes(); }
export function memoryLimitBytes(): usize { return memoryLimit(); }

// After a reload, the sweep walks the flow table once (a cursor, `budget` records a call) and
// removes the UDP flows whose backend the new tables no longer have, so they leave the table at
// once instead of when their next packet arrives or their timeout passes.
let revalidateCursor: u32 = 0;
let scanGen: u32 = 0;          // the generation the current walk checks against
let revalidatedGen: u32 = 0;   // the last generation a walk finished for

/** Expires up to `budget` timed-out flows and checks up to 16 x `budget` flows against a new
 *  generation; the host calls it about once a second, between batches. Returns the flows expired
 *  or removed. */
export function sweep(nowSec: u32, budget: u32): u32 {
  if (!st.initialized) return 0;
  holdExpire(nowSec);
  let n = ct.ctExpire(nowSec, budget);
  // a flow table that found no memory tries again, once a second
  if (ct.ctGrowRefused() && ct.ctWantsRoom()) growFlows();
  const g = gen.generationNumber(), cap = ct.ctScanEnd();
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
/** The most flows the table may grow to (init's CFG_CT_CAPACITY, rounded up to a power of two). */
export function ctCeiling(): u32 { return ct.ctCeiling(); }
export function ctCount(): u32 { return ct.ctUsed(); }
/** Address of flow record i (CT_REC_SIZE bytes, layout in abi.ts), 0 when unused. */
export function ctRecord(i: u32): usize {
  if (i >= ct.ctScanEnd()) return 0;
  const r = ct.rec(i);
  return (load<u8>(r + CT_FLAGS) & FlowFlag.USED) != 0 ? r : 0;
}
export function ctFlush(): void { ct.ctClear(); fragClear(); }
/** Address of record i whether in use or not (its flags byte says), 0 from ctScanEnd() on: with
 *  ctRun, the host reads the table in place, a run of adjacent records at a time. */
export function ctRecordAt(i: u32): usize { return i < ct.ctScanEnd() ? ct.rec(i) : 0; }
export function ctRun(i: u32): u32 { return ct.ctRun(i); }
/** Records below this were ever in use; none at or past it is. */
export function ctScanEnd(): u32 { return ct.ctScanEnd(); }
/** Changes to the flow records so far (create, touch, delete; wraps): unchanged, same records. */
export function ctChanges(): u32 { return ct.ctChanges(); }

/** Inserts a flow the host describes (wasp replay --conntrack: a capture taken mid-flow meets the
 *  flows the live node had). Its four addresses, 16 bytes each, are staged at stageAddr(): forward
 *  source, forward destination, reply source, reply destination; ports in host order, seen at `now`.
 *  Returns the record index, or -1 for a value out of range or a tuple some flow already holds. */
export function ctInsert(fSport: u32, fDport: u32, rSport: u32, rDport: u32, proto: u32, state: u32, cls: u32,
                         flags: u32, service: u32, now: u32): i32 {
  if (!st.initialized || fSport > 0xffff || fDport > 0xffff || rSport > 0xffff || rDport > 0xffff || proto > 0xff ||
      state > 0xff || cls >= CT_CLASS_COUNT || (flags & ~FLOW_FLAGS_INSERTABLE) != 0) return -1;
  const a = st.stageArea;
  if (ct.ctFind(a, a + 16, fSport, fDport, proto) != 0 || ct.ctFind(a + 32, a + 48, rSport, rDport, proto) != 0) return -1;
  return ct.ctCreate(a, a + 16, fSport, fDport, a + 32, a + 48, rSport, rDport, proto, <CtState>state, <CtClass>cls,
    <u8>flags, service, 0, now);   // generation 0: checked once against the tables served (revalidate)
}

/** 0 when every table invariant holds, else a code naming the first broken one (tests, fuzz). */
export function checkInvariants(): u32 {
  if (!st.initialized) return 0;
  const c = ct.ctCheck();
  if (c != 0) return c;
  return gen.genCheck();
}

// ── test hooks: the checksum and each header view on its own (test/unit/wire/) ──────────────
export * from "./test-hooks";
