// Model deltas to the engine's control ops (assembly/abi.ts, "control ops"), written straight into the
// staging area of the wasm memory. decodeOps reads them back for tests and `wasp trace`.
//
// ╒═══ every op: 8-byte header, then fields ═══╕
// Byte order, as assembly/table/generation.ts reads it: addresses and the u16 port and weight fields in
// network order (the core reads them with ld16, a byte swap); u32 fields, nodeId and ranges little-endian.
//  0 u8  code      Op.*
//  1 u8  0
//  2 u16 0
//  4 u32 size      bytes of the whole op, header included, a multiple of 4
// ├─ UpsertService (52 + 20 × count + 20 × ranges; abi.ts OP_SERVICE_HEAD, OP_BACKEND_SIZE, OP_RANGE_SIZE)
//  8 addr16 key address (IPv4 as ::ffff:a.b.c.d; a NodePort is all zero, the core's ANY_ADDR, with ANY_LOCAL_ADDR)
// 24 u16 port (network order)   26 u8 proto (6 TCP, 17 UDP)   27 u8 kind ServiceKind.*
// 28 u32 id        32 u8 select Select.*   33 u8 flags ServiceFlag.*   34 u16 ranges (OP_SERVICE_RANGES)
// 36 u32 affinitySec   40 u32 maglevSize (0: the core picks a prime ≥ 100 × eligible)   44 u32 count   48 u32 eligible
// 52 count × { addr16 | u16 port | u16 weight } (network order): the first `eligible` take new flows
//    then ranges × { addr16 | u8 len (of 128) | u8 0 | u16 0 }: the sources new flows may come from (none: any)
//    An echo marker (Model.vips) is an UpsertService of the VIP with port 0, proto 0 and every other field 0.
// ├─ DeleteService (28):   8 addr16 | 24 u16 port (network order) | 26 u8 proto | 27 u8 0 (port 0, proto 0: the echo marker)
// ├─ UpsertRoute (40):     8 prefix16 | 24 u8 len (of 128) | 25 u8 kind | 26 u16 nodeId (LE) | 28 u32 underlay IPv4 (LE u32 of a<<24|b<<16|c<<8|d) | 32 mac6 | 38 u16 0
// ├─ DeleteRoute (28):     8 prefix16 | 24 u8 len | 25 u8 0 | 26 u16 0
// ├─ AddLocalAddr, DeleteLocalAddr (24): 8 addr16
// └─ Clear, End (8): the header alone

import { Op, OP_BACKEND_SIZE, OP_RANGE_SIZE, OP_SERVICE_HEAD, OP_SERVICE_RANGES } from "./abi.js";
import { PROTO, type Model, type ModelDelta, type Route, type ServiceEntry, type ServiceKey } from "../model/model.js";
import { fullDelta } from "../model/model-delta.js";
import { formatIp, formatMac, parseIp, readAddr16, u32ToIpv4, type Ip } from "../model/addr.js";

const HEADER = 8;
export const OP_SIZE = {
  serviceBase: OP_SERVICE_HEAD,
  backend: OP_BACKEND_SIZE,
  range: OP_RANGE_SIZE,
  deleteService: 28,
  upsertRoute: 40,
  deleteRoute: 28,
  localAddr: 24,
  clear: HEADER,
  end: HEADER,
} as const;

export interface EncodeOptions {
  /** Finish with an End op (default true). */
  end?: boolean;
}

/** Bytes that encodeOps will write for `delta`. */
export function measureOps(delta: ModelDelta, options: EncodeOptions = {}): number {
  let n = delta.clear ? OP_SIZE.clear : 0;
  n += delta.deleteServices.length * OP_SIZE.deleteService;
  n += delta.deleteRoutes.length * OP_SIZE.deleteRoute;
  n += (delta.deleteLocalAddrs.length + delta.addLocalAddrs.length) * OP_SIZE.localAddr;
  n += delta.deleteVips.length * OP_SIZE.deleteService + delta.addVips.length * OP_SIZE.serviceBase;
  n += delta.upsertRoutes.length * OP_SIZE.upsertRoute;
  for (const e of delta.upsertServices) n += serviceOpSize(e);
  return n + (options.end === false ? 0 : OP_SIZE.end);
}

