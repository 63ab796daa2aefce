// TCP (RFC 793 §3.1), UDP (RFC 768), ICMP (RFC 792) and ICMPv6 (RFC 4443) headers.
import { ld8, ld16, ld32, st8, st16, st32 } from "../mem";

// TCP and UDP share the port positions; only the checksum offset differs (16 vs 6).
export const SPORT: u32 = 0, DPORT: u32 = 2;
export const TCP_MIN_LEN: u32 = 20, TCP_CHECK: u32 = 16, TCP_FLAGS: u32 = 13, TCP_SEQ: u32 = 4, TCP_ACK: u32 = 8;
export const UDP_LEN: u32 = 8, UDP_CHECK: u32 = 6, UDP_LENGTH: u32 = 4;
export const ICMP_MIN_LEN: u32 = 8, ICMP_CHECK: u32 = 2, ICMP_ID: u32 = 4, ICMP_SEQ: u32 = 6, ICMP_REST: u32 = 4;

export const PROTO_ICMP: u32 = 1, PROTO_TCP: u32 = 6, PROTO_UDP: u32 = 17, PROTO_ICMPV6: u32 = 58;

export const TCP_FIN: u32 = 0x01, TCP_SYN: u32 = 0x02, TCP_RST: u32 = 0x04, TCP_PSH: u32 = 0x08, TCP_ACKF: u32 = 0x10;

// ICMPv4 types (RFC 792) and ICMPv6 types (RFC 4443).
export const ICMP_ECHO_REPLY: u32 = 0, ICMP_DEST_UNREACH: u32 = 3, ICMP_ECHO: u32 = 8, ICMP_TIME_EXCEEDED: u32 = 11,
  ICMP_PARAM_PROBLEM: u32 = 12;
export const ICMP_CODE_PORT_UNREACH: u32 = 3, ICMP_CODE_FRAG_NEEDED: u32 = 4;
export const ICMP6_DEST_UNREACH: u32 = 1, ICMP6_PACKET_TOO_BIG: u32 = 2, ICMP6_TIME_EXCEEDED: u32 = 3,
  ICMP6_PARAM_PROBLEM: u32 = 4, ICMP6_ECHO: u32 = 128, ICMP6_ECHO_REPLY: u32 = 129,
  ICMP6_NEIGHBOR_SOLICIT: u32 = 135, ICMP6_NEIGHBOR_ADVERT: u32 = 136;
export const ICMP6_CODE_PORT_UNREACH: u32 = 4;

@final @unmanaged
export class L4Ports {
  @inline static at(p: usize): L4Ports { return changetype<L4Ports>(p); }
  @inline get sport(): u32 { return ld16(changetype<usize>(this) + SPORT); }
  @inline set sport(v: u32) { st16(changetype<usize>(this) + SPORT, v); }
  @inline get dport(): u32 { return ld16(changetype<usize>(this) + DPORT); }
  @inline set dport(v: u32) { st16(changetype<usize>(this) + DPORT, v); }
}

@final @unmanaged
export class Tcp {
  @inline static at(p: usize): Tcp { return changetype<Tcp>(p); }
  @inline get dataOffset(): u32 { return (ld8(changetype<usize>(this) + 12) >> 4) << 2; }
  @inline get flags(): u32 { return ld8(changetype<usize>(this) + TCP_FLAGS); }
  @inline get seq(): u32 { return ld32(changetype<usize>(this) + TCP_SEQ); }
  @inline get ack(): u32 { return ld32(changetype<usize>(this) + TCP_ACK); }
}

@final @unmanaged
export class Udp {
  @inline static at(p: usize): Udp { return changetype<Udp>(p); }
  /** RFC 768: bytes of header and data. */
  @inline get length(): u32 { return ld16(changetype<usize>(this) + UDP_LENGTH); }
  /** 0 over IPv4: no checksum. */
  @inline get check(): u32 { return ld16(changetype<usize>(this) + UDP_CHECK); }
}

/** ICMP (RFC 792) and ICMPv6 (RFC 4443) share type, code, checksum and the 4 bytes after them. */
@final @unmanaged
export class Icmp {
  @inline static at(p: usize): Icmp { return changetype<Icmp>(p); }
  @inline get type(): u32 { return ld8(changetype<usize>(this)); }
  @inline get code(): u32 { return ld8(changetype<usize>(this) + 1); }
  @inline get check(): u32 { return ld16(changetype<usize>(this) + ICMP_CHECK); }
  @inline get rest(): u32 { return ld32(changetype<usize>(this) + ICMP_REST); }
  /** Echo and echo reply: the identifier and the sequence number. */
  @inline get id(): u32 { return ld16(changetype<usize>(this) + ICMP_ID); }
  @inline get seq(): u32 { return ld16(changetype<usize>(this) + ICMP_SEQ); }
}

/** Writes a 20-byte TCP header without options; checksum left 0 for the caller. */
export function emitTcp(p: usize, sport: u32, dport: u32, seq: u32, ack: u32, flags: u32): void {
  st16(p + SPORT, sport);
  st16(p + DPORT, dport);
  st32(p + TCP_SEQ, seq);
  st32(p + TCP_ACK, ack);
  st8(p + 12, 5 << 4);
  st8(p + TCP_FLAGS, flags);
  st16(p + 14, 0);          // window 0: a RST carries none
  st16(p + TCP_CHECK, 0);
  st16(p + 18, 0);
}

/** Writes an ICMP/ICMPv6 header (type, code, 4 bytes of rest); checksum left 0. */
export function emitIcmp(p: usize, type: u32, code: u32, rest: u32): void {
  st8(p, type);
  st8(p + 1, code);
  st16(p + ICMP_CHECK, 0);
  st32(p + ICMP_REST, rest);
}

/** Writes an 8-byte UDP header; `length` covers header and data (RFC 768). */
export function emitUdp(p: usize, sport: u32, dport: u32, length: u32, check: u32): void {
  st16(p + SPORT, sport);
  st16(p + DPORT, dport);
  st16(p + UDP_LENGTH, length);
  st16(p + UDP_CHECK, check);
}
