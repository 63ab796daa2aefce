// Loads the wasm core and gives the host typed access to its memory regions.
// One Engine per worker: the batch loop fills slots, calls process() once per batch, reads verdicts.
import { readFileSync } from "node:fs";
import * as sea from "node:sea";
import v8 from "node:v8";
import { fileURLToPath } from "node:url";
import * as abi from "./abi.js";
import { encodeOps, measureOps } from "./ops.js";
import { fullDelta } from "../model/model-delta.js";
import type { Model, ModelDelta } from "../model/model.js";
import { macBytes, mappedPrefixLen, parseCidr, parseIp, parseIpv4 } from "../model/addr.js";
import * as flowTable from "./flows.js";
import type { FlowExports, FlowInsert, FlowRecord } from "./flows.js";
import { WaitingUpserts, type WaitingCounts } from "./waiting.js";

export { EngineRefusedError } from "./waiting.js";
export type { FlowInsert, FlowRecord } from "./flows.js";


/**
 * The tables grow with what is loaded (services, backends, Maglev tables, routes: inside each
 * commit; flows: between batches, in process()). The sizes here are ceilings, never sizes to set by
 * hand: a commit past one is refused as ServicesFull, BackendsFull or RoutesFull, a full flow table
 * evicts. memoryLimitMiB caps the whole wasm memory; past it the engine keeps what it has and applies
 * what fits (tablesState()).
 */
export interface EngineOptions {
  maxBatch?: number;
  /** The most flows tracked (default 1,048,576). */
  conntrackCapacity?: number;
  /** The most service entries (VIP or node port, port, protocol); default: no ceiling. */
  maxServices?: number;
  /** The most backends over all services; default: no ceiling. */
  maxBackends?: number;
  /** The most routes; default: no ceiling. */
  maxRoutes?: number;
  /** The most Maglev lookup cells over all services; default: no ceiling. */
  maglevCells?: number;
  /** The most MiB of wasm memory (1-4096); default: what the runtime gives (4 GiB). */
  memoryLimitMiB?: number;
  mode?: "tun" | "tap";
  /** Offload mode: a new flow's NAT binding goes to the kernel's conntrack (offloadRequests), and
   *  its packet back to the TUN unchanged. */
  offload?: boolean;
  /** This node's underlay IPv4 (dotted quad). */
  underlayIp?: string;
  vni?: number;
  vxlanPort?: number;
  underlayMtu?: number;
  seed?: number;
  vtepMac?: string;
  tapPeerMac?: string;
  engineMac?: string;
  /** Source address for hairpin and masquerade (IPv4 / IPv6). */
  masqAddr4?: string;
  masqAddr6?: string;
  serviceCidr4?: string;
  serviceCidr6?: string;
  clusterCidr4?: string;
  clusterCidr6?: string;
  /** Path of the .wasm file; defaults to build/wasp.wasm beside the sources (or WASP_WASM). */
  wasmPath?: string;
}

interface CoreExports extends FlowExports {
  configAddr(): number;
  init(): number;
  process(count: number, nowSec: number): number;
  commit(bytes: number): number;
  stageReserve(bytes: number): number;
  grow(): number;
  tablesRefused(): number;
  memoryBytes(): number;
  memoryLimitBytes(): number;
  sweep(nowSec: number, budget: number): number;
  slotsAddr(): number;
  extraSlotsAddr(): number;
  extraCount(): number;
  overlayOutAddr(): number;
  overlayOutCount(): number;
  releasedAddr(): number;
  releasedCount(): number;
  coalesce(count: number, link: number): number;
  offloadAddr(): number;
  offloadBytes(): number;
  offloadCount(): number;
  offloadResultsAddr(): number;
  offloadFinish(): number;
  /** gso: TSO packets for other nodes go whole to the tunnel TAP whose MAC is macHi:macLo (first
   *  two bytes, last four); decap: a peer's whole TSO packet goes to the TUN as one GSO packet. */
  setTunnelOffloads(macHi: number, macLo: number, gso: number, decap: number): void;
  maxBatch(): number;
  bufferAddr(): number;
  bufferStride(): number;
  stageAddr(): number;
  stageCapacity(): number;
  countersAddr(): number;
  traceAddr(): number;
  serviceStatsAddr(): number;
  serviceStatsReset(id: number): void;
  generation(): number;
  serviceCount(): number;
  routeCount(): number;
  ctCeiling(): number;
  ctFlush(): void;
  checkInvariants(): number;
}