const PROTO_OF = new Map<string, number>(Object.entries(PROTO));

/**
 * Writes `delta` as control ops at `offset` and returns the bytes written. Order: Clear (if any), the
 * deletes, then the additions, so that a key freed and taken in one reload never needs two slots at
 * once and an entry's id is free before another entry takes it. Throws RangeError, writing nothing,
 * when the ops do not fit.
 */
export function encodeOps(delta: ModelDelta, out: Uint8Array | DataView, offset: number, options: EncodeOptions = {}): number {
  const bytes = out instanceof DataView ? new Uint8Array(out.buffer, out.byteOffset, out.byteLength) : out;
  const dv = out instanceof DataView ? out : new DataView(out.buffer, out.byteOffset, out.byteLength);
  const need = measureOps(delta, options);
  if (offset < 0 || offset % 4 !== 0 || offset + need > bytes.length) {
    throw new RangeError(`control ops need ${need} bytes at offset ${offset}; the staging area has ${bytes.length}`);
  }
  let p = offset;
  const header = (op: Op, size: number) => {
    dv.setUint32(p, op, true); // code, then the zero u8 and u16
    dv.setUint32(p + 4, size, true);
  };
  if (delta.clear) {
    header(Op.Clear, OP_SIZE.clear);
    p += OP_SIZE.clear;
  }
  for (const k of delta.deleteServices) {
    header(Op.DeleteService, OP_SIZE.deleteService);
    writeKey(bytes, dv, p, k);
    dv.setUint8(p + 27, 0);
    p += OP_SIZE.deleteService;
  }
  for (const a of delta.deleteVips) {
    header(Op.DeleteService, OP_SIZE.deleteService);
    writeAddrText(bytes, p + 8, a);
    dv.setUint32(p + 24, 0, true); // port 0, proto 0: the echo marker
    p += OP_SIZE.deleteService;
  }
  for (const r of delta.deleteRoutes) {
    header(Op.DeleteRoute, OP_SIZE.deleteRoute);
    bytes.set(r.prefix16, p + 8);
    dv.setUint32(p + 24, r.prefixLen128, true); // len u8, then the zero u8 and u16
    p += OP_SIZE.deleteRoute;
  }
  for (const a of delta.deleteLocalAddrs) {
    header(Op.DeleteLocalAddr, OP_SIZE.localAddr);
    writeAddrText(bytes, p + 8, a);
    p += OP_SIZE.localAddr;
  }
  for (const a of delta.addLocalAddrs) {
    header(Op.AddLocalAddr, OP_SIZE.localAddr);
    writeAddrText(bytes, p + 8, a);
    p += OP_SIZE.localAddr;
  }
  for (const r of delta.upsertRoutes) {
    header(Op.UpsertRoute, OP_SIZE.upsertRoute);
    writeRoute(bytes, dv, p, r);
    p += OP_SIZE.upsertRoute;
  }
  for (const e of delta.upsertServices) p += writeService(bytes, dv, p, e);
  for (const a of delta.addVips) {
    header(Op.UpsertService, OP_SIZE.serviceBase);
    writeAddrText(bytes, p + 8, a);
    for (let at = p + 24; at < p + OP_SIZE.serviceBase; at += 4) dv.setUint32(at, 0, true); // port 0, proto 0, no backends
    p += OP_SIZE.serviceBase;
  }
  if (options.end !== false) {
    header(Op.End, OP_SIZE.end);
    p += OP_SIZE.end;
  }
  return p - offset;
}

/** A full load of `model`: Clear, every entry, End. */
export function encodeModel(model: Model, out: Uint8Array | DataView, offset: number, options: EncodeOptions = {}): number {
  return encodeOps(fullDelta(model), out, offset, options);
}

function writeAddrText(bytes: Uint8Array, at: number, text: string): void {
  const ip = parseIp(text);
  if (!ip) throw new TypeError(`"${text}" is not an IPv4 or IPv6 address`);
  bytes.set(ip.bytes, at);
}

