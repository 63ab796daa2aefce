// The core's header hooks (assembly/test-hooks.ts) for the literal-byte tests of test/unit/wire/:
// one header decoded through its view and written again by its emit function, no tables, no
// pipeline. Each decode hook writes the view's accessors as u32s in the order of its *_FIELDS list.
import { Drop, Engine } from "../../../src/engine/index.js";

type Decode3 = (p: number, len: number, out: number) => number;
type Decode2 = (p: number, out: number) => void;
export interface HeaderHooks {
  ipv4DecodeForTest: Decode3;
  ipv4EmitForTest(p: number, totalLen: number, id: number, df: number, ttl: number, proto: number, src: number, dst: number): void;
  ipv6DecodeForTest: Decode3;
  ipv6EmitForTest(p: number, payloadLen: number, next: number, hopLimit: number, src: number, dst: number): void;
  tcpDecodeForTest: Decode2;
  tcpEmitForTest(ip: number, sport: number, dport: number, seq: number, ack: number, flags: number): void;
  udpDecodeForTest: Decode2;
  udpEmitForTest(p: number, sport: number, dport: number, length: number, check: number): void;
  icmpDecodeForTest: Decode2;
  icmpEmitForTest(p: number, len: number, type: number, code: number, rest: number): void;
  ethernetDecodeForTest: Decode3;
  ethernetEmitForTest(p: number, dstMac: number, srcMac: number, type: number): void;
  arpDecodeForTest: Decode3;
  arpReplyForTest(p: number, myMac: number): void;
  vxlanDecodeForTest: Decode3;
  vxlanEmitForTest(p: number, vni: number): void;
  ctNewForTest(p: number, seq: number, src: number, dst: number, sport: number, dport: number, proto: number,
    backend: number, backendPort: number, masq: number, timeoutSec: number, mark: number, tcpState: number, withDelete: number): number;
}

export const IPV4_FIELDS = ["version", "headerLen", "totalLen", "id", "dontFragment", "moreFragments", "fragOffset", "ttl", "proto", "check", "src", "dst"] as const;
export const IPV6_FIELDS = ["version", "payloadLen", "next", "hopLimit", "src", "dst", "l4", "proto", "isFragment", "fragOffset", "moreFragments", "fragId"] as const;
export const TCP_FIELDS = ["sport", "dport", "seq", "ack", "dataOffset", "flags"] as const;
export const UDP_FIELDS = ["sport", "dport", "length", "check"] as const;
export const ICMP_FIELDS = ["type", "code", "check", "rest", "id", "seq"] as const;
export const ETHERNET_FIELDS = ["dst", "src", "type"] as const;
export const ARP_FIELDS = ["oper", "senderIp", "targetIp", "senderMac", "targetMac"] as const;
export const VXLAN_FIELDS = ["flags", "vni"] as const;

/** Hex digits of bytes, for assertions that show where two headers differ. */
export const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/** Bytes from hex digits; spaces are ignored. */
export function hex(s: string): Uint8Array {
  const digits = s.replace(/\s+/g, "");
  return Uint8Array.from({ length: digits.length / 2 }, (_, i) => parseInt(digits.slice(2 * i, 2 * i + 2), 16));
}

/** A core with the smallest tables it accepts (the hooks use none) and three places in its packet
 *  buffers: `at` for the literal, `out` for decoded fields, `scratch` for what an emit writes. */
/** The hooks that check a header (pointer, length, out) and answer a Drop. */
type CheckHook = { [K in keyof HeaderHooks]: HeaderHooks[K] extends Decode3 ? K : never }[keyof HeaderHooks];

export class HeaderBench {
  readonly hooks: HeaderHooks;
  readonly at: number;
  readonly out: number;
  readonly scratch: number;
  private readonly e: Engine;

  constructor() {
    this.e = new Engine({ maxBatch: 1, conntrackCapacity: 16, maxServices: 1, maxBackends: 1, maxRoutes: 1, maglevCells: 0, seed: 1 });
    this.hooks = this.e.exports as unknown as HeaderHooks;
    this.at = this.e.bufferBase + 256;
    this.out = this.at + 4096;
    this.scratch = this.at + 8192;
  }

  /** Copies bytes to addr (zeroing the 4 KiB there first, so nothing of an earlier test remains). */
  put(addr: number, bytes: Uint8Array): void {
    const m = new Uint8Array(this.e.memory);
    m.fill(0, addr, addr + 4096);
    m.set(bytes, addr);
  }

  /** Runs a header's check on `len` bytes at `at` (copying `bytes` there first, when given); the
   *  Drop it answers, by name ("None": the header is valid). */
  check(hook: CheckHook, len: number, bytes?: Uint8Array): string {
    if (bytes) this.put(this.at, bytes);
    return Drop[this.hooks[hook](this.at, len, this.out)] ?? "unknown";
  }

  bytes(addr: number, len: number): Uint8Array { return new Uint8Array(this.e.memory, addr, len).slice(); }

  /** The decoded fields a hook wrote at `out`, by name. */
  fields<K extends string>(names: readonly K[]): Record<K, number> {
    const v = new DataView(this.e.memory);
    return Object.fromEntries(names.map((n, i) => [n, v.getUint32(this.out + 4 * i, true)])) as Record<K, number>;
  }
}