const here = fileURLToPath(new URL(".", import.meta.url));

/** The single executable (dist/wasp) carries the core as a SEA asset; this path names it. */
const SEA_WASM = "sea:wasp.wasm";

export function defaultWasmPath(): string {
  if (!process.env.WASP_WASM && sea.isSea()) return SEA_WASM;
  return process.env.WASP_WASM ?? fileURLToPath(new URL("../../build/wasp.wasm", `file://${here}`));
}

// The core is hot from its first batch: compile it with the optimizing tier (TurboFan) at once rather
// than starting in Liftoff and waiting for dynamic tier-up (measured: same steady state, but the
// first seconds ran up to 1.8x slower). The flag only affects wasm compiled after it is set.
v8.setFlagsFromString("--no-liftoff");

let compiled: WebAssembly.Module | undefined;
let compiledPath = "";

function compile(path: string): WebAssembly.Module {
  if (!compiled || compiledPath !== path) {
    let bytes: Buffer;
    try {
      bytes = path === SEA_WASM ? Buffer.from(sea.getAsset("wasp.wasm")) : readFileSync(path);
    } catch (e) {
      throw new Error(`cannot read the wasm core ${path}: ${(e as Error).message}. Build it: npm run build:wasm`);
    }
    compiled = new WebAssembly.Module(new Uint8Array(bytes));
    compiledPath = path;
  }
  return compiled;
}

/** The 16-byte form and engine prefix length (of 128) of a CIDR. */
function cidr16(text: string): { prefix: Uint8Array; bits: number } {
  const c = parseCidr(text);
  if (!c) throw new TypeError(`"${text}" is not a CIDR`);
  return { prefix: c.bytes, bits: mappedPrefixLen(c) };
}

/** The 16-byte form of an address (IPv4 as ::ffff:a.b.c.d); throws on text that is not one. */
function addr16(text: string): Uint8Array {
  const ip = parseIp(text);
  if (!ip) throw new TypeError(`"${text}" is not an IPv4 or IPv6 address`);
  return ip.bytes;
}

export class Engine {
  readonly exports: CoreExports;
  readonly maxBatch: number;
  readonly slots: number;
  readonly bufferBase: number;
  readonly bufferStride: number;
  /** Upserts that did not fit (src/engine/waiting.ts). */
  private readonly waiting = new WaitingUpserts();
  private wasFull = false;
  /** Told when the tables stop taking everything they are given (a ceiling, memory) and when they
   *  take everything again: the daemon logs it. */
  onTables: ((state: TablesState) => void) | undefined;