function protoNumber(protocol: string): number {
  const n = PROTO_OF.get(protocol);
  if (n === undefined) throw new TypeError(`protocol "${protocol}" has no engine number`);
  return n;
}

/** The 16 bytes an op carries for a model's canonical address text (IPv4-mapped for IPv4). */
function addrBytes(text: string): Uint8Array {
  const ip = parseIp(text);
  if (!ip) throw new TypeError(`"${text}" is not an address; the model keeps canonical address text`);
  return ip.bytes;
}

function writeKey(bytes: Uint8Array, dv: DataView, p: number, k: ServiceKey): void {
  bytes.set(addrBytes(k.addr), p + 8);
  dv.setUint16(p + 24, k.port, false);
  dv.setUint8(p + 26, protoNumber(k.protocol));
}

function serviceOpSize(e: ServiceEntry): number {
  return OP_SIZE.serviceBase + e.backends.length * OP_SIZE.backend + e.sourceRanges.length * OP_SIZE.range;
}

function writeService(bytes: Uint8Array, dv: DataView, p: number, e: ServiceEntry): number {
  const size = serviceOpSize(e);
  dv.setUint32(p, Op.UpsertService, true);
  dv.setUint32(p + 4, size, true);
  writeKey(bytes, dv, p, e);
  dv.setUint8(p + 27, e.kind);
  dv.setUint32(p + 28, e.id, true);
  dv.setUint8(p + 32, e.select);
  dv.setUint8(p + 33, e.flags);
  dv.setUint16(p + OP_SERVICE_RANGES, e.sourceRanges.length, true);
  dv.setUint32(p + 36, e.affinitySec, true);
  dv.setUint32(p + 40, e.maglevSize, true);
  dv.setUint32(p + 44, e.backends.length, true);
  dv.setUint32(p + 48, e.eligible, true);
  let b = p + OP_SIZE.serviceBase;
  for (const be of e.backends) {
    bytes.set(addrBytes(be.addr), b);
    dv.setUint16(b + 16, be.port, false);
    dv.setUint16(b + 18, be.weight, false);
    b += OP_SIZE.backend;
  }
  for (const r of e.sourceRanges) {
    bytes.set(r.prefix16, b);
    dv.setUint32(b + 16, r.prefixLen128, true); // len u8, then the zero u8 and u16
    b += OP_SIZE.range;
  }
  return size;
}

function writeRoute(bytes: Uint8Array, dv: DataView, p: number, r: Route): void {
  bytes.set(r.prefix16, p + 8);
  dv.setUint8(p + 24, r.prefixLen128);
  dv.setUint8(p + 25, r.kind);
  dv.setUint16(p + 26, r.nodeId, true);
  dv.setUint32(p + 28, r.underlay, true);
  const mac = r.vtepMac.split(":");
  for (let i = 0; i < 6; i++) dv.setUint8(p + 32 + i, parseInt(mac[i] ?? "0", 16));
  dv.setUint16(p + 38, 0, true);
}

// ─── decoding (tests, trace) ───

export type DecodedOp =
  | { op: Op.End | Op.Clear; size: number }
  | {
    op: Op.UpsertService; size: number; addr: string; port: number; proto: number; kind: number; id: number;
    select: number; flags: number; affinitySec: number; maglevSize: number; count: number; eligible: number;
    backends: Array<{ addr: string; port: number; weight: number }>;
    /** Source ranges as `addr/len of 128`. */
    ranges: string[];
  }
  | { op: Op.DeleteService; size: number; addr: string; port: number; proto: number }
  | { op: Op.UpsertRoute; size: number; prefix: string; prefixLen128: number; kind: number; nodeId: number; underlay: string; vtepMac: string }
  | { op: Op.DeleteRoute; size: number; prefix: string; prefixLen128: number }
  | { op: Op.AddLocalAddr | Op.DeleteLocalAddr; size: number; addr: string };

/**
 * Reads ops until End or the end of `bytes`. Throws on anything the layout does not allow: an unknown
 * code, a size that is wrong for the code or not a multiple of 4, non-zero reserved bytes.
 */
