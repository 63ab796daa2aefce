// The pod address pool of one node: its pod CIDR minus the addresses no pod may have.
import { cidrContains, cidrSize, formatAddr, parseCidr, type Cidr, type Family } from "./cidr.js";

export interface Pool {
  cidr: Cidr;
  family: Family;
  /** First and last address a pod may get (inclusive). */
  first: bigint;
  last: bigint;
  /** How many pod addresses the pool holds (0 for a /31 or /32). */
  size: bigint;
  /** The node's own address on wasp0: the first address after the network address. */
  gateway: string;
}

/**
 * Excluded: the network address, the first address (wasp0's, the node's gateway address) and, for
 * IPv4, the broadcast address. IPv6 has no broadcast, but the all-zero host address is the
 * subnet-router anycast address (RFC 4291 §2.6.1), so it is excluded the same way.
 */
export function poolFromCidr(text: string): Pool | undefined {
  const cidr = parseCidr(text);
  if (!cidr) return undefined;
  const n = cidrSize(cidr);
  const first = cidr.network + 2n;
  const last = cidr.family === 4 ? cidr.network + n - 2n : cidr.network + n - 1n;
  const size = last >= first ? last - first + 1n : 0n;
  return { cidr, family: cidr.family, first, last, size, gateway: formatAddr(cidr.family, cidr.network + 1n) };
}

export function poolContains(p: Pool, family: Family, v: bigint): boolean {
  return cidrContains(p.cidr, family, v) && v >= p.first && v <= p.last;
}