  constructor(opts: EngineOptions = {}) {
    const mod = compile(opts.wasmPath ?? defaultWasmPath());
    const inst = new WebAssembly.Instance(mod, {});
    this.exports = inst.exports as unknown as CoreExports;
    const e = this.exports;
    const cfg = new DataView(e.memory.buffer, e.configAddr(), abi.CFG_SIZE);
    const u32 = (off: number, v: number) => cfg.setUint32(off, v >>> 0, true);
    u32(abi.CFG_MAX_BATCH, opts.maxBatch ?? 64);
    u32(abi.CFG_CT_CAPACITY, opts.conntrackCapacity ?? 1 << 20);
    u32(abi.CFG_MAX_SERVICES, opts.maxServices ?? 0);
    u32(abi.CFG_MAX_BACKENDS, opts.maxBackends ?? 0);
    u32(abi.CFG_MAX_ROUTES, opts.maxRoutes ?? 0);
    u32(abi.CFG_MAGLEV_CELLS, opts.maglevCells ?? 0);
    u32(abi.CFG_MEMORY_LIMIT_MIB, opts.memoryLimitMiB ?? 0);
    u32(abi.CFG_MODE, opts.mode === "tap" ? 1 : 0);
    u32(abi.CFG_OFFLOAD, opts.offload ? 1 : 0);
    u32(abi.CFG_UNDERLAY_IP, opts.underlayIp ? parseIpv4(opts.underlayIp) : 0);
    u32(abi.CFG_VNI, opts.vni ?? 1);
    u32(abi.CFG_VXLAN_PORT, opts.vxlanPort ?? 8472);
    u32(abi.CFG_UNDERLAY_MTU, opts.underlayMtu ?? 1500);
    u32(abi.CFG_SEED, opts.seed ?? (Math.random() * 2 ** 32) >>> 0);
    const bytesAt = (off: number, b: Uint8Array) => new Uint8Array(e.memory.buffer, e.configAddr() + off, b.length).set(b);
    bytesAt(abi.CFG_VTEP_MAC, macBytes(opts.vtepMac ?? "02:00:00:00:00:01"));
    bytesAt(abi.CFG_TAP_PEER_MAC, macBytes(opts.tapPeerMac ?? "02:00:00:00:00:02"));
    bytesAt(abi.CFG_ENGINE_MAC, macBytes(opts.engineMac ?? "02:77:61:73:70:01"));
    bytesAt(abi.CFG_MASQ_ADDR4, addr16(opts.masqAddr4 ?? "169.254.1.2"));
    bytesAt(abi.CFG_MASQ_ADDR6, addr16(opts.masqAddr6 ?? "fe80::2"));
    const cidrAt = (off: number, s: string | undefined) => {
      if (!s) return;
      const c = cidr16(s);
      bytesAt(off, c.prefix);
      u32(off + 16, c.bits);
    };
    cidrAt(abi.CFG_SERVICE_CIDR4, opts.serviceCidr4 ?? "10.96.0.0/12");
    cidrAt(abi.CFG_SERVICE_CIDR6, opts.serviceCidr6);
    cidrAt(abi.CFG_CLUSTER_CIDR4, opts.clusterCidr4 ?? "10.244.0.0/16");
    cidrAt(abi.CFG_CLUSTER_CIDR6, opts.clusterCidr6);
    const r = e.init();
    if (r !== abi.InitResult.Ok) throw new Error(`the wasm core refused its configuration: ${abi.InitResult[r] ?? r}`);
    this.maxBatch = e.maxBatch();
    this.slots = e.slotsAddr();
    this.bufferBase = e.bufferAddr();
    this.bufferStride = e.bufferStride();
  }

  /** The memory's current buffer. The memory grows with the tables (in commits, process() and
   *  sweep()), which detaches earlier buffers: take it again after any of those calls. */
  get memory(): ArrayBuffer { return this.exports.memory.buffer; }
  /** The wasm memory itself, for native/ to read and write packets in place. */
  get wasmMemory(): WebAssembly.Memory { return this.exports.memory; }
  /** Where ops are staged, and how many bytes fit; both change when the stage grows. */
  get stage(): number { return this.exports.stageAddr(); }
  get stageCapacity(): number { return this.exports.stageCapacity(); }

  /** A fresh DataView of memory (the memory grows with the tables: never keep one across calls). */
  view(): DataView { return new DataView(this.exports.memory.buffer); }

  /** Address of slot i's packet room (after the headroom), where a packet (or its vnet header) goes. */
  packetAddr(i: number, vnet = false): number {
    return this.bufferBase + i * this.bufferStride + abi.HEADROOM + (vnet ? abi.VNET_HDR_LEN : 0);
  }

