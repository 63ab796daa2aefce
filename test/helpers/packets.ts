// Packets built from field values, with checksums from a plain RFC 1071 reference (not the core's).
// Used by tests and benchmarks; expectations on the core's output are checked with tshark.

export function rfc1071(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length & 1) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function v4(s: string): number[] { return s.split(".").map(Number); }
function v6(s: string): number[] {
  const [h = "", t = ""] = s.split("::");
  const hw = h ? h.split(":") : [], tw = s.includes("::") ? (t ? t.split(":") : []) : [];
  const words = [...hw, ...Array(8 - hw.length - tw.length).fill("0"), ...tw].map((w) => parseInt(w, 16));
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}
export const isV6 = (s: string) => s.includes(":");

export interface L4Spec {
  proto: "tcp" | "udp" | "icmp";
  sport?: number; dport?: number;
  /** TCP flags byte (default SYN) */
  flags?: number;
  seq?: number; ack?: number;
  /** ICMP: type, code, rest-of-header (id<<16|seq for echo) */
  type?: number; code?: number; rest?: number;
  payload?: Uint8Array;
  /** UDP: send a zero checksum ("none", IPv4 only) */
  noUdpChecksum?: boolean;
}

export interface IpSpec { src: string; dst: string; ttl?: number; id?: number; df?: boolean; mf?: boolean; fragOffset?: number; options?: number[] }

export const TCP = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16 } as const;

function sumPseudo(src: number[], dst: number[], proto: number, len: number): number {
  const b = [...src, ...dst];
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  return s + proto + len;
}

/** Builds the L4 segment (with its checksum when pseudo is given). */
function l4bytes(l: L4Spec, six: boolean, src: number[], dst: number[]): { bytes: Uint8Array; proto: number } {
  const payload = l.payload ?? new Uint8Array(0);
  if (l.proto === "tcp") {
    const b = new Uint8Array(20 + payload.length), d = new DataView(b.buffer);
    d.setUint16(0, l.sport ?? 40000); d.setUint16(2, l.dport ?? 80);
    d.setUint32(4, l.seq ?? 1000); d.setUint32(8, l.ack ?? 0);
    b[12] = 5 << 4; b[13] = l.flags ?? TCP.SYN; d.setUint16(14, 65535);
    b.set(payload, 20);
    d.setUint16(16, rfc1071(b, sumPseudo(src, dst, 6, b.length)));
    return { bytes: b, proto: 6 };
  }
  if (l.proto === "udp") {
    const b = new Uint8Array(8 + payload.length), d = new DataView(b.buffer);
    d.setUint16(0, l.sport ?? 40000); d.setUint16(2, l.dport ?? 53); d.setUint16(4, b.length);
    b.set(payload, 8);
    if (!l.noUdpChecksum) { let c = rfc1071(b, sumPseudo(src, dst, 17, b.length)); if (c === 0) c = 0xffff; d.setUint16(6, c); }
    return { bytes: b, proto: 17 };
  }
  const b = new Uint8Array(8 + payload.length), d = new DataView(b.buffer);
  b[0] = l.type ?? (six ? 128 : 8); b[1] = l.code ?? 0; d.setUint32(4, l.rest ?? 0x12340001);
  b.set(payload, 8);
  d.setUint16(2, six ? rfc1071(b, sumPseudo(src, dst, 58, b.length)) : rfc1071(b));
  return { bytes: b, proto: six ? 58 : 1 };
}

/** A whole IP packet (IPv4 or IPv6 by the address form). */
export function packet(ip: IpSpec, l: L4Spec): Uint8Array {
  const six = isV6(ip.src);
  const src = six ? v6(ip.src) : v4(ip.src), dst = six ? v6(ip.dst) : v4(ip.dst);
  const seg = l4bytes(l, six, src, dst);
  return six ? ipv6(ip, seg.proto, seg.bytes) : ipv4(ip, seg.proto, seg.bytes);
}

