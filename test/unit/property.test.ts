// Whatever arrives, the core must not trap, must give every slot one verdict, must keep its tables
// consistent and must write only inside each slot's [bufStart, bufEnd). fast-check, seeded.
import assert from "node:assert/strict";
import fc from "fast-check";
import { packet, ipv4, parse, rfc1071, checksumsOk, TCP, type IpSpec, type L4Spec } from "../helpers/packets.js";
import { newEngine, clusterRoutes, commit, NODE2 } from "./pipeline/setup.js";
import { SlotFlag, SLOT_SIZE, SLOT_DATA, SLOT_LEN, SLOT_BUF_START, SLOT_BUF_END, HEADROOM, VNET_HDR_LEN } from "../../src/engine/index.js";
import { parseIpv4 } from "../../src/model/addr.js";
import type { Engine } from "../../src/engine/index.js";

const SEED = 20261123;
const ADDRS4 = ["10.244.1.5", "10.244.1.10", "10.244.2.7", "10.96.0.10", "10.96.0.11", "10.96.0.99", "8.8.8.8", "169.254.1.2", "192.168.100.1", "127.0.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1"];
const ADDRS6 = ["fd44:0:0:1::5", "fd44:0:0:1::20", "fd44:0:0:2::7", "fd96::10", "fd96::99", "2001:db8::1", "ff02::1", "::1", "::"];

function engine(opts: Parameters<typeof newEngine>[0] = {}): Engine {
  const e = newEngine({ maxBatch: 64, conntrackCapacity: 64, maxServices: 64, maxBackends: 256, maglevCells: 1 << 14, ...opts });
  commit(e, clusterRoutes().localAddr("192.168.100.1")
    .service({ vip: "10.96.0.10", port: 80, proto: "tcp", id: 1, backends: [{ ip: "10.244.1.10", port: 8080 }, { ip: "10.244.2.7", port: 8080 }] })
    .service({ vip: "10.96.0.10", port: 53, proto: "udp", id: 2, select: 1, backends: [{ ip: "10.244.1.10", port: 5353 }, { ip: "10.244.1.5", port: 5353 }] })
    .service({ vip: "10.96.0.11", port: 80, proto: "tcp", id: 3, backends: [] })
    .service({ vip: "10.96.0.10", port: 0, proto: 0, id: 4, backends: [] })
    .service({ vip: "any", port: 30080, proto: "tcp", id: 5, flags: 4 | 1 | 2, affinitySec: 100, backends: [{ ip: "10.244.1.10", port: 80 }] })
    .service({ vip: "fd96::10", port: 80, proto: "tcp", id: 6, backends: [{ ip: "fd44:0:0:1::20", port: 8080 }] })
    .service({ vip: "fd96::10", port: 53, proto: "udp", id: 7, backends: [{ ip: "10.244.1.10", port: 53 }] }));
  return e;
}

const ipSpec: fc.Arbitrary<IpSpec> = fc.boolean().chain((six) => fc.record({
  src: fc.constantFrom(...(six ? ADDRS6 : ADDRS4)),
  dst: fc.constantFrom(...(six ? ADDRS6 : ADDRS4)),
  ttl: fc.oneof(fc.constantFrom(0, 1, 2, 64), fc.integer({ min: 0, max: 255 })),
  id: fc.integer({ min: 0, max: 65535 }),
  df: fc.boolean(),
  mf: fc.boolean(),
  fragOffset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0x1fff })),
  options: fc.oneof(fc.constant([] as number[]), fc.integer({ min: 1, max: 10 }).map((n) => new Array(n * 4).fill(1))),
}));
const l4Spec: fc.Arbitrary<L4Spec> = fc.record({
  proto: fc.constantFrom("tcp" as const, "udp" as const, "icmp" as const),
  sport: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 65535 })),
  dport: fc.constantFrom(0, 53, 80, 30080, 8080, 5353, 65535),
  flags: fc.constantFrom(TCP.SYN, TCP.ACK, TCP.SYN | TCP.ACK, TCP.RST, TCP.FIN | TCP.ACK, 0, 0xff),
  type: fc.constantFrom(0, 3, 8, 11, 12, 128, 129, 1, 2, 135),
  code: fc.integer({ min: 0, max: 5 }),
  payload: fc.uint8Array({ maxLength: 1600 }),
  noUdpChecksum: fc.boolean(),
});