  /** Prepares slot i for a packet of len bytes already written at packetAddr(i, vnet). */
  setSlot(i: number, len: number, flags = 0, peer = 0): void {
    const v = this.view(), s = this.slots + i * abi.SLOT_SIZE, buf = this.bufferBase + i * this.bufferStride;
    v.setUint32(s + abi.SLOT_DATA, this.packetAddr(i, (flags & abi.SlotFlag.VNET) !== 0), true);
    v.setUint32(s + abi.SLOT_LEN, len, true);
    v.setUint16(s + abi.SLOT_FLAGS, flags, true);
    v.setUint8(s + abi.SLOT_VERDICT, 0);
    v.setUint8(s + abi.SLOT_REASON, 0);
    v.setUint32(s + abi.SLOT_PEER, peer >>> 0, true);
    v.setUint32(s + abi.SLOT_BUF_START, buf, true);
    v.setUint32(s + abi.SLOT_BUF_END, buf + this.bufferStride, true);
    v.setUint32(s + abi.SLOT_SERVICE, 0, true);
    v.setUint32(s + abi.SLOT_NOTE, 0, true);
  }

  /** Every slot's buffer bounds (set once: the core writes only inside them). */
  initSlots(): void {
    for (let i = 0; i < this.maxBatch; i++) this.setSlot(i, 0);
  }

  /** Prepares the first n slots for a read: data after the headroom (and the vnet header when
   *  vnet), everything the core may have changed cleared; bufStart and bufEnd stay as initSlots set them. */
  prepareRead(n: number, vnet: boolean): void {
    const u32 = new Uint32Array(this.memory), flags = vnet ? abi.SlotFlag.VNET : 0;
    for (let i = 0; i < n; i++) {
      const s = (this.slots + i * abi.SLOT_SIZE) >>> 2;
      u32[s + (abi.SLOT_DATA >>> 2)] = this.packetAddr(i, vnet);
      u32[s + (abi.SLOT_LEN >>> 2)] = 0;
      u32[s + (abi.SLOT_FLAGS >>> 2)] = flags;   // with verdict and reason, the u32 at 8
      u32[s + (abi.SLOT_PEER >>> 2)] = 0;
      u32[s + (abi.SLOT_SERVICE >>> 2)] = 0;
      u32[s + (abi.SLOT_NOTE >>> 2)] = 0;
    }
  }

  /** After process() of a batch from the underlay for a vnet TUN: a decapsulated packet has no
   *  virtio_net_hdr, so the bytes before it (the inner Ethernet header) become an empty one: no
   *  offloads pending. A whole TSO packet from a peer keeps the GSO header the core wrote. */
  clearOutputVnet(n: number, slots = this.slots): void {
    const m = new Uint8Array(this.memory), v = this.view();
    for (let i = 0; i < n; i++) {
      const s = slots + i * abi.SLOT_SIZE, verdict = v.getUint8(s + abi.SLOT_VERDICT);
      if (verdict !== abi.Verdict.Tun && verdict !== abi.Verdict.Host) continue;
      if (v.getUint32(s + abi.SLOT_NOTE, true) & abi.Note.GSO) continue;
      const data = v.getUint32(s + abi.SLOT_DATA, true);
      m.fill(0, data - abi.VNET_HDR_LEN, data);
    }
  }

  /** Copies a packet into slot i (tests, replay, trace; the datapath reads straight into memory). */
  putPacket(i: number, bytes: Uint8Array, flags = 0, peer = 0): void {
    const vnet = (flags & abi.SlotFlag.VNET) !== 0;
    new Uint8Array(this.memory, this.packetAddr(i, vnet) - (vnet ? abi.VNET_HDR_LEN : 0), bytes.length)
      .set(bytes);
    this.setSlot(i, vnet ? bytes.length - abi.VNET_HDR_LEN : bytes.length, flags, peer);
  }

  /** Runs a batch. First, between this batch and the last, the flow table grows if its load passed
   *  the threshold (the core's grow(); never inside its process()). */
  process(count: number, nowSec: number): number {
    const e = this.exports;
    if (e.grow() === 2) this.noteTables();
    return e.process(count, nowSec >>> 0);
  }

