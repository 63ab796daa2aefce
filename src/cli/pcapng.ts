// pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html, as dumpcap and tshark
// write it): read every section's interfaces and packets (enhanced, simple and the obsolete packet
// block), each with its interface, link type, timestamp resolution and direction; write one section
// with a comment per packet, which tshark shows as frame.comment.
//
//   block      u32 type | u32 total length | body (padded to 4) | u32 total length
//   SHB 0x0A0D0D0A   u32 byte-order magic 0x1A2B3C4D | u16 major 1 | u16 minor 0 | i64 section length | options
//   IDB 1            u16 link type | u16 reserved | u32 snaplen | options (if_name 2, if_tsresol 9, if_tsoffset 14)
//   EPB 6            u32 interface | u32 ts high | u32 ts low | u32 captured | u32 original | data | options
//                    (opt_comment 1, epb_flags 2: bits 0-1 direction, 1 inbound, 2 outbound)
//   SPB 3            u32 original | data (interface 0, no timestamp)
//   PB 2 (obsolete)  u16 interface | u16 drops | u32 ts high | u32 ts low | u32 captured | u32 original | data | options
//   option           u16 code | u16 length | value (padded to 4); code 0 ends the list
import { CliError, EXIT } from "./client.js";
import type { CaptureInterface, CaptureRecord } from "./pcap.js";

export const PCAPNG_MAGIC = 0x0a0d0d0a;
const BOM = 0x1a2b3c4d;
const IDB = 1, PB = 2, SPB = 3, EPB = 6;
const OPT_END = 0, OPT_COMMENT = 1, IF_NAME = 2, IF_TSRESOL = 9, IF_TSOFFSET = 14, EPB_FLAGS = 2;

const pad4 = (n: number) => (n + 3) & ~3;

interface Options { comment?: string; name?: string; tsresol?: number; tsoffset?: bigint; flags?: number }

function readOptions(v: DataView, from: number, to: number, le: boolean, inIdb: boolean): Options {
  const o: Options = {};
  for (let p = from; p + 4 <= to;) {
    const code = v.getUint16(p, le), len = v.getUint16(p + 2, le);
    if (code === OPT_END || p + 4 + len > to) break;
    const val = new Uint8Array(v.buffer, v.byteOffset + p + 4, len);
    if (code === OPT_COMMENT) o.comment = new TextDecoder().decode(val);
    else if (inIdb && code === IF_NAME) o.name = new TextDecoder().decode(val).replace(/\0+$/, "");
    else if (inIdb && code === IF_TSRESOL && len >= 1) o.tsresol = val[0]!;
    else if (inIdb && code === IF_TSOFFSET && len >= 8) o.tsoffset = v.getBigInt64(p + 4, le);
    else if (!inIdb && code === EPB_FLAGS && len >= 4) o.flags = v.getUint32(p + 4, le);
    p += 4 + pad4(len);
  }
  return o;
}

/** Units per second of an if_tsresol byte: 10^n, or 2^n when the top bit is set. */
function unitsPerSecond(tsresol: number | undefined): bigint {
  if (tsresol === undefined) return 1_000_000n;
  const n = BigInt(tsresol & 0x7f);
  return tsresol & 0x80 ? 1n << n : 10n ** n;
}

