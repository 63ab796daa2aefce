// The host's Internet checksum (RFC 1071) for the packets it builds itself (trace, the offline
// demo, doctor's probe). The core patches its own (assembly/wire/checksum.ts); the tests keep an
// independent `rfc1071` on purpose.

/** The one's-complement sum of [from, to) as 16-bit big-endian words (an odd last byte padded), added to acc. */
export function sum16(b: Uint8Array, from: number, to: number, acc = 0): number {
  for (let i = from; i < to; i += 2) acc += (b[i]! << 8) | (i + 1 < to ? b[i + 1]! : 0);
  return acc;
}

/** The checksum field's value for a sum: folded to 16 bits and complemented. */
export function foldChecksum(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16);
  return ~acc & 0xffff;
}

/** The checksum field's value over [from, to) of b. */
export function inetChecksum(b: Uint8Array, from = 0, to = b.length, acc = 0): number {
  return foldChecksum(sum16(b, from, to, acc));
}
