// The core's Internet checksum (RFC 1071) and its incremental updates (RFC 1624), judged by the
// ten-line RFC 1071 reference in test/helpers/packets.ts and by tshark.
import assert from "node:assert/strict";
import { rfc1071, packet, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, runOne, expectVerdict, tsharkValid, referenceValid, Verdict, Drop } from "../pipeline/setup.js";
import { OpWriter } from "../../helpers/ops.js";

/** mulberry32: a seeded generator, so a failure reproduces. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("wire/checksum: RFC 1071 sum and RFC 1624 updates", () => {
  const e = newEngine();
  const csum = (e.exports as unknown as { csumForTest(a: number, l: number): number }).csumForTest;

  function coreSum(bytes: Uint8Array, misalign: number): number {
    const at = e.bufferBase + 1024 + misalign;
    new Uint8Array(e.memory, at, bytes.length).set(bytes);
    return csum(at, bytes.length);
  }

  for (const len of [0, 1, 2, 3, 63, 64, 1500]) {
    it(`equals the RFC 1071 reference on 200 seeded random buffers of ${len} bytes at every alignment`, () => {
      const r = rng(1071 + len);
      for (let n = 0; n < 200; n++) {
        const b = Uint8Array.from({ length: len }, () => Math.floor(r() * 256));
        assert.equal(coreSum(b, n % 8), rfc1071(b), `buffer ${n}`);
      }
    });
  }

  it("equals the reference on random lengths 0..9000 (seeded), including all-0xff and all-zero buffers", () => {
    const r = rng(7);
    for (let n = 0; n < 300; n++) {
      const len = Math.floor(r() * 9001);
      const fill = n % 3 === 0 ? 0xff : n % 3 === 1 ? 0 : -1;
      const b = Uint8Array.from({ length: len }, () => (fill >= 0 ? fill : Math.floor(r() * 256)));
      assert.equal(coreSum(b, n % 4), rfc1071(b), `len ${len}`);
    }
  });

  it("RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 sum to ddf2, so the field is 220d", () => {
    assert.equal(coreSum(Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0), 0x220d);
  });

  it("a header that includes its correct checksum sums to zero", () => {
    const p = packet({ src: "10.0.0.1", dst: "10.0.0.2" }, { proto: "udp" });
    assert.equal(coreSum(p.subarray(0, 20), 3), 0);
  });

  describe("through the pipeline", () => {
    let eng: ReturnType<typeof newEngine>;
    beforeEach(() => {
      eng = newEngine();
      commit(eng, clusterRoutes().service({ vip: "10.96.0.10", port: 53, proto: "udp", id: 1, backends: [{ ip: "10.244.1.20", port: 5353 }] })
        .service({ vip: "10.96.0.10", port: 80, proto: "tcp", id: 2, backends: [{ ip: "10.244.2.20", port: 8080 }] }));
    });

    it("drops an IPv4 packet whose header checksum is off by one bit as BadIpv4Checksum", () => {
      const p = packet({ src: "10.244.1.5", dst: "10.244.1.6" }, { proto: "udp" });
      p[11]! ^= 0x01;
      expectVerdict(runOne(eng, p), Verdict.Drop, Drop.BadIpv4Checksum);
    });

    it("drops an IPv4 packet with a corrupted address (checksum no longer matches) as BadIpv4Checksum", () => {
      const p = packet({ src: "10.244.1.5", dst: "10.244.1.6" }, { proto: "udp" });
      p[19] = 7;
      expectVerdict(runOne(eng, p), Verdict.Drop, Drop.BadIpv4Checksum);
    });

    it("every DNATed packet of 300 seeded random TCP/UDP packets verifies under the reference and tshark", () => {
      const r = rng(1624), outs: Uint8Array[] = [];
      for (let n = 0; n < 300; n++) {
        const udp = r() < 0.5;
        const payload = Uint8Array.from({ length: Math.floor(r() * 1400) }, () => Math.floor(r() * 256));
        const src = `10.244.1.${2 + Math.floor(r() * 200)}`;
        const p = packet({ src, dst: "10.96.0.10", ttl: 2 + Math.floor(r() * 250), id: Math.floor(r() * 65536) },
          udp ? { proto: "udp", sport: 1 + Math.floor(r() * 65535), dport: 53, payload }
            : { proto: "tcp", sport: 1 + Math.floor(r() * 65535), dport: 80, flags: TCP.SYN, seq: Math.floor(r() * 2 ** 32), payload });
        const o = runOne(eng, p, 100 + n);
        assert.ok(o.slot.verdict === Verdict.Tun || o.slot.verdict === Verdict.Overlay, `packet ${n}: ${Verdict[o.slot.verdict]} ${Drop[o.slot.reason]}`);
        const inner = o.slot.verdict === Verdict.Overlay ? o.bytes.subarray(50) : o.bytes;
        referenceValid(inner);
        outs.push(inner.slice());
      }
      tsharkValid(outs);
    });

    it("a UDP checksum that becomes zero after DNAT is sent as 0xffff (RFC 768), and verifies", () => {
      // choose a 2-byte payload so that the datagram after DNAT sums to 0xffff: its checksum field
      // computes to zero, which RFC 768 transmits as all ones
      const after = packet({ src: "10.244.1.5", dst: "10.244.1.20" }, { proto: "udp", sport: 4000, dport: 5353, payload: new Uint8Array(2) });
      // field value with payload 0 is c = ~S; we want S' = S + X = 0xffff, i.e. X = ~S - 0 = c
      const c = new DataView(after.buffer).getUint16(26);
      const x = c === 0xffff ? 0 : c;
      const p = packet({ src: "10.244.1.5", dst: "10.96.0.10" }, { proto: "udp", sport: 4000, dport: 53, payload: Uint8Array.from([x >> 8, x & 0xff]) });
      const o = runOne(eng, p);
      expectVerdict(o, Verdict.Tun);
      assert.equal(new DataView(o.bytes.buffer).getUint16(26), 0xffff, "UDP checksum field");
      referenceValid(o.bytes);
      tsharkValid([o.bytes]);
    });

    it("a UDP/IPv4 datagram without a checksum (0) keeps 0 after DNAT (RFC 768 'none')", () => {
      const p = packet({ src: "10.244.1.5", dst: "10.96.0.10" }, { proto: "udp", sport: 4001, dport: 53, noUdpChecksum: true, payload: new Uint8Array(9).fill(3) });
      const o = runOne(eng, p);
      expectVerdict(o, Verdict.Tun);
      assert.equal(new DataView(o.bytes.buffer).getUint16(26), 0);
      assert.equal(rfc1071(o.bytes.subarray(0, 20)), 0, "IP header checksum");
    });
  });
});
