// Addresses as bigints so that IPv4 and IPv6 share one arithmetic.
import { isIPv4, isIPv6 } from "node:net";

export type Family = 4 | 6;

export interface Cidr {
  family: Family;
  /** The network address (host bits cleared). */
  network: bigint;
  prefix: number;
  /** 32 or 128. */
  bits: number;
  /** The CIDR as written in canonical form, e.g. "10.244.1.0/24". */
  text: string;
}

export function parseAddr(s: string): { family: Family; value: bigint } | undefined {
  if (isIPv4(s)) {
    const v = s.split(".").reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
    return { family: 4, value: v };
  }
  if (isIPv6(s)) {
    if (s.includes(".")) return undefined; // an embedded IPv4 tail is not a pod address
    const [head = "", tail] = s.split("::");
    const parts = (x: string) => (x === "" ? [] : x.split(":"));
    const h = parts(head), t = tail === undefined ? [] : parts(tail);
    const groups = [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
    return { family: 6, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
  }
  return undefined;
}

export function formatAddr(family: Family, v: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join(".");
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952 §4.2: compress the longest run (length > 1) of zero groups, the first one on a tie.
  let bestAt = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) { bestAt = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt < 0) return hex.join(":");
  return `${hex.slice(0, bestAt).join(":")}::${hex.slice(bestAt + bestLen).join(":")}`;
}

/** Parses "a.b.c.d/n" or "x::/n"; undefined when it is not a CIDR. Host bits must be zero. */
export function parseCidr(s: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const a = parseAddr(m[1]!);
  if (!a) return undefined;
  const bits = a.family === 4 ? 32 : 128;
  const prefix = Number(m[2]);
  if (prefix > bits) return undefined;
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((a.value & hostMask) !== 0n) return undefined;
  return { family: a.family, network: a.value, prefix, bits, text: `${formatAddr(a.family, a.value)}/${prefix}` };
}

/** Number of addresses in the CIDR (including network and broadcast). */
export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(c.bits - c.prefix);
}

export function cidrContains(c: Cidr, family: Family, v: bigint): boolean {
  return family === c.family && v >= c.network && v < c.network + cidrSize(c);
}