export function readPcapng(bytes: Uint8Array, name: string): { interfaces: CaptureInterface[]; records: CaptureRecord[] } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const interfaces: CaptureInterface[] = [];
  const records: CaptureRecord[] = [];
  let le = true;
  // interface ids count from 0 in each section; `base` maps them onto the whole file's list
  let base = 0;
  type Iface = CaptureInterface & { units: bigint; offset: bigint };
  const ifs: Iface[] = [];
  for (let o = 0; o + 12 <= bytes.length;) {
    let type = v.getUint32(o, le);
    if (type === PCAPNG_MAGIC) {
      const bom = v.getUint32(o + 8, true);
      if (bom === BOM) le = true;
      else if (bom === 0x4d3c2b1a) le = false;
      else throw new CliError(`${name}: a pcapng section header at offset ${o} has no byte-order magic (0x${bom.toString(16)})`, EXIT.FAILED);
      type = PCAPNG_MAGIC;
      base = ifs.length;
    }
    const len = v.getUint32(o + 4, le);
    if (len < 12 || len % 4 !== 0 || o + len > bytes.length) {
      throw new CliError(`${name}: the pcapng block at offset ${o} is cut short or malformed (length ${len}); the capture was not finished`, EXIT.FAILED);
    }
    const end = o + len - 4;
    const iface = (local: number): Iface => {
      const i = ifs[base + local];
      if (!i) throw new CliError(`${name}: a packet at offset ${o} names interface ${local}, which its section never described`, EXIT.FAILED);
      return i;
    };
    const record = (i: Iface, ts: bigint, data: Uint8Array, orig: number, flags: number | undefined, comment: string | undefined) => {
      if (data.length < orig) {
        throw new CliError(`${name}: packet ${records.length + 1} was truncated by the capture's snaplen (${data.length} of ${orig} bytes); capture with -s 0`, EXIT.FAILED);
      }
      const t = ts + i.offset * i.units, sec = t / i.units, frac = t % i.units;
      const dir = flags === undefined ? undefined : (flags & 3) === 1 ? "in" as const : (flags & 3) === 2 ? "out" as const : undefined;
      records.push({
        sec: Number(sec), usec: Number((frac * 1_000_000n) / i.units), data, iface: i.id, linktype: i.linktype,
        ...(dir ? { direction: dir } : {}), ...(comment !== undefined ? { comment } : {}),
      });
    };
    if (type === IDB) {
      const linktype = v.getUint16(o + 8, le);
      const opts = readOptions(v, o + 16, end, le, true);
      const id = ifs.length;
      ifs.push({ id, linktype, ...(opts.name ? { name: opts.name } : {}), units: unitsPerSecond(opts.tsresol), offset: opts.tsoffset ?? 0n });
      interfaces.push({ id, linktype, ...(opts.name ? { name: opts.name } : {}) });
    } else if (type === EPB || type === PB) {
      const local = type === EPB ? v.getUint32(o + 8, le) : v.getUint16(o + 8, le);
      const ts = (BigInt(v.getUint32(o + 12, le)) << 32n) | BigInt(v.getUint32(o + 16, le));
      const cap = v.getUint32(o + 20, le), orig = v.getUint32(o + 24, le);
      if (o + 28 + cap > end) throw new CliError(`${name}: packet ${records.length + 1} at offset ${o} says ${cap} bytes, more than its block holds`, EXIT.FAILED);
      const opts = readOptions(v, o + 28 + pad4(cap), end, le, false);
      record(iface(local), ts, bytes.subarray(o + 28, o + 28 + cap), orig, opts.flags, opts.comment);
    } else if (type === SPB) {
      const orig = v.getUint32(o + 8, le), cap = Math.min(orig, end - (o + 12));
      record(iface(0), 0n, bytes.subarray(o + 12, o + 12 + cap), orig, undefined, undefined);
    }
    o += len;
  }
  return { interfaces, records };
}

// ── writing ─────────────────────────────────────────────────────────────────────────────────────

export interface PcapngInterface { linktype: number; name: string }
export interface PcapngPacket { iface: number; sec: number; usec: number; data: Uint8Array; comment?: string; direction?: "in" | "out" }

const enc = new TextEncoder();

function optionBytes(code: number, value: Uint8Array): number[] {
  const out = [code & 0xff, code >> 8, value.length & 0xff, value.length >> 8, ...value];
  while (out.length % 4) out.push(0);
  return out;
}

function u32le(n: number): number[] { return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff]; }

function block(type: number, body: Uint8Array | number[]): Uint8Array {
  const len = 12 + body.length;
  const b = new Uint8Array(len);
  b.set(u32le(type), 0); b.set(u32le(len), 4); b.set(body, 8); b.set(u32le(len), len - 4);
  return b;
}

/** One little-endian section: the interfaces (microsecond timestamps), then the packets in order. */
export function pcapngBytes(interfaces: readonly PcapngInterface[], packets: readonly PcapngPacket[]): Uint8Array {
  const parts: Uint8Array[] = [];
  // SHB: byte-order magic, version 1.0, section length unknown (-1)
  parts.push(block(PCAPNG_MAGIC, [...u32le(BOM), 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ...u32le(0)]));
  for (const i of interfaces) {
    parts.push(block(IDB, [i.linktype & 0xff, i.linktype >> 8, 0, 0, ...u32le(262144), ...optionBytes(IF_NAME, enc.encode(i.name)), ...u32le(0)]));
  }
  for (const p of packets) {
    const us = BigInt(p.sec) * 1_000_000n + BigInt(p.usec);
    const head = [...u32le(p.iface), ...u32le(Number(us >> 32n)), ...u32le(Number(us & 0xffffffffn)), ...u32le(p.data.length), ...u32le(p.data.length)];
    const opts = [
      ...(p.comment !== undefined ? optionBytes(OPT_COMMENT, enc.encode(p.comment)) : []),
      ...(p.direction ? optionBytes(EPB_FLAGS, Uint8Array.from(u32le(p.direction === "in" ? 1 : 2))) : []),
    ];
    const body = new Uint8Array(head.length + pad4(p.data.length) + opts.length + (opts.length ? 4 : 0));
    body.set(head, 0);
    body.set(p.data, head.length);
    body.set(opts, head.length + pad4(p.data.length));
    parts.push(block(EPB, body));
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
