// Addresses and prefixes as the engine sees them: 16 bytes in network order, IPv4 as IPv4-mapped
// IPv6 (::ffff:a.b.c.d, RFC 4291 §2.5.5.2), so one table and one compare serve both families.

import { isIP } from "node:net";

export type Family = 4 | 6;

/** One address. `bytes` is 16 bytes, network order; an IPv4 address is stored IPv4-mapped. */
export interface Ip {
  readonly family: Family;
  readonly bytes: Uint8Array;
}

/** A prefix. `bytes` is the network address (host bits cleared); `prefixLen` counts bits of the family (32 or 128). */
export interface Cidr {
  readonly family: Family;
  readonly bytes: Uint8Array;
  readonly prefixLen: number;
  /** The text had bits set after the prefix (10.244.1.5/24): parsed, but not a network address. */
  readonly hostBitsSet: boolean;
}

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] as const;

// A config names the same addresses again and again (validation, build, every reload): parsed ones are
// kept, and their bytes shared, so they must never be written to. Bounded: cleared when full. The
// bound keeps the often-named ones (node, gateways, CIDRs) and not every service's: 131,072 entries
// held 14 MiB of heap at 30,000 services, and parsing 90,000 addresses again takes ~35 ms.
const parsed = new Map<string, Ip>();
const PARSED_MAX = 1 << 12;

/**
 * Parses an IPv4 or IPv6 address (compressed forms and a trailing dotted quad included); undefined if
 * it is not one. Zones (%eth0) are refused. The result is shared: do not modify its bytes.
 */
export function parseIp(text: string): Ip | undefined {
  const hit = parsed.get(text);
  if (hit) return hit;
  const family = isIP(text);
  let ip: Ip;
  if (family === 4) ip = { family: 4, bytes: v4Bytes(text) };
  else if (family === 6 && !text.includes("%")) ip = { family: 6, bytes: v6Bytes(text) };
  else return undefined;
  if (parsed.size >= PARSED_MAX) parsed.clear();
  parsed.set(text, ip);
  return ip;
}

// An address's 16 bytes are a view into a shared 64 KiB block: a Uint8Array of its own costs an
// ArrayBuffer and a backing store besides the view (about 200 bytes more), and 30,000 services hold
// some 100,000 addresses. Views never overlap, so writing one's bytes touches no other.
let block = new ArrayBuffer(0), blockUsed = 0;
function newAddr16(): Uint8Array {
  if (blockUsed + 16 > block.byteLength) { block = new ArrayBuffer(65536); blockUsed = 0; }
  const b = new Uint8Array(block, blockUsed, 16);
  blockUsed += 16;
  return b;
}

// Called only on text that isIP() accepted as IPv4.
function v4Bytes(text: string): Uint8Array {
  const b = newAddr16();
  b[10] = 0xff;
  b[11] = 0xff;
  let at = 12, v = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */) { b[at++] = v; v = 0; } else v = v * 10 + (c - 48);
  }
  b[at] = v;
  return b;
}

