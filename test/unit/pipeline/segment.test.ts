// A GSO super-packet bound for another node is cut into gso_size segments before VXLAN
// encapsulation (the kernel's tcp_gso_segment: consecutive sequence numbers and IPv4 IDs, FIN/PSH
// only on the last segment, full checksums), so nothing on the wire exceeds the underlay MTU.
import assert from "node:assert/strict";
import { packet, parse, checksumsOk, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, Verdict, Drop } from "./setup.js";
import { VNET_HDR_LEN, SlotFlag, SLOT_SIZE } from "../../../src/engine/index.js";

const NEEDS_CSUM = 1, GSO_TCPV4 = 1;

function superPacket(payload: number, mss: number, seq = 5000): Uint8Array {
  const body = new Uint8Array(payload).map((_, i) => (i * 7 + 3) & 255);
  const p = packet({ src: "10.244.1.5", dst: "10.244.2.9", id: 1000, df: true },
    { proto: "tcp", sport: 40000, dport: 5201, flags: TCP.ACK | TCP.PSH | TCP.FIN, seq, payload: body });
  // the kernel leaves the partial pseudo-header sum in the field with NEEDS_CSUM
  const q = parse(p), l4len = p.length - 20;
  let s = 6 + l4len;
  for (const [o] of [[12], [14], [16], [18]] as const) s += (p[o]! << 8) | p[o + 1]!;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  p[q.l4Off + 16] = s >> 8; p[q.l4Off + 17] = s & 255;
  const v = new Uint8Array(VNET_HDR_LEN), d = new DataView(v.buffer);
  v[0] = NEEDS_CSUM; v[1] = GSO_TCPV4; d.setUint16(2, 40, true); d.setUint16(4, mss, true); d.setUint16(6, 20, true); d.setUint16(8, 16, true);
  const out = new Uint8Array(VNET_HDR_LEN + p.length);
  out.set(v); out.set(p, VNET_HDR_LEN);
  return out;
}

describe("pipeline/segment: GSO super-packets into the overlay", () => {
  it("a 30,000-byte TCP super-packet to a remote pod becomes ceil(30000/1398) VXLAN packets within the MTU", () => {
    const e = newEngine();
    commit(e, clusterRoutes());
    const mss = 1398, payload = 30_000, n = Math.ceil(payload / mss);
    e.putPacket(0, superPacket(payload, mss), SlotFlag.VNET);
    e.process(1, 100);
    assert.equal(e.slot(0).verdict, Verdict.Overlay);
    const extra = e.exports.extraCount();
    assert.equal(extra, n - 1);
    const outs = [e.output(0)];
    const v = e.view(), base = e.exports.extraSlotsAddr();
    for (let i = 0; i < extra; i++) {
      const s = base + i * SLOT_SIZE;
      assert.equal(v.getUint8(s + 10), Verdict.Overlay);
      outs.push(new Uint8Array(e.memory, v.getUint32(s, true), v.getUint32(s + 4, true)).slice());
    }
    let seq = 5000, got = 0;
    outs.forEach((o, k) => {
      assert.ok(o.length <= 1500, `segment ${k} is ${o.length} bytes on the wire`);
      const inner = o.subarray(50);
      const p = parse(inner);
      assert.ok(checksumsOk(inner), `segment ${k}: IPv4 and TCP checksums (RFC 1071 reference)`);
      assert.equal(new DataView(inner.buffer, inner.byteOffset).getUint32(p.l4Off + 4), seq, `segment ${k} sequence`);
      assert.equal(new DataView(inner.buffer, inner.byteOffset).getUint16(4), 1000 + k, `segment ${k} IPv4 ID`);
      const last = k === outs.length - 1;
      assert.equal((p.tcpFlags! & (TCP.FIN | TCP.PSH)) !== 0, last, `FIN/PSH only on the last segment (${k})`);
      assert.equal(p.ttl, 63);
      const body = p.l4.subarray(20);
      for (let i = 0; i < body.length; i++) if (body[i] !== (((got + i) * 7 + 3) & 255)) assert.fail(`segment ${k} byte ${i}`);
      seq += body.length; got += body.length;
    });
    assert.equal(got, payload);
    assert.equal(e.checkInvariants(), 0);
  });

  it("a super-packet with gso_size 0 or one too small to segment is dropped as GsoUnsupported, never trapping", () => {
    const e = newEngine();
    commit(e, clusterRoutes());
    for (const mss of [0, 1]) {
      e.putPacket(0, superPacket(30_000, mss), SlotFlag.VNET);
      assert.doesNotThrow(() => e.process(1, 100));
      assert.equal(e.slot(0).verdict, Verdict.Drop);
      assert.equal(e.slot(0).reason, Drop.GsoUnsupported);
      assert.equal(e.exports.extraCount(), 0);
    }
    assert.equal(e.checkInvariants(), 0);
  });

  it("a super-packet whose MSS does not fit the tunnel is answered with fragmentation needed (MTU - 50)", () => {
    const e = newEngine();
    commit(e, clusterRoutes());
    e.putPacket(0, superPacket(8000, 1460), SlotFlag.VNET);
    e.process(1, 100);
    const s = e.slot(0);
    assert.equal(s.verdict, Verdict.Tun);
    const p = parse(e.output(0));
    assert.deepEqual([p.icmpType, p.icmpCode], [3, 4]);
    assert.equal(new DataView(p.l4.buffer, p.l4.byteOffset).getUint16(6), 1450);
    assert.equal(e.exports.extraCount(), 0);
  });

  // Slots first and all extra segments after would send segment 0 of the second super-packet
  // ahead of segments 1..n of the first: reordering that the receiving TCP answers with dup ACKs.
  it("overlayOut lists a batch's VXLAN packets in wire order: two super-packets of one flow and a plain packet give strictly ascending sequence numbers", () => {
    const e = newEngine();
    commit(e, clusterRoutes());
    const mss = 1398, a = 10 * mss + 100, b = 5 * mss;
    e.putPacket(0, superPacket(a, mss, 5000), SlotFlag.VNET);
    e.putPacket(1, superPacket(b, mss, 5000 + a), SlotFlag.VNET);
    e.putPacket(2, packet({ src: "10.244.1.5", dst: "10.244.2.9" }, { proto: "tcp", sport: 40000, dport: 5201, flags: TCP.ACK, seq: 5000 + a + b, payload: new Uint8Array(10) }), 0);
    e.process(3, 100);
    const v = e.view(), base = e.exports.overlayOutAddr(), n = e.exports.overlayOutCount();
    assert.equal(n, 11 + 5 + 1, "every segment and the plain packet, once each");
    const seqs: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = base + i * SLOT_SIZE;
      assert.equal(v.getUint8(s + 10), Verdict.Overlay);
      const inner = new Uint8Array(e.memory, v.getUint32(s, true) + 50, v.getUint32(s + 4, true) - 50);
      assert.ok(checksumsOk(inner), `packet ${i}: checksums`);
      seqs.push(new DataView(inner.buffer, inner.byteOffset).getUint32(parse(inner).l4Off + 4));
    }
    const expected = [...Array.from({ length: 11 }, (_, k) => 5000 + k * mss), ...Array.from({ length: 5 }, (_, k) => 5000 + a + k * mss), 5000 + a + b];
    assert.deepEqual(seqs, expected);
    assert.equal(e.checkInvariants(), 0);
  });
});