export function ipv4(ip: IpSpec, proto: number, body: Uint8Array): Uint8Array {
  const opts = ip.options ?? [];
  const hl = 20 + opts.length;
  const b = new Uint8Array(hl + body.length), d = new DataView(b.buffer);
  b[0] = 0x40 | (hl >> 2); d.setUint16(2, b.length); d.setUint16(4, ip.id ?? 0x1234);
  d.setUint16(6, (ip.df ? 0x4000 : 0) | (ip.mf ? 0x2000 : 0) | (ip.fragOffset ?? 0));
  b[8] = ip.ttl ?? 64; b[9] = proto;
  b.set(v4(ip.src), 12); b.set(v4(ip.dst), 16); b.set(opts, 20);
  d.setUint16(10, rfc1071(b.subarray(0, hl)));
  b.set(body, hl);
  return b;
}

export function ipv6(ip: IpSpec, proto: number, body: Uint8Array): Uint8Array {
  const b = new Uint8Array(40 + body.length), d = new DataView(b.buffer);
  d.setUint32(0, 0x60000000); d.setUint16(4, body.length); b[6] = proto; b[7] = ip.ttl ?? 64;
  b.set(v6(ip.src), 8); b.set(v6(ip.dst), 24); b.set(body, 40);
  return b;
}

/** Parsed view of an IP packet for assertions (independent of the core). */
export interface Parsed {
  version: number; src: string; dst: string; ttl: number; proto: number; totalLen: number;
  sport?: number; dport?: number; tcpFlags?: number; icmpType?: number; icmpCode?: number; l4: Uint8Array; l4Off: number;
}

export function parse(b: Uint8Array): Parsed {
  const d = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const version = b[0]! >> 4;
  let src: string, dst: string, ttl: number, proto: number, l4Off: number, totalLen: number;
  if (version === 4) {
    src = [...b.subarray(12, 16)].join("."); dst = [...b.subarray(16, 20)].join(".");
    ttl = b[8]!; proto = b[9]!; l4Off = (b[0]! & 15) * 4; totalLen = d.getUint16(2);
  } else {
    const fmt = (o: number) => Array.from({ length: 8 }, (_, i) => d.getUint16(o + i * 2).toString(16)).join(":");
    src = fmt(8); dst = fmt(24); ttl = b[7]!; proto = b[6]!; l4Off = 40; totalLen = 40 + d.getUint16(4);
  }
  const l4 = b.subarray(l4Off, totalLen);
  const p: Parsed = { version, src, dst, ttl, proto, totalLen, l4, l4Off };
  if (proto === 6 || proto === 17) { p.sport = d.getUint16(l4Off); p.dport = d.getUint16(l4Off + 2); }
  if (proto === 6) p.tcpFlags = b[l4Off + 13];
  if (proto === 1 || proto === 58) { p.icmpType = b[l4Off]; p.icmpCode = b[l4Off + 1]; }
  return p;
}

/** Is every checksum of the packet right, by the RFC 1071 reference? */
export function checksumsOk(b: Uint8Array): boolean {
  const p = parse(b);
  if (p.version === 4 && rfc1071(b.subarray(0, p.l4Off)) !== 0) return false;
  const src = p.version === 4 ? v4(p.src) : v6(expand(p.src)), dst = p.version === 4 ? v4(p.dst) : v6(expand(p.dst));
  if (p.proto === 6 || p.proto === 17) {
    if (p.proto === 17 && p.version === 4 && new DataView(p.l4.buffer, p.l4.byteOffset).getUint16(6) === 0) return true;
    return rfc1071(p.l4, sumPseudo(src, dst, p.proto, p.l4.length)) === 0;
  }
  if (p.proto === 1) return rfc1071(p.l4) === 0;
  if (p.proto === 58) return rfc1071(p.l4, sumPseudo(src, dst, 58, p.l4.length)) === 0;
  return true;
}
function expand(s: string): string { return s; }