/** A packet: valid, an ICMP error quoting one, or random bytes. */
const basePacket: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(ipSpec, l4Spec).map(([ip, l4]) => { try { return packet(ip, l4); } catch { return new Uint8Array(0); } }) },
  { weight: 2, arbitrary: fc.tuple(ipSpec, l4Spec, fc.constantFrom(3, 11, 12), fc.integer({ min: 0, max: 80 })).map(([ip, l4, type, cut]) => {
    try {
      const inner = packet({ ...ip, src: ip.dst, dst: ip.src }, l4);
      return packet({ src: ip.src, dst: ip.dst }, { proto: "icmp", type, code: 4, rest: 1400, payload: inner.subarray(0, Math.max(0, inner.length - cut)) });
    } catch { return new Uint8Array(0); }
  }) },
  { weight: 1, arbitrary: fc.tuple(ipSpec, fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 255 })).map(([ip, body, proto]) => {
    try { return ipv4({ ...ip, src: ADDRS4[0]!, dst: ADDRS4[3]! }, proto, body); } catch { return new Uint8Array(0); }
  }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) },
);

/** Damage: truncation, bit flips, a random header byte, a random length field. */
const mutated: fc.Arbitrary<Uint8Array> = fc.tuple(basePacket, fc.array(fc.tuple(fc.nat(), fc.nat(7)), { maxLength: 6 }),
  fc.option(fc.nat()), fc.option(fc.tuple(fc.nat(60), fc.integer({ min: 0, max: 255 }))), fc.option(fc.integer({ min: 0, max: 65535 }))).map(
  ([p, flips, cut, poke, totalLen]) => {
    const b = p.slice();
    for (const [at, bit] of flips) if (b.length) b[at % b.length]! ^= 1 << bit;
    if (poke && b.length) b[poke[0] % b.length] = poke[1];
    if (totalLen !== null && b.length >= 4) { b[2] = totalLen >> 8; b[3] = totalLen & 255; }
    return cut !== null && b.length ? b.subarray(0, cut % (b.length + 1)).slice() : b;
  });

const anyPacket = fc.oneof({ weight: 1, arbitrary: basePacket }, { weight: 2, arbitrary: mutated });
const flagsArb = fc.oneof(fc.constant(0), fc.constantFrom(SlotFlag.FROM_OVERLAY, SlotFlag.VNET, SlotFlag.ETHERNET, SlotFlag.TRACE),
  fc.integer({ min: 0, max: 0xffff }));

/** Prefixes what the slot flags promise (vnet header, VXLAN + Ethernet, Ethernet) around a packet. */
function dressed(p: Uint8Array, flags: number, vnet: Uint8Array, vni: number): Uint8Array {
  let b = p;
  if (flags & SlotFlag.FROM_OVERLAY) {
    const f = new Uint8Array(22 + b.length); f[0] = 8; f[4] = vni >> 16; f[5] = (vni >> 8) & 255; f[6] = vni & 255;
    f[20] = b[0]! >> 4 === 6 ? 0x86 : 0x08; f[21] = b[0]! >> 4 === 6 ? 0xdd : 0; f.set(b, 22); b = f;
  } else if (flags & SlotFlag.ETHERNET) {
    const f = new Uint8Array(14 + b.length); f[12] = 8; f.set(b, 14); b = f;
  }
  if (flags & SlotFlag.VNET) { const f = new Uint8Array(10 + b.length); f.set(vnet); f.set(b, 10); b = f; }
  return b;
}

const slotArb = fc.record({
  packet: anyPacket, flags: flagsArb, vnet: fc.uint8Array({ minLength: 10, maxLength: 10 }),
  vni: fc.constantFrom(1, 2), peer: fc.constantFrom(parseIpv4(NODE2), 0, 0xffffffff),
});