  slot(i: number, slots = this.slots): SlotView {
    const v = this.view(), s = slots + i * abi.SLOT_SIZE;
    return {
      data: v.getUint32(s + abi.SLOT_DATA, true),
      len: v.getUint32(s + abi.SLOT_LEN, true),
      flags: v.getUint16(s + abi.SLOT_FLAGS, true),
      verdict: v.getUint8(s + abi.SLOT_VERDICT) as abi.Verdict,
      reason: v.getUint8(s + abi.SLOT_REASON) as abi.Drop,
      peer: v.getUint32(s + abi.SLOT_PEER, true),
      service: v.getUint32(s + abi.SLOT_SERVICE, true),
      note: v.getUint32(s + abi.SLOT_NOTE, true),
    };
  }

  /** The bytes the core left in slot i (a copy). */
  output(i: number): Uint8Array {
    const s = this.slot(i);
    return new Uint8Array(this.memory, s.data, s.len).slice();
  }

  /** Writes raw op bytes into the stage area (grown to hold them) and commits them as one generation. */
  commitOps(ops: Uint8Array): abi.CommitResult {
    if (!this.reserveStage(ops.length)) return abi.CommitResult.OutOfMemory;
    new Uint8Array(this.memory, this.stage, ops.length).set(ops);
    return this.exports.commit(ops.length);
  }

  /** Loads a whole model as one new generation (a Clear first). When the tables cannot take all of
   *  it (a ceiling, or memory), they take what fits and the rest waits (tablesState()); throws an
   *  EngineRefusedError, leaving the running tables as they were, only for ops the core calls bad. */
  loadModel(model: Model): void {
    this.waiting.clear();
    this.commitDelta(fullDelta(model), "load");
  }

  /** Applies a model delta as one new generation, with what still waits from earlier ones; what
   *  does not fit waits, as loadModel's does. */
  applyDelta(delta: ModelDelta): void {
    this.commitDelta(delta, "delta");
  }

  private reserveStage(bytes: number): boolean {
    return bytes <= this.stageCapacity || this.exports.stageReserve(bytes) !== 0;
  }

  /** One commit of `delta`: the stage grown to hold it, the ops written, the core's answer. */
  private tryCommit(delta: ModelDelta): abi.CommitResult {
    const bytes = measureOps(delta);
    if (!this.reserveStage(bytes)) return abi.CommitResult.OutOfMemory;
    return this.exports.commit(encodeOps(delta, new Uint8Array(this.memory, this.stage, this.stageCapacity), 0));
  }

  private commitDelta(delta: ModelDelta, what: string): void {
    this.waiting.commit(delta, what, (d) => this.tryCommit(d));
    this.noteTables();
  }

  /** What the tables hold short of what they were given, and the memory they take. */
  tablesState(): TablesState {
    const e = this.exports, refused = e.tablesRefused(), limit = e.memoryLimitBytes();
    const waiting = this.waiting.counts();
    const flowsCapped = (refused & 1) !== 0, statsCapped = (refused & 2) !== 0;
    const why: string[] = [];
    if (this.waiting.size > 0) {
      why.push(`${this.waiting.size} entries wait for room (${abi.CommitResult[this.waiting.refusal ?? abi.CommitResult.OutOfMemory]}); the tables keep what they had for them`);
    }
    if (flowsCapped) why.push(`the flow table cannot grow past ${e.ctCapacity()} flows for want of memory; it evicts when full`);
    if (statsCapped) why.push("per-service counters cannot grow: new entries are not counted");
    return {
      memoryBytes: e.memoryBytes(), limitBytes: limit === 0 ? undefined : limit,
      full: why.length > 0, ...(why.length ? { why: why.join("; ") } : {}), waiting,
      flows: { capacity: e.ctCapacity(), ceiling: e.ctCeiling() },
    };
  }

