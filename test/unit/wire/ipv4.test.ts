// IPv4 (RFC 791) as the core parses it: header length and total length checks, options, TTL expiry
// (RFC 792 time exceeded) and fragments of a NATed datagram.
import assert from "node:assert/strict";
import { packet, ipv4, parse, rfc1071, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, run, runOne, expectVerdict, tsharkValid, referenceValid, Verdict, Drop, MASQ4 } from "../pipeline/setup.js";
import { HeaderBench, IPV4_FIELDS, hex, toHex } from "./hooks.js";

function refreshHeaderChecksum(b: Uint8Array): Uint8Array {
  const hl = (b[0]! & 15) * 4;
  b[10] = 0; b[11] = 0;
  const c = rfc1071(b.subarray(0, Math.max(hl, 0)));
  b[10] = c >> 8; b[11] = c & 0xff;
  return b;
}

describe("wire/ipv4", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => {
    e = newEngine();
    commit(e, clusterRoutes()
      .service({ vip: "10.96.0.10", port: 53, proto: "udp", id: 1, backends: [{ ip: "10.244.1.20", port: 5353 }] })
      .service({ vip: "10.96.0.10", port: 80, proto: "tcp", id: 2, backends: [{ ip: "10.244.1.21", port: 8080 }] }));
  });

  it("drops an IPv4 header with IHL 4 as BadIpv4Header (RFC 791: min 5)", () => {
    const p = packet({ src: "10.244.1.5", dst: "10.244.1.6" }, { proto: "udp" });
    p[0] = 0x44; refreshHeaderChecksum(p);
    expectVerdict(runOne(e, p), Verdict.Drop, Drop.BadIpv4Header);
  });

  for (const ihl of [0, 1, 3]) {
    it(`drops IHL ${ihl} as BadIpv4Header`, () => {
      const p = packet({ src: "10.244.1.5", dst: "10.244.1.6" }, { proto: "udp" });
      p[0] = 0x40 | ihl;
      expectVerdict(runOne(e, p), Verdict.Drop, Drop.BadIpv4Header);
    });
  }

  it("drops a packet whose total length exceeds the bytes received as BadIpv4Header", () => {
    const p = packet({ src: "10.244.1.5", dst: "10.244.1.6" }, { proto: "udp", payload: new Uint8Array(20) });
    new DataView(p.buffer).setUint16(2, p.length + 1); refreshHeaderChecksum(p);
    expectVerdict(runOne(e, p), Verdict.Drop, Drop.BadIpv4Header);
  });

  it("drops a total length shorter than the header (IHL 15, total 40) as BadIpv4Header", () => {
    const p = packet({ src: "10.244.1.5", dst: "10.244.1.6", options: new Array(40).fill(1) }, { proto: "udp" });
    new DataView(p.buffer).setUint16(2, 40); refreshHeaderChecksum(p);
    expectVerdict(runOne(e, p), Verdict.Drop, Drop.BadIpv4Header);
  });

  it("drops fewer than 20 bytes as TooShort and a version 5 header as BadIpVersion", () => {
    const p = packet({ src: "10.244.1.5", dst: "10.244.1.6" }, { proto: "udp" });
    expectVerdict(runOne(e, p.subarray(0, 19).slice()), Verdict.Drop, Drop.TooShort);
    const q = p.slice(); q[0] = 0x55;
    expectVerdict(runOne(e, q), Verdict.Drop, Drop.BadIpVersion);
    expectVerdict(runOne(e, new Uint8Array(0)), Verdict.Drop, Drop.TooShort);
  });

  it("cuts link-layer padding: the output is total-length bytes long", () => {
    const p = packet({ src: "10.244.1.5", dst: "10.244.1.6" }, { proto: "udp", payload: new Uint8Array(2) });
    const padded = new Uint8Array(p.length + 16); padded.set(p); padded.fill(0xee, p.length);
    const o = runOne(e, padded);
    expectVerdict(o, Verdict.Tun);
    assert.equal(o.bytes.length, p.length);
  });

  for (const ihl of [6, 7, 10, 15]) {
    it(`parses IHL ${ihl} (options) and DNATs the ports behind them, every checksum valid`, () => {
      // RFC 791 options: NOPs padded with End of Option List
      const opts = new Array((ihl - 5) * 4).fill(1); opts[opts.length - 1] = 0;
      const p = packet({ src: "10.244.1.5", dst: "10.96.0.10", options: opts }, { proto: "tcp", sport: 41000 + ihl, dport: 80, flags: TCP.SYN, payload: new Uint8Array(10).fill(ihl) });
      const o = runOne(e, p);
      expectVerdict(o, Verdict.Tun);
      const q = parse(o.bytes);
      assert.equal(q.l4Off, ihl * 4);
      assert.deepEqual([q.dst, q.dport, q.src, q.sport], ["10.244.1.21", 8080, "10.244.1.5", 41000 + ihl]);
      assert.deepEqual([...o.bytes.subarray(20, ihl * 4)], opts, "options unchanged");
      referenceValid(o.bytes);
      const [d] = tsharkValid([o.bytes]);
      assert.equal(d!.get("ip.hdr_len"), String(ihl * 4));
      assert.equal(d!.get("tcp.dstport"), "8080");
    });
  }

  it("answers TTL 1 with ICMP time exceeded (type 11 code 0) from the masq address, quoting the packet", () => {
    const p = packet({ src: "10.244.1.5", dst: "10.96.0.10", ttl: 1 }, { proto: "udp", sport: 4000, dport: 53, payload: new Uint8Array(30).fill(7) });
    const o = runOne(e, p);
    expectVerdict(o, Verdict.Tun, Drop.TtlExceeded);
    const q = parse(o.bytes);
    assert.deepEqual([q.src, q.dst, q.proto, q.icmpType, q.icmpCode], [MASQ4, "10.244.1.5", 1, 11, 0]);
    // RFC 792: the quote is the original IP header plus at least 64 bits of its data, as received
    assert.deepEqual([...o.bytes.subarray(28, 28 + p.length)], [...p]);
    referenceValid(o.bytes);
    const [d] = tsharkValid([o.bytes]);
    assert.deepEqual([d!.get("icmp.type"), d!.get("icmp.code")], ["11", "0"]);
    assert.deepEqual(d!.all("ip.src"), [MASQ4, "10.244.1.5"], "outer, then quoted source");
    assert.deepEqual(d!.all("ip.dst"), ["10.244.1.5", "10.96.0.10"]);
    assert.ok(d!.all("ip.checksum.status").length === 2, "tshark verified the quoted header too");
  });

  it("TTL 0 is answered like TTL 1, and TTL 2 is forwarded with TTL 1 and a valid header checksum", () => {
    const p0 = packet({ src: "10.244.1.5", dst: "10.244.1.6", ttl: 0 }, { proto: "udp" });
    expectVerdict(runOne(e, p0), Verdict.Tun, Drop.TtlExceeded);
    const p2 = packet({ src: "10.244.1.5", dst: "10.244.1.6", ttl: 2 }, { proto: "udp" });
    const o = runOne(e, p2);
    expectVerdict(o, Verdict.Tun, Drop.None);
    assert.equal(parse(o.bytes).ttl, 1);
    referenceValid(o.bytes);
  });

  it("a TTL 1 ICMP error is not answered with another error (RFC 1812 §4.3.2.7): dropped", () => {
    const inner = packet({ src: "10.244.1.6", dst: "10.244.1.99" }, { proto: "udp" });
    const err = packet({ src: "10.244.1.99", dst: "10.244.1.5", ttl: 1 }, { proto: "icmp", type: 3, code: 3, rest: 0, payload: inner });
    expectVerdict(runOne(e, err), Verdict.Drop, Drop.TtlExceeded);
  });

  describe("fragments (RFC 791 §2.3)", () => {
    // one UDP datagram of 8 + 100 bytes to the VIP, cut after 56 bytes of IP payload (7 units of 8)
    const whole = packet({ src: "10.244.1.5", dst: "10.96.0.10" }, { proto: "udp", sport: 4444, dport: 53, payload: Uint8Array.from({ length: 100 }, (_, i) => i) });
    const l4 = whole.subarray(20);
    const first = ipv4({ src: "10.244.1.5", dst: "10.96.0.10", id: 0x7777, mf: true }, 17, l4.subarray(0, 56));
    const second = ipv4({ src: "10.244.1.5", dst: "10.96.0.10", id: 0x7777, fragOffset: 7 }, 17, l4.subarray(56));

    it("the first fragment is DNATed and the later one (no ports) gets the same address rewrite; tshark reassembles a valid datagram", () => {
      const [a, b] = run(e, [first, second]);
      expectVerdict(a!, Verdict.Tun); expectVerdict(b!, Verdict.Tun);
      assert.deepEqual([parse(a!.bytes).dst, parse(a!.bytes).dport], ["10.244.1.20", 5353]);
      assert.equal(parse(b!.bytes).dst, "10.244.1.20");
      assert.ok(e.slot(1).note & 4096, "Note.FRAGMENT");
      assert.equal(e.counters().named.frag_tracked, 1);
      const ds = tsharkValid([a!.bytes, b!.bytes]);
      // the reassembled datagram's UDP checksum covers the new addresses and port
      const last = ds[1]!;
      assert.equal(last.get("udp.dstport"), "5353");
      assert.equal(last.get("udp.checksum.status"), "1");
    });

    it("the later fragments also arrive in separate batches and out of order after the first", () => {
      const third = ipv4({ src: "10.244.1.5", dst: "10.96.0.10", id: 0x7777, fragOffset: 7 }, 17, l4.subarray(56));
      expectVerdict(runOne(e, first), Verdict.Tun);
      const o = runOne(e, third, 101);
      expectVerdict(o, Verdict.Tun);
      assert.equal(parse(o.bytes).dst, "10.244.1.20");
    });

    // What the backend must receive of `second`, built apart from the core: the same fragment to the
    // backend's address, TTL one less (RFC 1812 §5.3.1), its header checksum by RFC 1071.
    const secondAtBackend = ipv4({ src: "10.244.1.5", dst: "10.244.1.20", id: 0x7777, fragOffset: 7, ttl: 63 }, 17, l4.subarray(56));

    it("first fragment last, in one batch: the later fragment is held, then delivered right after the first, byte-exact; tshark reassembles a valid datagram", () => {
      const [b, a] = run(e, [second, first]);
      expectVerdict(b!, Verdict.Drop, Drop.FragmentHeld);
      expectVerdict(a!, Verdict.Tun);
      const released = e.releasedPackets();
      assert.equal(released.length, 1, "one fragment released");
      expectVerdict(released[0]!, Verdict.Tun);
      assert.deepEqual([...released[0]!.bytes], [...secondAtBackend], "the held fragment, rewritten like its first fragment");
      const ds = tsharkValid([a!.bytes, released[0]!.bytes]);
      assert.equal(ds[1]!.get("udp.dstport"), "5353", "reassembled by tshark");
      assert.equal(ds[1]!.get("udp.checksum.status"), "1");
      const c = e.counters();
      assert.deepEqual([c.named.frag_held, c.named.frag_released, c.named.frag_holding], [1, 1, 0]);
      assert.deepEqual([c.named.packets_in, c.verdicts.tun, c.verdicts.drop], [2, 2, 0], "two packets in, two out, none lost");
      assert.deepEqual(Object.entries(c.drops).filter(([, n]) => n > 0), [], "no drop counted");
    });

    it("first fragment last, in a later batch (2 s later): the held fragment goes out with that batch", () => {
      expectVerdict(runOne(e, second, 100), Verdict.Drop, Drop.FragmentHeld);
      assert.deepEqual(e.releasedPackets(), [], "nothing released before the first fragment");
      const a = runOne(e, first, 102);
      expectVerdict(a, Verdict.Tun);
      assert.deepEqual(e.releasedPackets().map((r) => [...r.bytes]), [[...secondAtBackend]]);
      assert.deepEqual(runOne(e, first, 102).slot.verdict, Verdict.Tun);
      assert.deepEqual(e.releasedPackets(), [], "released once only");
    });

    it("a later fragment to a VIP whose first fragment never comes is held, then dropped as FragmentUntracked after 3 s", () => {
      const orphan = ipv4({ src: "10.244.1.5", dst: "10.96.0.10", id: 0x1111, fragOffset: 7 }, 17, l4.subarray(56));
      expectVerdict(runOne(e, orphan), Verdict.Drop, Drop.FragmentHeld);
      e.sweep(102, 64);
      assert.deepEqual([e.counters().named.frag_holding, e.counters().drops.fragment_untracked], [1, 0], "still waiting at 2 s");
      e.sweep(103, 64);
      assert.deepEqual([e.counters().named.frag_holding, e.counters().drops.fragment_untracked], [0, 1], "dropped at 3 s, counted once");
      expectVerdict(runOne(e, first, 104), Verdict.Tun);
      assert.deepEqual(e.releasedPackets(), [], "a first fragment after the wait releases nothing");
    });

    it("a later fragment whose first fragment had another id is held and not released by it", () => {
      runOne(e, first);
      const other = ipv4({ src: "10.244.1.5", dst: "10.96.0.10", id: 0x7778, fragOffset: 7 }, 17, l4.subarray(56));
      expectVerdict(runOne(e, other), Verdict.Drop, Drop.FragmentHeld);
      runOne(e, ipv4({ src: "10.244.1.6", dst: "10.96.0.10", id: 0x7778, mf: true }, 17, l4.subarray(0, 56)));
      assert.deepEqual(e.releasedPackets(), [], "another source's datagram with the same id");
    });

    it("a flood of 20,480 later fragments whose first never comes: memory stays as it was, at most 256 wait, the rest are counted dropped, and a reordered datagram still gets through", () => {
      const bytesBefore = e.wasmMemory.buffer.byteLength;
      for (let b = 0; b < 320; b++) {
        run(e, Array.from({ length: 64 }, (_, i) => ipv4({ src: "10.244.1.66", dst: "10.96.0.10", id: b * 64 + i, fragOffset: 7 }, 17, l4.subarray(56))), 100);
      }
      const c = e.counters();
      assert.equal(e.wasmMemory.buffer.byteLength, bytesBefore, "no memory grown");
      assert.equal(c.named.frag_holding, 256, "the pool holds 256");
      assert.equal(c.drops.fragment_untracked, 320 * 64 - 256, "every other fragment counted as dropped");
      assert.equal(e.checkInvariants(), 0);
      // 3 s on, the waiting fragments make room for the next datagram
      const [b, a] = run(e, [second, first], 103);
      expectVerdict(b!, Verdict.Drop, Drop.FragmentHeld); expectVerdict(a!, Verdict.Tun);
      assert.deepEqual(e.releasedPackets().map((r) => [...r.bytes]), [[...secondAtBackend]]);
    });

    it("fragments of a reply from the backend are all reverse-NATed to come from the VIP", () => {
      const [a] = run(e, [first]);
      const q = parse(a!.bytes);
      const reply = packet({ src: q.dst, dst: q.src }, { proto: "udp", sport: 5353, dport: 4444, payload: Uint8Array.from({ length: 100 }, (_, i) => 255 - i) });
      const rl4 = reply.subarray(20);
      const r1 = ipv4({ src: q.dst, dst: q.src, id: 0x4242, mf: true }, 17, rl4.subarray(0, 56));
      const r2 = ipv4({ src: q.dst, dst: q.src, id: 0x4242, fragOffset: 7 }, 17, rl4.subarray(56));
      const [o1, o2] = run(e, [r1, r2], 101);
      expectVerdict(o1!, Verdict.Tun); expectVerdict(o2!, Verdict.Tun);
      assert.deepEqual([parse(o1!.bytes).src, parse(o1!.bytes).sport], ["10.96.0.10", 53]);
      assert.equal(parse(o2!.bytes).src, "10.96.0.10");
      const ds = tsharkValid([o1!.bytes, o2!.bytes]);
      assert.equal(ds[1]!.get("udp.srcport"), "53", "reassembled by tshark");
      assert.equal(ds[1]!.get("udp.checksum.status"), "1");
    });

    it("a later fragment whose flow was evicted is not rewritten by the flow that took its record", () => {
      const small = newEngine({ conntrackCapacity: 16 });
      commit(small, clusterRoutes()
        .service({ vip: "10.96.0.10", port: 53, proto: "udp", id: 1, backends: [{ ip: "10.244.1.20", port: 5353 }] })
        .service({ vip: "10.96.0.12", port: 53, proto: "udp", id: 2, backends: [{ ip: "10.244.1.30", port: 5353 }] }));
      expectVerdict(runOne(small, first, 100), Verdict.Tun);
      // sixteen other flows fill the table; the oldest (the fragmented datagram's) is evicted
      run(small, Array.from({ length: 16 }, (_, i) => packet({ src: `10.244.1.${100 + i}`, dst: "10.96.0.12" }, { proto: "udp", sport: 7000, dport: 53 })), 101);
      assert.equal(small.counters().named.ct_evicted, 1);
      const o = runOne(small, second, 102);
      if (o.slot.verdict !== Verdict.Drop) assert.notEqual(parse(o.bytes).dst, "10.244.1.30", "sent to another flow's backend");
    });

    it("fragments between pods (not to a service) are routed unchanged", () => {
      const f = ipv4({ src: "10.244.1.5", dst: "10.244.1.6", id: 9, fragOffset: 7 }, 17, l4.subarray(56));
      const o = runOne(e, f);
      expectVerdict(o, Verdict.Tun);
      assert.equal(parse(o.bytes).dst, "10.244.1.6");
      assert.equal(rfc1071(o.bytes.subarray(0, 20)), 0, "IP header checksum");
    });
  });
});

