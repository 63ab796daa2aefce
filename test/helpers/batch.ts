// Test-side helpers for src/io: lay out slots in a wasm memory, read them back, and build or
// parse the few packets the tests need. Used by test/integration/io-*.test.ts.
import {
  HEADROOM, SLOT_BUF_END, SLOT_BUF_START, SLOT_DATA, SLOT_FLAGS, SLOT_LEN, SLOT_PEER, SLOT_SIZE,
  SLOT_VERDICT, VNET_HDR_LEN,
} from "../../src/engine/abi.js";
import { rfc1071 as checksum } from "./packets.js";

export interface Batch {
  memory: WebAssembly.Memory;
  slotsAddr: number;
  count: number;
}

/**
 * count slots at slotsAddr, each with a buffer of room bytes after HEADROOM + a vnet header's
 * worth: bufStart | 192 headroom | 10 vnet | data ... | bufEnd.
 */
export function layout(memory: WebAssembly.Memory, count: number, room: number, slotsAddr = 1024): Batch {
  const dv = new DataView(memory.buffer);
  let at = slotsAddr + count * SLOT_SIZE;
  at = (at + 63) & ~63;
  for (let i = 0; i < count; i++) {
    const s = slotsAddr + i * SLOT_SIZE;
    for (let b = 0; b < SLOT_SIZE; b += 4) dv.setUint32(s + b, 0, true);
    const bufStart = at, data = at + HEADROOM + VNET_HDR_LEN, bufEnd = data + room;
    if (bufEnd > memory.buffer.byteLength) throw new Error(`layout: ${count} slots of ${room} B do not fit`);
    dv.setUint32(s + SLOT_DATA, data, true);
    dv.setUint32(s + SLOT_BUF_START, bufStart, true);
    dv.setUint32(s + SLOT_BUF_END, bufEnd, true);
    at = (bufEnd + 63) & ~63;
  }
  return { memory, slotsAddr, count };
}

export interface SlotView { data: number; len: number; flags: number; verdict: number; peer: number }

export function slot(b: Batch, i: number): SlotView {
  const dv = new DataView(b.memory.buffer), s = b.slotsAddr + i * SLOT_SIZE;
  return {
    data: dv.getUint32(s + SLOT_DATA, true),
    len: dv.getUint32(s + SLOT_LEN, true),
    flags: dv.getUint16(s + SLOT_FLAGS, true),
    verdict: dv.getUint8(s + SLOT_VERDICT),
    peer: dv.getUint32(s + SLOT_PEER, true),
  };
}

/** The packet bytes of slot i (a view, not a copy). */
export function packet(b: Batch, i: number): Uint8Array {
  const s = slot(b, i);
  return new Uint8Array(b.memory.buffer, s.data, s.len);
}

/** The 10-byte virtio_net_hdr before slot i's packet. */
export function vnetHeader(b: Batch, i: number): { flags: number; gsoType: number; hdrLen: number;
  gsoSize: number; csumStart: number; csumOffset: number } {
  const s = slot(b, i), dv = new DataView(b.memory.buffer, s.data - VNET_HDR_LEN, VNET_HDR_LEN);
  // struct virtio_net_hdr: little-endian on x86 (legacy virtio uses the host's order).
  return {
    flags: dv.getUint8(0), gsoType: dv.getUint8(1), hdrLen: dv.getUint16(2, true),
    gsoSize: dv.getUint16(4, true), csumStart: dv.getUint16(6, true), csumOffset: dv.getUint16(8, true),
  };
}

/** Puts bytes at slot i's data, sets len, verdict (and peer). */
export function put(b: Batch, i: number, bytes: Uint8Array, verdict: number, peer = 0): void {
  const s = b.slotsAddr + i * SLOT_SIZE, dv = new DataView(b.memory.buffer);
  const data = dv.getUint32(s + SLOT_DATA, true);
  new Uint8Array(b.memory.buffer, data, bytes.length).set(bytes);
  dv.setUint32(s + SLOT_LEN, bytes.length, true);
  dv.setUint8(s + SLOT_VERDICT, verdict);
  dv.setUint32(s + SLOT_PEER, peer, true);
}

export function ipv4ToU32(a: string): number {
  return a.split(".").reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
}

export function u32ToIpv4(v: number): string {
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join(".");
}

export interface Ipv4Fields { version: number; ihl: number; totalLen: number; ttl: number; proto: number;
  src: string; dst: string; headerOk: boolean }

/** RFC 791 header fields of the IPv4 packet p. */
export function parseIpv4(p: Uint8Array): Ipv4Fields {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength), ihl = (p[0]! & 15) * 4;
  return {
    version: p[0]! >> 4, ihl, totalLen: dv.getUint16(2), ttl: p[8]!, proto: p[9]!,
    src: u32ToIpv4(dv.getUint32(12)), dst: u32ToIpv4(dv.getUint32(16)),
    headerOk: checksum(p.subarray(0, ihl)) === 0,
  };
}

/** A 20-byte IPv4 header (no options) in front of payload, with its checksum. */
export function ipv4(src: string, dst: string, proto: number, payload: Uint8Array, ttl = 64): Uint8Array {
  const p = new Uint8Array(20 + payload.length), dv = new DataView(p.buffer);
  p[0] = 0x45;
  dv.setUint16(2, p.length);
  dv.setUint16(6, 0x4000); // DF
  p[8] = ttl;
  p[9] = proto;
  dv.setUint32(12, ipv4ToU32(src));
  dv.setUint32(16, ipv4ToU32(dst));
  dv.setUint16(10, checksum(p.subarray(0, 20)));
  p.set(payload, 20);
  return p;
}

/** RFC 792: the echo reply to the echo request req (an IPv4 packet), addresses swapped. */
export function echoReply(req: Uint8Array): Uint8Array {
  const ip = parseIpv4(req), icmp = req.slice(ip.ihl, ip.totalLen);
  icmp[0] = 0; // type 0: echo reply; code, identifier, sequence and data stay
  icmp[2] = icmp[3] = 0;
  const sum = checksum(icmp);
  icmp[2] = sum >> 8;
  icmp[3] = sum & 255;
  return ipv4(ip.dst, ip.src, 1, icmp);
}

/** RFC 768 UDP in IPv4 with checksum 0 ("none"). */
export function udp4(src: string, dst: string, sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const u = new Uint8Array(8 + payload.length), dv = new DataView(u.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint16(4, u.length);
  u.set(payload, 8);
  return ipv4(src, dst, 17, u);
}

/** Resolves when cond() holds, checking every few ms; rejects after timeoutMs with what. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
