// The conntrack table as the host sees it: live flows decoded (FlowRecord), raw records kept across
// a restart (flowRecordViews → restoreFlows) and single flows put back (insertFlow). The record layout is
// assembly/abi.ts's (CT_*), mirrored in src/engine/abi.ts; Engine's methods of the same names call these.
import * as abi from "./abi.js";
import { readAddr16, type Ip } from "../model/addr.js";

/** One flow of the conntrack table. The forward tuple is what the client sent, the reply tuple what
 *  the backend sends back (as the kernel's tuplehash[ORIGINAL] / [REPLY]); seconds on nowSec's clock. */
export interface FlowRecord {
  index: number; proto: number;
  src: Ip; sport: number; dst: Ip; dport: number;
  replySrc: Ip; replySport: number; replyDst: Ip; replyDport: number;
  state: number; flags: number; service: number; createdSec: number; lastSec: number; expiresSec: number;
}

/** A flow for insertFlow: the tuples of FlowRecord, its state and timeout class, seen at lastSec. */
export type FlowInsert = Pick<FlowRecord, "proto" | "src" | "sport" | "dst" | "dport" | "replySrc" | "replySport" | "replyDst" | "replyDport" | "state" | "flags" | "service" | "lastSec">
  & { cls: abi.CtClass };

/** What of the core the flow table needs: its records, and a way in for one flow. */
export interface FlowExports {
  memory: WebAssembly.Memory;
  ctCount(): number;
  ctCapacity(): number;
  ctRecord(i: number): number;
  ctRecordAt(i: number): number;
  ctRun(i: number): number;
  ctScanEnd(): number;
  ctChanges(): number;
  ctInsert(fSport: number, fDport: number, rSport: number, rDport: number, proto: number, state: number, cls: number,
    flags: number, service: number, now: number): number;
}

/** Flow record r of mem (the abi.ts layout), the index it had in its table. */
export function decodeFlow(mem: Uint8Array, r: number, index: number): FlowRecord {
  const v = new DataView(mem.buffer, mem.byteOffset, mem.byteLength), addr = (off: number) => readAddr16(mem, r + off);
  const cls = v.getUint8(r + abi.CT_CLS), last = v.getUint32(r + abi.CT_LAST, true);
  return {
    index, proto: v.getUint8(r + abi.CT_PROTO),
    src: addr(abi.CT_F_SRC), sport: v.getUint16(r + abi.CT_F_SPORT, true), dst: addr(abi.CT_F_DST), dport: v.getUint16(r + abi.CT_F_DPORT, true),
    replySrc: addr(abi.CT_R_SRC), replySport: v.getUint16(r + abi.CT_R_SPORT, true), replyDst: addr(abi.CT_R_DST), replyDport: v.getUint16(r + abi.CT_R_DPORT, true),
    state: v.getUint8(r + abi.CT_STATE), flags: v.getUint8(r + abi.CT_FLAGS), service: v.getUint32(r + abi.CT_SERVICE, true),
    createdSec: v.getUint32(r + abi.CT_CREATED, true), lastSec: last, expiresSec: last + (abi.CT_TIMEOUT_SEC[cls] ?? 0),
  };
}

/** Every live flow of the conntrack table, decoded (the table is walked once, in index order). */
export function* liveFlows(ex: FlowExports): Generator<FlowRecord> {
  const cap = ex.ctCapacity(), mem = new Uint8Array(ex.memory.buffer);
  for (let i = 0; i < cap; i++) {
    const r = ex.ctRecord(i);
    if (r !== 0) yield decodeFlow(mem, r, i);
  }
}

/** The table's records where they lie, [0, ctScanEnd()) in index order: views of the engine's
 *  memory, one per run of adjacent records; a record without FlowFlag.USED is free. Valid only
 *  until the engine next runs (a batch, a commit or a grow may move the memory): write them out at once. */
export function flowRecordViews(ex: FlowExports): Uint8Array[] {
  const end = ex.ctScanEnd(), views: Uint8Array[] = [];
  let at = 0, len = 0;
  for (let i = 0; i < end;) {
    const r = ex.ctRecordAt(i), n = ex.ctRun(i);
    if (r === at + len) len += n * abi.CT_REC_SIZE;   // this chunk follows the last (one grow's chunks do)
    else {
      if (len > 0) views.push(new Uint8Array(ex.memory.buffer, at, len));
      at = r; len = n * abi.CT_REC_SIZE;
    }
    i += n;
  }
  if (len > 0) views.push(new Uint8Array(ex.memory.buffer, at, len));
  return views;
}

/** Puts one flow into the table through the 64 bytes of addresses at `stage`; false when refused. */
export function insertFlow(ex: FlowExports, stage: number, f: FlowInsert): boolean {
  const at = new Uint8Array(ex.memory.buffer, stage, 64);
  at.set(f.src.bytes, 0); at.set(f.dst.bytes, 16); at.set(f.replySrc.bytes, 32); at.set(f.replyDst.bytes, 48);
  return ex.ctInsert(f.sport, f.dport, f.replySport, f.replyDport, f.proto, f.state, f.cls, f.flags, f.service, f.lastSec >>> 0) >= 0;
}

/** Puts recorded flows back with their ages (see Engine.restoreFlows); `insert` takes one flow.
 *  Free records (no FlowFlag.USED: flowRecordViews gives them too) are passed over. */
export function restoreFlows(records: Uint8Array, recordedSec: number, ageSec: number, nowSec: number,
  service: (old: number) => number, insert: (f: FlowInsert) => boolean): { restored: number; expired: number; refused: number } {
  const counts = { restored: 0, expired: 0, refused: 0 };
  const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
  for (let r = 0; r + abi.CT_REC_SIZE <= records.length; r += abi.CT_REC_SIZE) {
    if ((view.getUint8(r + abi.CT_FLAGS) & abi.FlowFlag.USED) === 0) continue;
    const f = decodeFlow(records, r, 0), cls = view.getUint8(r + abi.CT_CLS);
    const age = recordedSec - f.lastSec + ageSec;
    if (age < 0 || age >= (abi.CT_TIMEOUT_SEC[cls] ?? 0)) { counts.expired++; continue; }
    const ok = insert({ ...f, cls, flags: f.flags & abi.FLOW_FLAGS_INSERTABLE, service: service(f.service), lastSec: nowSec - age });
    if (ok) counts.restored++; else counts.refused++;
  }
  return counts;
}