  /** Tells onTables when the tables stop or start again taking everything. */
  private noteTables(): void {
    const s = this.tablesState();
    if (s.full === this.wasFull) return;
    this.wasFull = s.full;
    this.onTables?.(s);
  }

  /** The generation the core serves (one per load or delta). */
  generation(): number { return this.exports.generation(); }
  serviceCount(): number { return this.exports.serviceCount(); }
  routeCount(): number { return this.exports.routeCount(); }
  /** Flows in the conntrack table, how many it holds now, and how many it may grow to. */
  flowCount(): number { return this.exports.ctCount(); }
  flowCapacity(): number { return this.exports.ctCapacity(); }
  flowCeiling(): number { return this.exports.ctCeiling(); }
  /** Empties the conntrack table (and the fragments it tracked). */
  flushFlows(): void { this.exports.ctFlush(); }

  /** Puts a flow into the conntrack table as `flows()` describes one (replay of a capture taken
   *  mid-flow); false when the core refuses it: a value out of range, or a tuple already tracked. */
  insertFlow(f: FlowInsert): boolean { return flowTable.insertFlow(this.exports, this.stage, f); }

  /** Expires timed-out flows and revalidates flows against a new generation, `budget` a call
   *  (about once a second); the flows removed. */
  sweep(nowSec: number, budget: number): number {
    const n = this.exports.sweep(nowSec >>> 0, budget);
    if (this.wasFull) this.noteTables();
    return n;
  }

  /** A new entry in the service table may reuse an id: its per-service counters start at zero. */
  resetServiceStats(id: number): void { this.exports.serviceStatsReset(id); }

  /** What the node's devices offload for the overlay: TSO packets go whole to the tunnel TAP with
   *  MAC `tunnelMac` (undefined: cut by the core); decap: a peer's whole TSO packet goes to the TUN
   *  as one GSO packet. */
  setTunnelOffloads(tunnelMac: string | undefined, decap: boolean): void {
    const b = tunnelMac ? macBytes(tunnelMac) : new Uint8Array(6);
    const hi = (b[0]! << 8) | b[1]!, lo = ((b[2]! << 24) | (b[3]! << 16) | (b[4]! << 8) | b[5]!) >>> 0;
    this.exports.setTunnelOffloads(hi, lo, tunnelMac ? 1 : 0, decap ? 1 : 0);
  }

  /** After process() of a batch from the underlay (vnet headers zeroed): merges one flow's TCP
   *  segments into GSO packets for a TUN (link 0) or TAP (link 14); the slots merged away. */
  coalesce(count: number, link: number): number { return this.exports.coalesce(count, link); }

  /** A service entry's counters (the core's stats area): packets, bytes, new flows. */
  serviceStats(id: number): ServiceStats {
    const v = this.view(), p = this.exports.serviceStatsAddr() + id * abi.STATS_STRIDE;
    const u64 = (off: number) => Number(v.getBigUint64(p + off, true));
    return { packets: u64(abi.STATS_PACKETS), bytes: u64(abi.STATS_BYTES), newFlows: u64(abi.STATS_NEW_FLOWS) };
  }

  /** The stages the last process() recorded for a slot flagged TRACE. */
  traceSteps(): TraceStep[] {
    const v = this.view(), base = this.exports.traceAddr(), n = v.getUint32(base, true), out: TraceStep[] = [];
    for (let i = 0; i < n; i++) {
      const p = base + abi.TRACE_RECORDS + i * abi.TRACE_REC_SIZE;
      out.push({ stage: v.getUint32(p + abi.TRACE_STAGE, true), a: v.getUint32(p + abi.TRACE_A, true), b: v.getUint32(p + abi.TRACE_B, true) });
    }
    return out;
  }

  /** Every live flow of the conntrack table, decoded (the table is walked once, in index order). */
  flows(): Generator<FlowRecord> { return flowTable.liveFlows(this.exports); }

