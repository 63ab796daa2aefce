// Pool arithmetic on addresses as bigints, so that IPv4 and IPv6 share one; parsing and text come
// from model/addr.ts.
import { bigintToIp, formatIp, ipToBigint, parseIp, type Family } from "../model/addr.js";

export type { Family };

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
  const ip = parseIp(s);
  // an embedded IPv4 tail (::ffff:10.0.0.1) is not a pod address
  if (!ip || (ip.family === 6 && s.includes("."))) return undefined;
  return { family: ip.family, value: ipToBigint(ip) };
}

export function formatAddr(family: Family, v: bigint): string {
  return formatIp(bigintToIp(family, v));
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