describe("wire/ipv4: one literal header through the Ipv4 view and emitIpv4 (no tables)", () => {
  // The header of Wikipedia's IPv4 header checksum example, in a 115-byte datagram. tshark 4.0 decodes
  // it as version 4, header 20 bytes, total length 115, id 0, DF, offset 0, TTL 64, UDP, header
  // checksum 0xb861 (good), 192.168.0.1 -> 192.168.0.199.
  const HEADER = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
  const b = new HeaderBench();

  it("decodes every field as tshark does, and emitIpv4 writes the same 20 bytes from them", () => {
    b.put(b.at, HEADER);   // the 95 bytes after it are zero: the total length the header claims
    assert.equal(b.check("ipv4DecodeForTest", 115), "None", "checkIpv4");
    assert.deepEqual(b.fields(IPV4_FIELDS), {
      version: 4, headerLen: 20, totalLen: 115, id: 0, dontFragment: 1, moreFragments: 0, fragOffset: 0, ttl: 64, proto: 17,
      check: 0xb861, src: 0xc0a80001, dst: 0xc0a800c7,
    });
    b.hooks.ipv4EmitForTest(b.scratch, 115, 0, 1, 64, 17, 0xc0a80001, 0xc0a800c7);
    assert.equal(toHex(b.bytes(b.scratch, 20)), toHex(HEADER));
  });

  it("checkIpv4 calls the same header with one checksum bit flipped BadIpv4Checksum, and 114 bytes of it BadIpv4Header", () => {
    const bad = HEADER.slice(); bad[11]! ^= 1;
    assert.equal(b.check("ipv4DecodeForTest", 115, bad), "BadIpv4Checksum");
    assert.equal(b.check("ipv4DecodeForTest", 114, HEADER), "BadIpv4Header", "total length 115 > 114 bytes received");
  });
});