  /** The flow table's records as they lie in memory (CT_REC_SIZE bytes each, the abi.ts layout,
   *  free ones among them): what the next process on this node restores (restoreFlows). Views of
   *  the engine's memory, valid only until the engine next runs: write them out before anything else. */
  flowRecordViews(): Uint8Array[] { return flowTable.flowRecordViews(this.exports); }

  /** Changes to the flow records so far (a count that wraps): while it stays, flowRecordViews()
   *  gives the same records (but for their generation checks and offload marks). */
  flowChanges(): number { return this.exports.ctChanges(); }

  /** Puts flows another process recorded (flowRecordViews, `ageSec` seconds ago on its clock) back
   *  into the conntrack table, their ages kept: a flow past its timeout is left out, `service`
   *  maps the old process's service entry to this one's (0: none). */
  restoreFlows(records: Uint8Array, recordedSec: number, ageSec: number, nowSec: number, service: (old: number) => number): { restored: number; expired: number; refused: number } {
    // the table grows as they come (as between batches), or a large table would evict most of them
    return flowTable.restoreFlows(records, recordedSec, ageSec, nowSec, service, (f) => {
      if (this.exports.grow() === 2) this.noteTables();
      return this.insertFlow(f);
    });
  }

  /** The early fragments the last process() released after their first fragment (a slot each,
   *  verdict set like a batch slot's): the host writes the Tun and Host ones after the batch; the
   *  Overlay ones are in overlayOut(). */
  releasedOut(): { addr: number; count: number } {
    return { addr: this.exports.releasedAddr(), count: this.exports.releasedCount() };
  }

  /** The released early fragments of the last process() (tests, replay): each slot and a copy of
   *  its packet (empty when dropped). */
  releasedPackets(): Array<{ slot: SlotView; bytes: Uint8Array }> {
    const { addr, count } = this.releasedOut(), out: Array<{ slot: SlotView; bytes: Uint8Array }> = [];
    for (let k = 0; k < count; k++) {
      const slot = this.slot(k, addr);
      out.push({ slot, bytes: slot.verdict === abi.Verdict.Drop ? new Uint8Array(0) : new Uint8Array(this.memory, slot.data, slot.len).slice() });
    }
    return out;
  }

  /** Copies of the extra output slots of the last process(): the segments after the first of each
   *  GSO super-packet the core cut for another node, already encapsulated. */
  extraOutputs(): Uint8Array[] {
    const n = this.exports.extraCount(), base = this.exports.extraSlotsAddr(), v = this.view(), out: Uint8Array[] = [];
    for (let k = 0; k < n; k++) {
      const s = base + k * abi.SLOT_SIZE;
      out.push(new Uint8Array(this.memory, v.getUint32(s + abi.SLOT_DATA, true), v.getUint32(s + abi.SLOT_LEN, true)).slice());
    }
    return out;
  }

  /** Offload mode, after process(): the batch's ctnetlink requests (abi.ts: offload requests), to
   *  send before the batch is written back; count 0 when the batch made no new flow. */
  offloadRequests(): { addr: number; bytes: number; count: number } {
    const e = this.exports;
    return { addr: e.offloadAddr(), bytes: e.offloadBytes(), count: e.offloadCount() };
  }

  /** Where the kernel's answers to the last offloadRequests() go (0 or the errno, one per request). */
  offloadResults(count: number): Int32Array {
    return new Int32Array(this.memory, this.exports.offloadResultsAddr(), count);
  }

  /** Once the answers are in: the packets of flows the kernel refused are dropped (OffloadFailed).
   *  Returns how many were. */
  finishOffload(): number { return this.exports.offloadFinish(); }

  /** Every Overlay packet of the last process() in wire order, as slot descriptors at `addr`. */
  overlayOut(): { addr: number; count: number } {
    return { addr: this.exports.overlayOutAddr(), count: this.exports.overlayOutCount() };
  }

  counter(idx: number): number {
    return Number(this.view().getBigUint64(this.exports.countersAddr() + idx * 8, true));
  }