export function decodeOps(bytes: Uint8Array): DecodedOp[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ops: DecodedOp[] = [];
  const addr = (at: number) => formatIp(readAddr16(bytes, at) as Ip);
  let p = 0;
  while (p + HEADER <= bytes.length) {
    const code = dv.getUint8(p), size = dv.getUint32(p + 4, true);
    const fail = (why: string): never => { throw new Error(`op ${code} at byte ${p}: ${why}`); };
    if (dv.getUint8(p + 1) !== 0 || dv.getUint16(p + 2, true) !== 0) fail("reserved header bytes are not zero");
    if (size < HEADER || size % 4 !== 0 || p + size > bytes.length) fail(`size ${size} is not a multiple of 4 inside the buffer`);
    const want = (n: number) => { if (size !== n) fail(`size is ${size}; this op is ${n} bytes`); };
    switch (code) {
      case Op.End:
        want(OP_SIZE.end);
        ops.push({ op: Op.End, size });
        return ops;
      case Op.Clear:
        want(OP_SIZE.clear);
        ops.push({ op: Op.Clear, size });
        break;
      case Op.UpsertService: {
        const count = dv.getUint32(p + 44, true), nRanges = dv.getUint16(p + OP_SERVICE_RANGES, true);
        want(OP_SIZE.serviceBase + count * OP_SIZE.backend + nRanges * OP_SIZE.range);
        const backends = [], ranges = [];
        let b = p + OP_SIZE.serviceBase;
        for (let i = 0; i < count; i++, b += OP_SIZE.backend) {
          backends.push({ addr: addr(b), port: dv.getUint16(b + 16, false), weight: dv.getUint16(b + 18, false) });
        }
        for (let i = 0; i < nRanges; i++, b += OP_SIZE.range) {
          if (dv.getUint8(b + 17) !== 0 || dv.getUint16(b + 18, true) !== 0) fail(`reserved bytes of range ${i} are not zero`);
          ranges.push(`${addr(b)}/${dv.getUint8(b + 16)}`);
        }
        ops.push({
          op: Op.UpsertService, size, addr: addr(p + 8), port: dv.getUint16(p + 24, false), proto: dv.getUint8(p + 26),
          kind: dv.getUint8(p + 27), id: dv.getUint32(p + 28, true), select: dv.getUint8(p + 32), flags: dv.getUint8(p + 33),
          affinitySec: dv.getUint32(p + 36, true), maglevSize: dv.getUint32(p + 40, true), count,
          eligible: dv.getUint32(p + 48, true), backends, ranges,
        });
        break;
      }
      case Op.DeleteService:
        want(OP_SIZE.deleteService);
        if (dv.getUint8(p + 27) !== 0) fail("reserved byte 27 is not zero");
        ops.push({ op: Op.DeleteService, size, addr: addr(p + 8), port: dv.getUint16(p + 24, false), proto: dv.getUint8(p + 26) });
        break;
      case Op.UpsertRoute: {
        want(OP_SIZE.upsertRoute);
        if (dv.getUint16(p + 38, true) !== 0) fail("reserved bytes 38-39 are not zero");
        const mac = formatMac(bytes.subarray(p + 32, p + 38));
        ops.push({
          op: Op.UpsertRoute, size, prefix: addr(p + 8), prefixLen128: dv.getUint8(p + 24), kind: dv.getUint8(p + 25),
          nodeId: dv.getUint16(p + 26, true), underlay: u32ToIpv4(dv.getUint32(p + 28, true)), vtepMac: mac,
        });
        break;
      }
      case Op.DeleteRoute:
        want(OP_SIZE.deleteRoute);
        if (dv.getUint8(p + 25) !== 0 || dv.getUint16(p + 26, true) !== 0) fail("reserved bytes 25-27 are not zero");
        ops.push({ op: Op.DeleteRoute, size, prefix: addr(p + 8), prefixLen128: dv.getUint8(p + 24) });
        break;
      case Op.AddLocalAddr:
      case Op.DeleteLocalAddr:
        want(OP_SIZE.localAddr);
        ops.push({ op: code, size, addr: addr(p + 8) });
        break;
      default:
        fail("unknown op code");
    }
    p += size;
  }
  return ops;
}
