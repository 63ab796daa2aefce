// A GSO super-packet bound for another node is cut into gso_size segments before VXLAN
// encapsulation (the kernel's tcp_gso_segment: consecutive sequence numbers and IPv4 IDs, FIN/PSH
// only on the last segment, full checksums), so nothing on the wire exceeds the underlay MTU.
import assert from "node:assert/strict";
import { packet, parse, checksumsOk, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, Verdict, Drop, NODE1, NODE2 } from "./setup.js";
import { VNET_HDR_LEN, SlotFlag, SLOT_SIZE, Note } from "../../../src/engine/index.js";
import { dissect } from "../../helpers/tshark.js";
import { LINKTYPE_ETHERNET } from "../../helpers/pcap.js";

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

// With a tunnel TAP (Linux 6.17 UDP-tunnel GSO) the super-packet is not cut: it is encapsulated once
// and handed over with a struct virtio_net_hdr_v1_hash_tunnel (virtio 1.4 §5.1.6: the v1 header,
// hash_value u32, hash_report u16, padding u16, outer_th_offset u16, inner_nh_offset u16; offsets and
// csum_start from the first byte of the Ethernet frame; hdr_len through the inner transport header;
// gso_type VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4 = 0x20).
describe("pipeline/segment: a super-packet sent whole with UDP-tunnel GSO", () => {
  const TAP_MAC = "02:11:22:33:44:55", GSO_UDP_TUNNEL_IPV4 = 0x20, TNL_HDR = 24;
  function tunnelEngine() {
    const e = newEngine();
    commit(e, clusterRoutes());
    e.exports.setTunnelOffloads(0x0211, 0x22334455, 1, 0);
    return e;
  }

  it("a 30,000-byte super-packet becomes ONE frame: tunnel header, Ethernet to the TAP, outer IPv4/UDP/VXLAN, the inner packet with its partial checksum", () => {
    const e = tunnelEngine(), mss = 1398, payload = 30_000, sp = superPacket(payload, mss);
    e.putPacket(0, sp, SlotFlag.VNET);
    e.process(1, 100);
    const s = e.slot(0);
    assert.equal(s.verdict, Verdict.Overlay);
    assert.ok(s.note & Note.TUNNEL_GSO, "noted for the tunnel TAP");
    assert.equal(e.exports.extraCount(), 0, "nothing cut");
    assert.equal(e.exports.overlayOutCount(), 1);
    assert.equal(e.counters().named.tunnel_gso_sent, 1);
    const f = e.output(0), d = new DataView(f.buffer, f.byteOffset);
    const inner = sp.subarray(VNET_HDR_LEN);
    assert.equal(f.length, TNL_HDR + 14 + 50 + inner.length);
    const ethAt = TNL_HDR, innerIp = 14 + 50, innerTcp = innerIp + 20;
    assert.equal(f[0], NEEDS_CSUM, "flags: NEEDS_CSUM");
    assert.equal(f[1], GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4, "gso_type");
    assert.equal(d.getUint16(2, true), innerTcp + 20, "hdr_len: through the inner TCP header");
    assert.equal(d.getUint16(4, true), mss, "gso_size: the pod's MSS");
    assert.equal(d.getUint16(6, true), innerTcp, "csum_start: the inner TCP header");
    assert.equal(d.getUint16(8, true), 16, "csum_offset: TCP's checksum field");
    assert.deepEqual([...f.subarray(10, 20)], Array(10).fill(0), "num_buffers, hash: zero");
    assert.equal(d.getUint16(20, true), 14 + 20, "outer_th_offset: the outer UDP header");
    assert.equal(d.getUint16(22, true), innerIp, "inner_nh_offset: the inner IPv4 header");
    const [t] = dissect([f.subarray(ethAt)], LINKTYPE_ETHERNET);
    assert.deepEqual(t!.all("eth.dst"), [TAP_MAC, "02:00:00:00:00:09"], "to the TAP, then to the remote VTEP");
    assert.deepEqual(t!.all("ip.src"), [NODE1, "10.244.1.5"]);
    assert.deepEqual(t!.all("ip.dst"), [NODE2, "10.244.2.9"]);
    assert.equal(t!.get("udp.dstport"), "8472");
    assert.equal(t!.get("udp.length"), String(8 + 8 + 14 + inner.length));
    assert.equal(t!.get("ip.checksum.status"), "1", "outer IPv4 header checksum");
    // the inner packet as the pod sent it, TTL one less (and the header checksum with it)
    const got = f.subarray(ethAt + innerIp), want = inner.slice();
    want[8]! -= 1; want[10] = 0; want[11] = 0;
    assert.deepEqual([...got.subarray(20)], [...want.subarray(20)], "TCP header, partial checksum and payload untouched");
    // and the inner IPv4 header checksum is right for the new TTL (RFC 1071 over the header)
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += (got[i]! << 8) | got[i + 1]!;
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    assert.equal(sum, 0xffff, "inner IPv4 header checksum");
    assert.equal(d.getUint16(ethAt + 14 + 2), 50 + inner.length, "outer IPv4 total length");
  });

  it("falls back to cutting when the header asks for ECN or there is no tunnel TAP", () => {
    const mss = 1398, payload = 8000, n = Math.ceil(payload / mss);
    const e = tunnelEngine(), ecn = superPacket(payload, mss);
    ecn[1] = GSO_TCPV4 | 0x80;
    e.putPacket(0, ecn, SlotFlag.VNET);
    e.process(1, 100);
    assert.equal(e.slot(0).verdict, Verdict.Overlay);
    assert.equal(e.slot(0).note & Note.TUNNEL_GSO, 0);
    assert.equal(e.exports.extraCount(), n - 1);
    const plain = newEngine();
    commit(plain, clusterRoutes());
    plain.putPacket(0, superPacket(payload, mss), SlotFlag.VNET);
    plain.process(1, 100);
    assert.equal(plain.slot(0).note & Note.TUNNEL_GSO, 0);
    assert.equal(plain.exports.extraCount(), n - 1);
  });
});
