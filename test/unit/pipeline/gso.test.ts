// virtio_net_hdr (include/uapi/linux/virtio_net.h) with IFF_VNET_HDR: a GSO super-packet or a packet
// with NEEDS_CSUM carries a partial checksum, the folded pseudo-header sum the kernel leaves in the
// L4 field (tcp_v4_send_check: th->check = ~tcp_v4_check(len, saddr, daddr, 0)). After DNAT that
// field must hold the partial sum for the new addresses, or the kernel finishes a wrong checksum.
import assert from "node:assert/strict";
import { packet, parse, rfc1071, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, expectVerdict, tsharkValid, Verdict, Drop, SlotFlag } from "./setup.js";
import { VNET_HDR_LEN, Note } from "../../../src/engine/index.js";

const CLIENT = "10.244.1.5", VIP = "10.96.0.10", BE = "10.244.1.10";
const NEEDS_CSUM = 1, GSO_TCPV4 = 1, GSO_NONE = 0;

/** Folded, uncomplemented sum of the IPv4 pseudo-header (RFC 793 §3.1) for `len` bytes of L4. */
function pseudoPartial(src: string, dst: string, proto: number, len: number): number {
  const b = [...src.split(".").map(Number), ...dst.split(".").map(Number)];
  let s = proto + len;
  for (let i = 0; i < 8; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function vnetHeader(flags: number, gsoType: number, hdrLen: number, gsoSize: number, csumStart: number, csumOffset: number): Uint8Array {
  const h = new Uint8Array(VNET_HDR_LEN), d = new DataView(h.buffer);
  h[0] = flags; h[1] = gsoType;
  d.setUint16(2, hdrLen, true); d.setUint16(4, gsoSize, true); d.setUint16(6, csumStart, true); d.setUint16(8, csumOffset, true);
  return h;
}

/** The packet as the kernel hands it over: the L4 checksum field holds the partial sum. */
function withPartial(p: Uint8Array, csumOffset: number): Uint8Array {
  const q = parse(p);
  const c = pseudoPartial(q.src, q.dst, q.proto, p.length - q.l4Off);
  p[q.l4Off + csumOffset] = c >> 8; p[q.l4Off + csumOffset + 1] = c & 0xff;
  return p;
}

describe("pipeline: virtio_net_hdr, GSO and partial checksums", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => {
    e = newEngine({ maxBatch: 4 });
    commit(e, clusterRoutes()
      .service({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: [{ ip: BE, port: 8080 }] })
      .service({ vip: VIP, port: 53, proto: "udp", id: 2, backends: [{ ip: BE, port: 5353 }] }));
  });

  function put(vnet: Uint8Array, p: Uint8Array): void {
    const b = new Uint8Array(vnet.length + p.length); b.set(vnet); b.set(p, vnet.length);
    e.putPacket(0, b, SlotFlag.VNET);
    e.process(1, 100);
  }

  it("a 30000-byte TCPV4 super-packet to a VIP: partial sum for the new addresses, vnet header unchanged, IP header valid", () => {
    const payload = Uint8Array.from({ length: 30000 }, (_, i) => i * 7);
    const p = withPartial(packet({ src: CLIENT, dst: VIP, df: true }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.ACK | TCP.PSH, seq: 1, ack: 1, payload }), 16);
    const vnet = vnetHeader(NEEDS_CSUM, GSO_TCPV4, 40, 1448, 20, 16);
    put(vnet, p);
    const s = e.slot(0);
    assert.equal(s.verdict, Verdict.Tun, Drop[s.reason]);
    assert.ok(s.note & Note.GSO && s.note & Note.DNAT, "Note.GSO and Note.DNAT set");
    const out = e.output(0);
    assert.equal(out.length, p.length);
    const q = parse(out);
    assert.deepEqual([q.dst, q.dport, q.src, q.sport], [BE, 8080, CLIENT, 40000]);
    assert.equal(new DataView(out.buffer).getUint16(36), pseudoPartial(CLIENT, BE, 6, 20 + 30000), "partial checksum field");
    assert.equal(rfc1071(out.subarray(0, 20)), 0, "IP header checksum");
    assert.deepEqual([...new Uint8Array(e.memory, s.data - VNET_HDR_LEN, VNET_HDR_LEN)], [...vnet], "vnet header");
    assert.deepEqual([...out.subarray(40)], [...payload], "payload untouched");
  });

  it("the reply super-packet from the backend gets the partial sum for VIP -> client", () => {
    put(vnetHeader(NEEDS_CSUM, GSO_TCPV4, 40, 1448, 20, 16),
      withPartial(packet({ src: CLIENT, dst: VIP }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.SYN }), 16));
    const r = withPartial(packet({ src: BE, dst: CLIENT }, { proto: "tcp", sport: 8080, dport: 40000, flags: TCP.ACK, payload: new Uint8Array(20000).fill(3) }), 16);
    put(vnetHeader(NEEDS_CSUM, GSO_TCPV4, 40, 1448, 20, 16), r);
    const out = e.output(0), q = parse(out);
    assert.deepEqual([q.src, q.sport], [VIP, 80]);
    assert.equal(new DataView(out.buffer).getUint16(36), pseudoPartial(VIP, CLIENT, 6, 20 + 20000));
    assert.equal(rfc1071(out.subarray(0, 20)), 0);
  });

  it("UDP with NEEDS_CSUM (no GSO): the partial sum follows the new addresses", () => {
    const p = withPartial(packet({ src: CLIENT, dst: VIP }, { proto: "udp", sport: 3000, dport: 53, payload: new Uint8Array(100).fill(9) }), 6);
    const vnet = vnetHeader(NEEDS_CSUM, GSO_NONE, 0, 0, 20, 6);
    put(vnet, p);
    const s = e.slot(0);
    assert.equal(s.verdict, Verdict.Tun, Drop[s.reason]);
    const out = e.output(0);
    assert.deepEqual([parse(out).dst, parse(out).dport], [BE, 5353]);
    assert.equal(new DataView(out.buffer).getUint16(26), pseudoPartial(CLIENT, BE, 17, 108));
    assert.equal(rfc1071(out.subarray(0, 20)), 0);
    assert.deepEqual([...new Uint8Array(e.memory, s.data - VNET_HDR_LEN, VNET_HDR_LEN)], [...vnet]);
  });

  it("without NEEDS_CSUM the checksum is a full one and stays valid after DNAT", () => {
    const p = packet({ src: CLIENT, dst: VIP }, { proto: "tcp", sport: 40001, dport: 80, flags: TCP.SYN, payload: new Uint8Array(50).fill(1) });
    put(vnetHeader(0, GSO_NONE, 0, 0, 0, 0), p);
    const out = e.output(0);
    const q = parse(out);
    assert.equal(q.dst, BE);
    const pseudo = pseudoPartial(CLIENT, BE, 6, q.l4.length);
    assert.equal(rfc1071(q.l4, pseudo), 0, "full TCP checksum");
  });

  it("a reply the core makes itself (RST) carries a zeroed vnet header: no offload pending", () => {
    commit(e, clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: [] }));
    put(vnetHeader(NEEDS_CSUM, GSO_NONE, 0, 0, 20, 16), withPartial(packet({ src: CLIENT, dst: VIP }, { proto: "tcp", sport: 40002, dport: 80, flags: TCP.SYN }), 16));
    const s = e.slot(0);
    assert.equal(s.reason, Drop.NoBackend);
    assert.deepEqual([...new Uint8Array(e.memory, s.data - VNET_HDR_LEN, VNET_HDR_LEN)], new Array(10).fill(0));
    const out = e.output(0), q = parse(out);
    assert.equal(q.tcpFlags! & TCP.RST, TCP.RST);
    assert.equal(rfc1071(q.l4, pseudoPartial(VIP, CLIENT, 6, q.l4.length)), 0, "the RST's checksum is complete");
  });

  for (const mode of ["tun", "tap"] as const) {
    it(`${mode}: an ICMP error the core builds in the headroom has a zeroed vnet header right before its output`, () => {
      const eng = newEngine({ maxBatch: 4, mode });
      commit(eng, clusterRoutes());
      const ip = withPartial(packet({ src: CLIENT, dst: "10.96.0.99" }, { proto: "udp", sport: 1, dport: 2, payload: new Uint8Array(40) }), 6);
      const link = mode === "tap" ? Uint8Array.from([2, 0x77, 0x61, 0x73, 0x70, 1, 2, 0, 0, 0, 0, 5, 8, 0]) : new Uint8Array(0);
      const vnet = vnetHeader(NEEDS_CSUM, GSO_NONE, 0, 0, link.length + 20, 6);
      const b = new Uint8Array(10 + link.length + ip.length); b.set(vnet); b.set(link, 10); b.set(ip, 10 + link.length);
      new Uint8Array(eng.memory, eng.bufferBase, eng.bufferStride).fill(0xff);   // stale headroom
      eng.putPacket(0, b, SlotFlag.VNET | (mode === "tap" ? SlotFlag.ETHERNET : 0));
      eng.process(1, 100);
      const s = eng.slot(0);
      assert.equal(s.reason, Drop.NoService);
      assert.equal(s.verdict, Verdict.Tun);
      assert.deepEqual([...new Uint8Array(eng.memory, s.data - VNET_HDR_LEN, VNET_HDR_LEN)], new Array(10).fill(0), "vnet header before the output");
    });
  }

  it("tap: csum_start counts from the Ethernet header; the partial sum of a DNATed frame follows the new addresses", () => {
    const eng = newEngine({ maxBatch: 4, mode: "tap" });
    commit(eng, clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: [{ ip: BE, port: 8080 }] }));
    const ip = withPartial(packet({ src: CLIENT, dst: VIP }, { proto: "tcp", sport: 40009, dport: 80, flags: TCP.ACK, payload: new Uint8Array(3000).fill(1) }), 16);
    const link = Uint8Array.from([2, 0x77, 0x61, 0x73, 0x70, 1, 2, 0, 0, 0, 0, 5, 8, 0]);
    const vnet = vnetHeader(NEEDS_CSUM, GSO_TCPV4, 14 + 40, 1448, 14 + 20, 16);
    const b = new Uint8Array(10 + 14 + ip.length); b.set(vnet); b.set(link, 10); b.set(ip, 24);
    eng.putPacket(0, b, SlotFlag.VNET | SlotFlag.ETHERNET);
    eng.process(1, 100);
    const s = eng.slot(0);
    assert.equal(s.verdict, Verdict.Tun, Drop[s.reason]);
    const out = eng.output(0).subarray(14);
    assert.equal(parse(out).dst, BE);
    assert.equal(new DataView(out.buffer, out.byteOffset).getUint16(36), pseudoPartial(CLIENT, BE, 6, 20 + 3000), "partial checksum field");
    assert.deepEqual([...new Uint8Array(eng.memory, s.data - VNET_HDR_LEN, VNET_HDR_LEN)], [...vnet]);
  });

  // The underlay socket has no checksum offload: what leaves encapsulated must carry a complete
  // inner checksum, or the receiving node's pod drops it.
  for (const proto of ["tcp", "udp"] as const) {
    it(`a NEEDS_CSUM ${proto} packet to a remote pod leaves encapsulated with a complete inner checksum (tshark)`, () => {
      const off = proto === "tcp" ? 16 : 6;
      const p = withPartial(packet({ src: CLIENT, dst: "10.244.2.7" }, { proto, sport: 4100, dport: 80, flags: TCP.ACK, payload: Uint8Array.from({ length: 333 }, (_, i) => i) }), off);
      put(vnetHeader(NEEDS_CSUM, GSO_NONE, 0, 0, 20, off), p);
      const s = e.slot(0);
      assert.equal(s.verdict, Verdict.Overlay, Drop[s.reason]);
      const inner = e.output(0).subarray(50);
      const q = parse(inner);
      assert.equal(rfc1071(q.l4, pseudoPartial(q.src, q.dst, q.proto, q.l4.length)), 0, "inner L4 checksum complete");
      const [d] = tsharkValid([e.output(0)]);
      // the last one: the outer UDP of VXLAN comes first (and has no checksum)
      assert.equal(d!.all(`${proto}.checksum.status`).at(-1), "1");
    });
  }

  it("a NEEDS_CSUM SYN DNATed to a backend on another node leaves with a complete checksum for the new addresses", () => {
    commit(e, clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, backends: [{ ip: "10.244.2.7", port: 8080 }] }));
    const p = withPartial(packet({ src: CLIENT, dst: VIP }, { proto: "tcp", sport: 4101, dport: 80, flags: TCP.SYN }), 16);
    put(vnetHeader(NEEDS_CSUM, GSO_NONE, 0, 0, 20, 16), p);
    assert.equal(e.slot(0).verdict, Verdict.Overlay);
    const [d] = tsharkValid([e.output(0)]);
    assert.equal(d!.get("tcp.dstport"), "8080");
    assert.equal(d!.get("tcp.checksum.status"), "1");
  });
});