describe("property: no input traps the core or breaks its tables", function () {
  this.timeout(60000);

  for (const mode of ["tun", "tap"] as const) {
    it(`${mode}: random and damaged packets in full batches: no exception, a verdict 1..4 per slot, invariants hold`, () => {
      const e = engine({ mode });
      let now = 100, total = 0;
      fc.assert(fc.property(fc.array(slotArb, { minLength: 1, maxLength: 64 }), fc.integer({ min: 0, max: 40 }), (slots, dt) => {
        total += slots.length;
        slots.forEach((s, i) => e.putPacket(i, dressed(s.packet, s.flags, s.vnet, s.vni), s.flags, s.peer));
        now += dt;
        const kept = e.process(slots.length, now);
        assert.ok(kept >= 0 && kept <= slots.length);
        slots.forEach((_, i) => { const v = e.slot(i).verdict; assert.ok(v >= 1 && v <= 4, `slot ${i} verdict ${v}`); });
        if (dt > 30) e.exports.sweep(now, 16);
        assert.equal(e.checkInvariants(), 0);
        const v = e.counters().verdicts;
        // a fragment held for its first fragment (fraghold.ts) is counted once it is released or dropped
        assert.equal(v.tun! + v.overlay! + v.drop! + v.host!, total - e.counters().named.frag_holding, "one counted verdict per slot");
        assert.equal(v.none, 0);
        assert.equal(e.counters().named.ct_entries, e.exports.ctCount(), "ct_entries counter = flows in the table");
      }), { seed: SEED + (mode === "tap" ? 1 : 0), numRuns: 1200 });
    });
  }

  for (const mode of ["tun", "tap"] as const) {
    it(`${mode}: every well-formed packet comes out (forwarded, NATed, encapsulated or answered) with valid checksums`, () => {
      const e = engine({ mode });
      // RFC 8200 §8.1: a zero UDP checksum is not allowed over IPv6, so it is not well-formed there
      const valid = fc.tuple(ipSpec, l4Spec).map(([ip, l4]) => {
        // mostly whole datagrams (one in eight a fragment), so the L4 checksums get checked
        const whole = (ip.id ?? 0) % 8 !== 0 ? { mf: false, fragOffset: 0 } : {};
        try { return packet({ ...ip, ...whole }, { ...l4, noUdpChecksum: l4.noUdpChecksum && !ip.src.includes(":") }); } catch { return null; }
      })
        .filter((p): p is Uint8Array => p !== null);
      let now = 100;
      fc.assert(fc.property(fc.array(valid, { minLength: 1, maxLength: 64 }), (pkts) => {
        pkts.forEach((p, i) => e.putPacket(i, mode === "tap" ? Uint8Array.from([...[2, 0x77, 0x61, 0x73, 0x70, 1, 2, 0, 0, 0, 0, 5], ...(p[0]! >> 4 === 6 ? [0x86, 0xdd] : [8, 0]), ...p]) : p,
          mode === "tap" ? SlotFlag.ETHERNET : 0));
        e.process(pkts.length, now++);
        pkts.forEach((_, i) => {
          const s = e.slot(i);
          if (s.verdict === 3) return;
          let out = e.output(i);
          if (s.verdict === 2) {
            assert.equal(rfc1071(out.subarray(0, 20)), 0, "outer IPv4 header");
            out = out.subarray(50);
          } else if (mode === "tap") out = out.subarray(14);
          const q = parse(out);
          const frag = q.version === 4 && (new DataView(out.buffer, out.byteOffset).getUint16(6) & 0x3fff) !== 0;
          if (frag) assert.equal(rfc1071(out.subarray(0, q.l4Off)), 0, `slot ${i}: IPv4 header`);
          else assert.ok(checksumsOk(out), `slot ${i}: verdict ${s.verdict} reason ${s.reason} note ${s.note}: ${Buffer.from(out).toString("hex").slice(0, 160)}`);
        });
        assert.equal(e.checkInvariants(), 0);
      }), { seed: SEED + 10 + (mode === "tap" ? 1 : 0), numRuns: 400 });
    });
  }

  it("batch counts far beyond maxBatch (up to 2^32 - 1) are clamped, never trap", () => {
    const e = engine();
    fc.assert(fc.property(fc.oneof(fc.integer({ min: 65, max: 100000 }), fc.constant(0xffffffff), fc.constant(0x80000000)), fc.array(anyPacket, { maxLength: 8 }), (count, pkts) => {
      pkts.forEach((p, i) => e.putPacket(i, p));
      const kept = e.process(count, 100);
      assert.ok(kept <= 64);
      assert.equal(e.checkInvariants(), 0);
    }), { seed: SEED + 2, numRuns: 200 });
  });

  it("slots with bogus data, len, bufStart, bufEnd are refused (BadSlot) or handled, never trap", () => {
    const e = engine();
    const u32 = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0, 1, 0xffffffff, 0x7fffffff),
      fc.integer({ min: -300, max: 70000 }).map((d) => (e.bufferBase + d) >>> 0));
    fc.assert(fc.property(fc.array(fc.tuple(anyPacket, u32, u32, u32, u32, fc.nat(15)), { minLength: 1, maxLength: 32 }), (slots) => {
      const v = e.view();
      slots.forEach(([p, data, len, start, end, which], i) => {
        e.putPacket(i, p, which & 3 ? 0 : SlotFlag.VNET);
        const s = e.slots + i * SLOT_SIZE;
        if (which & 1) v.setUint32(s + SLOT_DATA, data, true);
        if (which & 2) v.setUint32(s + SLOT_LEN, len, true);
        if (which & 4) v.setUint32(s + SLOT_BUF_START, start, true);
        if (which & 8) v.setUint32(s + SLOT_BUF_END, end, true);
      });
      e.process(slots.length, 100);
      slots.forEach((_, i) => { const vd = e.slot(i).verdict; assert.ok(vd >= 1 && vd <= 4); });
      assert.equal(e.checkInvariants(), 0);
    }), { seed: SEED + 3, numRuns: 1000 });
  });

  for (const variant of ["tun", "tap", "tun with the overlay's offloads"] as const) {
    const mode = variant === "tap" ? "tap" : "tun";
    it(`${variant}: the core writes only inside [bufStart, bufEnd), however little room the slot leaves`, () => {
      const e = engine({ mode });
      // tunnel-GSO frames and whole TSO packets from peers get headers the core writes before the packet
      if (variant !== mode) e.exports.setTunnelOffloads(0x0211, 0x22334455, 1, 1);
      const stride = e.bufferStride, base = e.bufferBase;
      fc.assert(fc.property(slotArb, fc.integer({ min: 0, max: HEADROOM }), fc.integer({ min: 0, max: 64 }), (s, before, after) => {
        const bytes = dressed(s.packet, s.flags, s.vnet, s.vni);
        const mem = new Uint8Array(e.memory, base, stride);
        mem.fill(0xa5);
        e.putPacket(0, bytes, s.flags, s.peer);
        const vnet = (s.flags & SlotFlag.VNET) !== 0;
        const start = e.packetAddr(0, vnet) - (vnet ? VNET_HDR_LEN : 0) - before;
        const end = start + before + bytes.length + after;
        const v = e.view();
        v.setUint32(e.slots + SLOT_BUF_START, start, true);
        v.setUint32(e.slots + SLOT_BUF_END, end, true);
        const snapshot = mem.slice();
        e.process(1, 100);
        for (let i = 0; i < stride; i++) {
          const a = base + i;
          if (a >= start && a < end) continue;
          if (mem[i] !== snapshot[i]) assert.fail(`wrote at bufStart${a - start >= 0 ? "+" : ""}${a - start} (room ${before}, verdict ${e.slot(0).verdict}, reason ${e.slot(0).reason})`);
        }
        const o = e.slot(0);
        if (o.verdict !== 3) assert.ok(o.data >= start && o.data + o.len <= end, "output inside the slot");
      }), { seed: SEED + 4 + (variant === "tun" ? 0 : variant === "tap" ? 1 : 2), numRuns: 1500 });
    });
  }
});