// Called only on text that isIP() accepted as IPv6.
function v6Bytes(text: string): Uint8Array {
  const groups: number[] = [];
  const toGroups = (part: string): number[] => {
    if (part === "") return [];
    const out: number[] = [];
    for (const g of part.split(":")) {
      if (g.includes(".")) {
        const q = g.split(".").map(Number);
        out.push(((q[0] ?? 0) << 8) | (q[1] ?? 0), ((q[2] ?? 0) << 8) | (q[3] ?? 0));
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const dbl = text.indexOf("::");
  if (dbl < 0) {
    groups.push(...toGroups(text));
  } else {
    const head = toGroups(text.slice(0, dbl));
    const tail = toGroups(text.slice(dbl + 2));
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  }
  const b = newAddr16();
  for (let i = 0; i < 8; i++) {
    const g = groups[i] ?? 0;
    b[2 * i] = g >> 8;
    b[2 * i + 1] = g & 0xff;
  }
  return b;
}

/** True when an IPv6 address is IPv4-mapped (::ffff:a.b.c.d): it would collide with the IPv4 address in the engine. */
export function isV4Mapped(ip: Ip): boolean {
  return ip.family === 6 && V4_MAPPED_PREFIX.every((v, i) => ip.bytes[i] === v);
}

/** Text of an address: dotted quad for IPv4, RFC 5952 canonical form for IPv6. */
export function formatIp(ip: Ip): string {
  const b = ip.bytes;
  if (ip.family === 4) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  if (isV4Mapped(ip)) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(((b[2 * i] ?? 0) << 8) | (b[2 * i + 1] ?? 0));
  // RFC 5952 §4.2: compress the longest run of two or more zero groups, the first one on a tie.
  let bestAt = -1, bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestAt = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

/** The canonical text of an address, or undefined if `text` is not one. */
export function canonicalIp(text: string): string | undefined {
  const ip = parseIp(text);
  return ip && formatIp(ip);
}

/** Parses "a.b.c.d/n" or "x::/n"; undefined if it is not a prefix. Host bits are cleared and flagged. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(lenText)) return undefined;
  const prefixLen = Number(lenText);
  if (prefixLen > (ip.family === 4 ? 32 : 128)) return undefined;
  const bytes = ip.bytes.slice();
  maskBytes(bytes, prefixLen + (ip.family === 4 ? 96 : 0));
  const hostBitsSet = !bytes.every((v, i) => v === ip.bytes[i]);
  return { family: ip.family, bytes, prefixLen, hostBitsSet };
}

function maskBytes(b: Uint8Array, len128: number): void {
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, len128 - 8 * i));
    b[i] = (b[i] ?? 0) & ((0xff00 >> bits) & 0xff);
  }
}

export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, bytes: c.bytes })}/${c.prefixLen}`;
}

/** The canonical text of a prefix (host bits cleared), or undefined if `text` is not one. */
export function canonicalCidr(text: string): string | undefined {
  const c = parseCidr(text);
  return c && formatCidr(c);
}

/** The prefix length counted of 128 bits, as the engine stores it: an IPv4 /24 is 120. */
export function mappedPrefixLen(c: Cidr): number {
  return c.family === 4 ? c.prefixLen + 96 : c.prefixLen;
}

function samePrefix(a: Uint8Array, b: Uint8Array, len128: number): boolean {
  let i = 0;
  for (; 8 * (i + 1) <= len128; i++) if (a[i] !== b[i]) return false;
  const rest = len128 - 8 * i;
  if (rest === 0) return true;
  const mask = (0xff00 >> rest) & 0xff;
  return ((a[i] ?? 0) & mask) === ((b[i] ?? 0) & mask);
}

export function cidrContains(c: Cidr, ip: Ip): boolean {
  return c.family === ip.family && samePrefix(c.bytes, ip.bytes, mappedPrefixLen(c));
}

/** Two prefixes overlap when the shorter one contains the network address of the longer one. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && samePrefix(a.bytes, b.bytes, Math.min(mappedPrefixLen(a), mappedPrefixLen(b)));
}

/** Writes an address (text or parsed) as 16 bytes at `offset`. Throws on text that is not an address. */
export function writeAddr16(addr: Ip | string, out: Uint8Array, offset: number): void {
  const ip = typeof addr === "string" ? parseIp(addr) : addr;
  if (!ip) throw new TypeError(`"${String(addr)}" is not an IPv4 or IPv6 address`);
  out.set(ip.bytes, offset);
}

/** Reads 16 bytes at `offset` as an address; IPv4-mapped bytes read back as IPv4. */
export function readAddr16(bytes: Uint8Array, offset: number): Ip {
  const b = bytes.slice(offset, offset + 16);
  const mapped = V4_MAPPED_PREFIX.every((v, i) => b[i] === v);
  return { family: mapped ? 4 : 6, bytes: b };
}

/** An IPv4 address as a u32 in host order (a.b.c.d → a<<24|b<<16|c<<8|d). */
export function ipv4ToU32(ip: Ip): number {
  const b = ip.bytes;
  return (((b[12] ?? 0) << 24) | ((b[13] ?? 0) << 16) | ((b[14] ?? 0) << 8) | (b[15] ?? 0)) >>> 0;
}

/** A dotted quad as a u32 in host order; throws, naming it, on text that is not an IPv4 address. */
export function parseIpv4(text: string): number {
  const ip = parseIp(text);
  if (ip?.family !== 4) throw new TypeError(`"${text}" is not an IPv4 address`);
  return ipv4ToU32(ip);
}

export function u32ToIpv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** An address as an integer of its family's width (32 or 128 bits): IPAM counts offsets with it. */
export function ipToBigint(ip: Ip): bigint {
  let v = 0n;
  for (let i = ip.family === 4 ? 12 : 0; i < 16; i++) v = (v << 8n) | BigInt(ip.bytes[i] ?? 0);
  return v;
}

/** The address an integer of the family's width stands for (the inverse of ipToBigint). */
export function bigintToIp(family: Family, v: bigint): Ip {
  const b = new Uint8Array(16);
  if (family === 4) { b[10] = 0xff; b[11] = 0xff; }
  for (let i = 15, x = v; i >= (family === 4 ? 12 : 0); i--, x >>= 8n) b[i] = Number(x & 0xffn);
  return { family, bytes: b };
}

/** Parses "02:77:61:73:70:01" (six hex pairs, either case); undefined if it is not a MAC address. */
export function parseMac(text: string): Uint8Array | undefined {
  const parts = text.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) return undefined;
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

/** Like parseMac, but a text that is not a MAC address throws, naming it. */
export function macBytes(text: string): Uint8Array {
  const m = parseMac(text);
  if (!m) throw new TypeError(`"${text}" is not a MAC address (six hex pairs: 02:00:00:00:00:01)`);
  return m;
}

export function formatMac(b: Uint8Array): string {
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** The first address of an IPv4 CIDR (network + 1): a node's wasp0 address in its pod CIDR. */
export function firstAddress(cidr4: string): string {
  const c = parseCidr(cidr4);
  if (!c || c.family !== 4) throw new Error(`${cidr4} is not an IPv4 CIDR`);
  const [a = 0, b = 0, d = 0, e = 0] = c.bytes.subarray(12);
  const n = ((a << 24) | (b << 16) | (d << 8) | e) + 1;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** The first address of an IPv6 CIDR (network + 1), as the IPv4 one is. */
export function firstAddress6(cidr6: string): string {
  const c = parseCidr(cidr6);
  if (!c || c.family !== 6) throw new Error(`${cidr6} is not an IPv6 CIDR`);
  const b = Uint8Array.from(c.bytes);
  for (let i = 15; i >= 0; i--) { b[i] = (b[i]! + 1) & 255; if (b[i] !== 0) break; }
  return formatIp({ family: 6, bytes: b });
}
