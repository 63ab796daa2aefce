// SCTP common header (RFC 9260 §3.1) and its checksum, CRC32c (RFC 9260 §6.8 and Appendix A;
// the Castagnoli polynomial, reflected 0x82f63b78). The ports sit where TCP's and UDP's do, so the
// flow stage keys and rewrites them alike (wire/l4.ts L4Ports); the checksum covers the whole SCTP
// packet and no pseudo-header: a new address leaves it as it is, a new port changes it.
//
// A CRC is linear over GF(2): for two messages of one length, crc(A) ^ crc(B) is the CRC (initial
// value 0, no final complement) of A ^ B. A new port changes two bytes at offset `off` of an L-byte
// packet, so the checksum changes by that CRC of the two changed bits followed by L - off - 2 zero
// bytes, which is the CRC of the two bytes times x^(8(L - off - 2)) modulo the polynomial (zlib's
// crc32_combine arithmetic). sctpPortChange applies that in O(log L), and, like RFC 1624 for the
// Internet checksum, leaves a packet that came with a wrong checksum wrong.
import { ld16 } from "../mem";

export const PROTO_SCTP: u32 = 132;
export const SCTP_HLEN: u32 = 12;
const SPORT = 0, DPORT = 2, VTAG = 4, CHECK = 8;
export const SCTP_CHECK: u32 = CHECK;

@final @unmanaged
export class Sctp {
  @inline static at(p: usize): Sctp { return changetype<Sctp>(p); }
  @inline get sport(): u32 { return ld16(changetype<usize>(this) + SPORT); }
  @inline get dport(): u32 { return ld16(changetype<usize>(this) + DPORT); }
  @inline get vtag(): u32 { return bswap<u32>(load<u32>(changetype<usize>(this) + VTAG)); }
  /** The CRC32c as a number: it is stored least significant byte first (Linux's sctp_compute_cksum
   *  puts cpu_to_le32 of it; RFC 9260 Appendix A's bit order comes to the same bytes). */
  @inline get check(): u32 { return load<u32>(changetype<usize>(this) + CHECK); }
  @inline set check(v: u32) { store<u32>(changetype<usize>(this) + CHECK, v); }
}

const POLY: u32 = 0x82f63b78;

// Slicing-by-8 tables (8 x 256 u32) and x^(2^k) mod P for k < 32, filled once on first use: static
// regions, not allocations.
const TABLES: usize = memory.data(8 * 256 * 4, 16);
const X2N: usize = memory.data(32 * 4, 16);
let tablesReady = false;

function fillTables(): void {
  for (let i: u32 = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = (c & 1) != 0 ? (c >>> 1) ^ POLY : c >>> 1;
    store<u32>(TABLES + (<usize>i << 2), c);
  }
  for (let t: u32 = 1; t < 8; t++) {
    for (let i: u32 = 0; i < 256; i++) {
      const prev = load<u32>(TABLES + (<usize>((t - 1) * 256 + i) << 2));
      store<u32>(TABLES + (<usize>(t * 256 + i) << 2), (prev >>> 8) ^ load<u32>(TABLES + (<usize>(prev & 0xff) << 2)));
    }
  }
  let x: u32 = 1 << 30;   // x^1 in the reflected order, where 1 << 31 is x^0
  store<u32>(X2N, x);
  for (let k: u32 = 1; k < 32; k++) { x = multModP(x, x); store<u32>(X2N + (<usize>k << 2), x); }
  tablesReady = true;
}

/** a(x) * b(x) modulo P(x), both reflected (zlib's multmodp). */
function multModP(a: u32, b: u32): u32 {
  let m: u32 = 1 << 31, p: u32 = 0;
  while (m != 0) {
    if ((a & m) != 0) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>>= 1;
    b = (b & 1) != 0 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p;
}

/** x^(8 n) modulo P(x): the effect of n zero bytes on a CRC (zlib's x2nmodp(n, 3)). */
function zeroBytesOp(n: u32): u32 {
  let p: u32 = 1 << 31, k: u32 = 3;
  while (n != 0) {
    if ((n & 1) != 0) p = multModP(load<u32>(X2N + (<usize>(k & 31) << 2)), p);
    n >>>= 1;
    k++;
  }
  return p;
}

/** Patches the checksum of the SCTP packet of `len` bytes at p for a port field at `off` (0 source,
 *  2 destination) going from `from` to `to`; the caller writes the port. */
export function sctpPortChange(p: usize, len: u32, off: u32, from: u32, to: u32): void {
  if (!tablesReady) fillTables();
  const d = (from ^ to) & 0xffff;
  if (d == 0 || off + 2 > len) return;
  // the CRC (initial 0) of the two changed bytes, network order, then len - off - 2 zero bytes after them
  let c: u32 = 0;
  c = (c >>> 8) ^ tab(0, (c ^ (d >>> 8)) & 0xff);
  c = (c >>> 8) ^ tab(0, (c ^ d) & 0xff);
  const s = Sctp.at(p);
  s.check = s.check ^ multModP(zeroBytesOp(len - off - 2), c);
}

@inline function tab(t: u32, b: u32): u32 { return load<u32>(TABLES + (<usize>((t << 8) | b) << 2)); }

/** CRC32c of `len` bytes at p (initial all ones, final complement: RFC 9260 Appendix A's value). */
export function crc32c(p: usize, len: u32): u32 {
  if (!tablesReady) fillTables();
  let c: u32 = 0xffffffff;
  while (len >= 8) {
    const lo = load<u32>(p) ^ c, hi = load<u32>(p, 4);
    c = tab(7, lo & 0xff) ^ tab(6, (lo >>> 8) & 0xff) ^ tab(5, (lo >>> 16) & 0xff) ^ tab(4, lo >>> 24) ^
      tab(3, hi & 0xff) ^ tab(2, (hi >>> 8) & 0xff) ^ tab(1, (hi >>> 16) & 0xff) ^ tab(0, hi >>> 24);
    p += 8; len -= 8;
  }
  while (len > 0) {
    c = (c >>> 8) ^ tab(0, (c ^ <u32>load<u8>(p)) & 0xff);
    p++; len--;
  }
  return ~c;
}

/** The checksum the SCTP packet of `len` bytes at p should carry (its checksum field counted as zero). */
export function sctpChecksum(p: usize, len: u32): u32 {
  const was = Sctp.at(p).check;
  Sctp.at(p).check = 0;
  const c = crc32c(p, len);
  Sctp.at(p).check = was;
  return c;
}