  counters(): EngineCounters {
    const verdicts: Record<string, number> = {}, drops: Record<string, number> = {};
    abi.VERDICT_NAMES.forEach((n, i) => { verdicts[n] = this.counter(i); });
    abi.DROP_NAMES.forEach((n, i) => { if (i > 0) drops[n] = this.counter(abi.C_DROP_BASE + i); });
    const named: NamedCounters = {
      bytes_in: this.counter(abi.C_BYTES_IN), packets_in: this.counter(abi.C_PACKETS_IN),
      new_flows: this.counter(abi.C_NEW_FLOWS), ct_evicted: this.counter(abi.C_CT_EVICTED),
      ct_expired: this.counter(abi.C_CT_EXPIRED), ct_entries: this.counter(abi.C_CT_ENTRIES),
      generation: this.counter(abi.C_GENERATION), batches: this.counter(abi.C_BATCHES),
      stale_udp_flushed: this.counter(abi.C_STALE_UDP_FLUSHED), replies_made: this.counter(abi.C_REPLIES_MADE),
      icmp_translated: this.counter(abi.C_ICMP_TRANSLATED), frag_tracked: this.counter(abi.C_FRAG_TRACKED),
      inner_csum_completed: this.counter(abi.C_INNER_CSUM_COMPLETED),
      tunnel_gso_sent: this.counter(abi.C_TUNNEL_GSO_SENT),
      tunnel_gso_received: this.counter(abi.C_TUNNEL_GSO_RECEIVED),
      offloaded: this.counter(abi.C_OFFLOADED), offload_failed: this.counter(abi.C_OFFLOAD_FAILED),
      offload_resent: this.counter(abi.C_OFFLOAD_RESENT), offload_last_errno: this.counter(abi.C_OFFLOAD_LAST_ERRNO),
      frag_held: this.counter(abi.C_FRAG_HELD), frag_released: this.counter(abi.C_FRAG_RELEASED),
      frag_holding: this.counter(abi.C_FRAG_HOLDING),
      ct_evicted_share: this.counter(abi.C_CT_EVICTED_SHARE), ct_evicted_oldest: this.counter(abi.C_CT_EVICTED_OLDEST),
    };
    return { verdicts, drops, named };
  }

  checkInvariants(): number { return this.exports.checkInvariants(); }
}

export interface NamedCounters {
  bytes_in: number; packets_in: number; new_flows: number; ct_evicted: number; ct_expired: number; ct_entries: number;
  generation: number; batches: number; stale_udp_flushed: number; replies_made: number; icmp_translated: number;
  frag_tracked: number; inner_csum_completed: number; tunnel_gso_sent: number; tunnel_gso_received: number;
  offloaded: number; offload_failed: number; offload_resent: number; offload_last_errno: number;
  frag_held: number; frag_released: number; frag_holding: number;
  /** Evictions by why (both also in ct_evicted): a flow of the source above the mean share, the table's oldest. */
  ct_evicted_share: number; ct_evicted_oldest: number;
}
export interface EngineCounters { verdicts: Record<string, number>; drops: Record<string, number>; named: NamedCounters }

export interface ServiceStats { packets: number; bytes: number; newFlows: number }

/** The engine's memory and what its tables could not take (Engine.tablesState()). */
export interface TablesState {
  /** Bytes of wasm memory now, and the ceiling (undefined: none). */
  memoryBytes: number;
  limitBytes: number | undefined;
  /** Something did not fit: entries wait, the flow table cannot grow, or new counters are not kept. */
  full: boolean;
  why?: string;
  /** Upserts that wait for room: the tables keep what they had for these keys. */
  waiting: WaitingCounts;
  flows: { capacity: number; ceiling: number };
}

export interface TraceStep { stage: number; a: number; b: number }


export interface SlotView {
  data: number; len: number; flags: number; verdict: abi.Verdict; reason: abi.Drop; peer: number; service: number; note: number;
}
