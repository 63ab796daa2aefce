// VXLAN (RFC 7348) between nodes: what the core encapsulates must decode in tshark as a Linux vxlan
// device would send it; what it decapsulates must come from a known node, on our VNI, with an inner
// source inside that node's pod CIDR.
import assert from "node:assert/strict";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, run, runOne, expectVerdict, tsharkValid, referenceValid, Verdict, Drop, SlotFlag, NODE1, NODE2 } from "./setup.js";
import { Note } from "../../../src/engine/index.js";
import { parseIpv4 } from "../../../src/model/addr.js";
import { CHECKSUM_BAD, dissectOne } from "../../helpers/tshark.js";

const POD = "10.244.1.5", REMOTE = "10.244.2.7";

/** A VXLAN payload as the underlay socket delivers it: VXLAN header, inner Ethernet, inner IP. */
function vxlanPayload(vni: number, inner: Uint8Array, type = 0x0800): Uint8Array {
  const b = new Uint8Array(8 + 14 + inner.length);
  b[0] = 0x08; b[4] = vni >>> 16; b[5] = (vni >>> 8) & 255; b[6] = vni & 255;
  b.set([0x02, 0x77, 0x61, 0x73, 0x70, 0x01], 8); b.set([0x02, 0, 0, 0, 0, 0x09], 14);
  b[20] = type >> 8; b[21] = type & 255;
  b.set(inner, 22);
  return b;
}

describe("pipeline: VXLAN overlay", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => { e = newEngine({ vni: 4242 }); commit(e, clusterRoutes()); });

  describe("encapsulation", () => {
    it("decodes in tshark as IPv4/UDP to 8472, VXLAN with the VNI, inner Ethernet to the VTEP MAC, inner IP intact", () => {
      const inner = packet({ src: POD, dst: REMOTE }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.SYN, payload: new Uint8Array(100).fill(1) });
      const o = runOne(e, inner);
      expectVerdict(o, Verdict.Overlay);
      assert.ok(o.slot.note & Note.ENCAP, "Note.ENCAP set");
      assert.equal(o.bytes.length, inner.length + 50, "inner + 50 bytes");
      assert.equal(o.slot.peer, parseIpv4(NODE2));
      const innerOut = o.bytes.subarray(50);
      const expected = inner.slice(); expected[8]! -= 1;
      assert.deepEqual(parse(innerOut), parse(expected));
      referenceValid(innerOut);
      const [d] = tsharkValid([o.bytes]);
      assert.deepEqual(d!.all("ip.src"), [NODE1, POD]);
      assert.deepEqual(d!.all("ip.dst"), [NODE2, REMOTE]);
      assert.equal(d!.get("ip.checksum.status"), "1", "outer IPv4 header checksum");
      assert.equal(d!.get("udp.dstport"), "8472");
      assert.equal(d!.get("udp.checksum"), "0x0000", "RFC 7348: zero UDP checksum over IPv4");
      assert.equal(d!.get("udp.length"), String(inner.length + 30));
      assert.equal(d!.get("vxlan.vni"), "4242");
      assert.equal(d!.get("eth.dst"), "02:00:00:00:00:09");
      assert.equal(d!.get("eth.type"), "0x0800");
      assert.equal(d!.get("tcp.checksum.status"), "1", "inner TCP");
      const sport = Number(d!.get("udp.srcport"));
      assert.ok(sport >= 49152 && sport <= 65535, `source port ${sport} (RFC 7348 §5)`);
    });

    it("packets of one flow share the outer source port; 100 flows use many ports", () => {
      const port = (o: { bytes: Uint8Array }) => new DataView(o.bytes.buffer).getUint16(20);
      const same = run(e, Array.from({ length: 5 }, () => packet({ src: POD, dst: REMOTE }, { proto: "udp", sport: 999, dport: 53 })));
      assert.equal(new Set(same.map(port)).size, 1);
      const ports = new Set<number>();
      for (let b = 0; b < 2; b++) {
        for (const o of run(e, Array.from({ length: 50 }, (_, i) => packet({ src: POD, dst: REMOTE }, { proto: "udp", sport: 1000 + b * 50 + i, dport: 53 })))) {
          ports.add(port(o));
          assert.ok(port(o) >= 49152, `outer UDP source port ${port(o)} is in the dynamic range (RFC 7348 §5)`);
        }
      }
      assert.ok(ports.size > 80, `${ports.size} distinct ports`);
    });

    it("a DF packet too big for the tunnel (inner + 50 > underlay MTU) gets fragmentation needed with MTU - 50", () => {
      const big = packet({ src: POD, dst: REMOTE, df: true }, { proto: "tcp", sport: 40001, dport: 80, flags: TCP.ACK, payload: new Uint8Array(1500 - 40 - 49) });
      assert.equal(big.length, 1451);
      const o = runOne(e, big);
      expectVerdict(o, Verdict.Tun, Drop.TooBig);
      const q = parse(o.bytes);
      assert.deepEqual([q.dst, q.proto, q.icmpType, q.icmpCode], [POD, 1, 3, 4]);
      assert.equal(new DataView(o.bytes.buffer).getUint16(26), 1450, "next-hop MTU (RFC 1191)");
      // RFC 1812 §4.3.2.3: the quote is cut to fit 576 bytes, so only headers can be verified in it
      assert.equal(o.bytes.length, 576);
      assert.deepEqual([...o.bytes.subarray(28 + 12)], [...big.subarray(12, 576 - 28)], "quoted packet");
      const d = dissectOne(o.bytes);
      assert.deepEqual(d.all("ip.checksum.status"), ["1", "1"]);
      assert.equal(d.get("icmp.checksum.status"), "1");
      assert.equal(d.get("icmp.mtu"), "1450");
      const fits = packet({ src: POD, dst: REMOTE, df: true }, { proto: "tcp", sport: 40001, dport: 80, flags: TCP.ACK, payload: new Uint8Array(1450 - 40) });
      expectVerdict(runOne(e, fits), Verdict.Overlay);
    });
  });

  describe("decapsulation", () => {
    const fromRemote = (src = REMOTE, dst = POD) => packet({ src, dst }, { proto: "udp", sport: 5000, dport: 6000, payload: new Uint8Array(10).fill(4) });

    it("a packet from a known node on our VNI goes to the TUN as the inner IP packet", () => {
      const inner = fromRemote();
      const o = runOne(e, vxlanPayload(4242, inner), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
      expectVerdict(o, Verdict.Tun);
      assert.ok(o.slot.note & Note.DECAP, "Note.DECAP set");
      const q = parse(o.bytes);
      assert.deepEqual([q.src, q.dst, q.sport, q.dport, q.totalLen], [REMOTE, POD, 5000, 6000, inner.length]);
      referenceValid(o.bytes);
      tsharkValid([o.bytes]);
    });

    it("a wrong VNI is dropped as UnknownVni", () => {
      const o = runOne(e, vxlanPayload(4243, fromRemote()), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
      expectVerdict(o, Verdict.Drop, Drop.UnknownVni);
    });

    it("a sender that is no known node is dropped as UnknownPeer", () => {
      const o = runOne(e, vxlanPayload(4242, fromRemote()), 100, SlotFlag.FROM_OVERLAY, parseIpv4("192.168.100.66"));
      expectVerdict(o, Verdict.Drop, Drop.UnknownPeer);
    });

    it("an inner source outside the sending node's pod CIDR is dropped as SpoofedInnerSource", () => {
      for (const src of ["10.244.1.9", "10.244.3.1", "8.8.8.8"]) {
        const o = runOne(e, vxlanPayload(4242, fromRemote(src)), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
        expectVerdict(o, Verdict.Drop, Drop.SpoofedInnerSource);
      }
    });

    it("a VXLAN header without the I flag is BadVxlan; a header cut short too", () => {
      const p = vxlanPayload(4242, fromRemote()); p[0] = 0;
      expectVerdict(runOne(e, p, 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2)), Verdict.Drop, Drop.BadVxlan);
      expectVerdict(runOne(e, Uint8Array.from([8, 0, 0]), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2)), Verdict.Drop, Drop.BadVxlan);
    });

    /** The partial checksum a sender leaves to offload (Linux: ~tcp_v4_check(len, saddr, daddr, 0)):
     *  the pseudo-header's ones'-complement sum, folded, not complemented (RFC 1071 arithmetic). */
    function withPartialChecksum(p: Uint8Array): Uint8Array {
      const b = p.slice(), v = new DataView(b.buffer), ihl = (b[0]! & 15) * 4, proto = b[9]!, l4len = v.getUint16(2) - ihl;
      let sum = proto + l4len;
      for (let i = 12; i < 20; i += 2) sum += v.getUint16(i);
      while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
      v.setUint16(ihl + (proto === 6 ? 16 : 6), sum);
      return b;
    }

    it("a TCP and a UDP packet carrying only the partial checksum that offload leaves (Linux vxlan over a veth) go to the TUN with the full one, counted", () => {
      const tcp = packet({ src: REMOTE, dst: POD }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.ACK, seq: 7, payload: new Uint8Array(1000).map((_, i) => i * 7) });
      const udp = packet({ src: REMOTE, dst: POD }, { proto: "udp", sport: 5000, dport: 6000, payload: new Uint8Array(333).map((_, i) => i * 3) });
      const before = e.counters().named.inner_csum_completed;
      const out = run(e, [tcp, udp].map((p) => vxlanPayload(4242, withPartialChecksum(p))), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
      for (const [i, o] of out.entries()) {
        expectVerdict(o, Verdict.Tun);
        referenceValid(o.bytes);
        // as its sender meant it (forwarded: TTL one less, header checksum updated)
        assert.deepEqual([...o.bytes.subarray(12)], [...[tcp, udp][i]!.subarray(12)]);
      }
      tsharkValid(out.map((o) => o.bytes));
      assert.equal(e.counters().named.inner_csum_completed - before, 2);
    });

    it("a packet whose full checksum does not match its data is passed on unchanged (the pod's kernel drops it), not 'completed'", () => {
      const tcp = packet({ src: REMOTE, dst: POD }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.ACK, payload: new Uint8Array(200).fill(9) });
      const bad = tcp.slice(); bad[bad.length - 1] = 9 ^ 0x40;   // corrupted on the way
      const before = e.counters().named.inner_csum_completed;
      const o = runOne(e, vxlanPayload(4242, bad), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
      expectVerdict(o, Verdict.Tun);
      assert.deepEqual([...o.bytes.subarray(12)], [...bad.subarray(12)]);
      assert.equal(e.counters().named.inner_csum_completed, before);
      assert.equal(dissectOne(o.bytes).get("tcp.checksum.status"), CHECKSUM_BAD, "tshark: bad");
    });

    // A peer's TSO packet that crossed the underlay whole (wasp's tunnel GSO, Linux vxlan over a
    // veth): with a vnet TUN it goes on whole, with the virtio_net_hdr the kernel's own vxlan
    // receiver would give it (GSO TCPV4, NEEDS_CSUM at the TCP checksum, gso_size: what the pods'
    // MTU 1450 leaves after 40 header bytes).
    it("with a vnet TUN, a 20,000-byte TCP packet with a partial checksum goes to the TUN whole as one TCPV4 GSO packet, counted", () => {
      e.exports.setTunnelOffloads(0, 0, 0, 1);
      const tcp = packet({ src: REMOTE, dst: POD, df: true }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.ACK, seq: 9, payload: new Uint8Array(20_000).map((_, i) => i * 5) });
      const before = e.counters().named;
      const o = runOne(e, vxlanPayload(4242, withPartialChecksum(tcp)), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
      expectVerdict(o, Verdict.Tun);
      assert.ok(o.slot.note & Note.GSO && o.slot.note & Note.DECAP, `note ${o.slot.note}`);
      assert.equal(o.bytes.length, tcp.length, "not cut");
      const h = new DataView(e.memory, o.slot.data - 10, 10);
      assert.deepEqual([h.getUint8(0), h.getUint8(1), h.getUint16(2, true), h.getUint16(4, true), h.getUint16(6, true), h.getUint16(8, true)],
        [1, 1, 40, 1410, 20, 16], "flags NEEDS_CSUM, TCPV4, hdr_len, gso_size, csum_start, csum_offset");
      assert.deepEqual([...o.bytes.subarray(12)], [...withPartialChecksum(tcp).subarray(12)], "addresses, TCP and the partial sum as sent");
      const after = e.counters().named;
      assert.equal(after.tunnel_gso_received - before.tunnel_gso_received, 1);
      assert.equal(after.inner_csum_completed, before.inner_csum_completed, "nothing to complete: the kernel finishes it");
      // a packet within the MTU, and a long one whose checksum is complete, go on as before
      const small = packet({ src: REMOTE, dst: POD }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.ACK, payload: new Uint8Array(1000).fill(3) });
      const full = run(e, [vxlanPayload(4242, withPartialChecksum(small)), vxlanPayload(4242, tcp)], 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
      for (const x of full) {
        expectVerdict(x, Verdict.Tun);
        assert.equal(x.slot.note & Note.GSO, 0);
        referenceValid(x.bytes);
      }
      assert.equal(e.counters().named.tunnel_gso_received, after.tunnel_gso_received);
    });

    it("without a vnet TUN the same whole TSO packet is not made GSO: its checksum is completed", () => {
      const tcp = packet({ src: REMOTE, dst: POD }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.ACK, payload: new Uint8Array(5000).fill(7) });
      const o = runOne(e, vxlanPayload(4242, withPartialChecksum(tcp)), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
      expectVerdict(o, Verdict.Tun);
      assert.equal(o.slot.note & Note.GSO, 0);
      referenceValid(o.bytes);
    });

    it("decapsulated traffic to a service VIP is DNATed like local traffic", () => {
      commit(e, clusterRoutes().service({ vip: "10.96.0.10", port: 53, proto: "udp", id: 1, backends: [{ ip: "10.244.1.20", port: 5353 }] }));
      const inner = packet({ src: REMOTE, dst: "10.96.0.10" }, { proto: "udp", sport: 5000, dport: 53 });
      const o = runOne(e, vxlanPayload(4242, inner), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
      expectVerdict(o, Verdict.Tun);
      assert.deepEqual([parse(o.bytes).dst, parse(o.bytes).dport], ["10.244.1.20", 5353]);
      tsharkValid([o.bytes]);
    });
  });

  it("a ClusterIP flow to a backend on another node: SYN leaves encapsulated, the reply comes back decapsulated from the VIP", () => {
    commit(e, clusterRoutes().service({ vip: "10.96.0.10", port: 80, proto: "tcp", id: 1, backends: [{ ip: REMOTE, port: 8080 }] }));
    const o = runOne(e, packet({ src: POD, dst: "10.96.0.10" }, { proto: "tcp", sport: 40100, dport: 80, flags: TCP.SYN }));
    expectVerdict(o, Verdict.Overlay);
    const [d] = tsharkValid([o.bytes]);
    assert.deepEqual(d!.all("ip.dst"), [NODE2, REMOTE]);
    assert.equal(d!.get("tcp.dstport"), "8080");
    const reply = packet({ src: REMOTE, dst: POD }, { proto: "tcp", sport: 8080, dport: 40100, flags: TCP.SYN | TCP.ACK });
    const r = runOne(e, vxlanPayload(4242, reply), 101, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
    expectVerdict(r, Verdict.Tun);
    const q = parse(r.bytes);
    assert.deepEqual([q.src, q.sport, q.dst, q.dport], ["10.96.0.10", 80, POD, 40100]);
    assert.ok(r.slot.note & Note.DECAP && r.slot.note & Note.REVERSE_NAT, "Note.DECAP and Note.REVERSE_NAT set");
    tsharkValid([r.bytes]);
  });

  it("IPv6 inside VXLAN: inner EtherType 0x86dd out, and decapsulated back in", () => {
    const inner = packet({ src: "fd44:0:0:1::5", dst: "fd44:0:0:2::7" }, { proto: "udp", sport: 1, dport: 2, payload: new Uint8Array(8) });
    const o = runOne(e, inner);
    expectVerdict(o, Verdict.Overlay);
    const [d] = tsharkValid([o.bytes]);
    assert.equal(d!.get("eth.type"), "0x86dd");
    assert.equal(d!.get("ipv6.dst"), "fd44:0:0:2::7");
    const back = packet({ src: "fd44:0:0:2::7", dst: "fd44:0:0:1::5" }, { proto: "udp", sport: 2, dport: 1 });
    const r = runOne(e, vxlanPayload(4242, back, 0x86dd), 101, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
    expectVerdict(r, Verdict.Tun);
    assert.deepEqual([...r.bytes.subarray(8)], [...back.subarray(8)]);
  });

  // The kernel's GRO for vxlan (tcp_gro_receive): in-order segments of one flow become one GSO
  // packet for the vnet TUN. Judged by the RFC 1071 reference after finishing the partial checksum
  // as the kernel does (sum from csum_start, complement into csum_start + csum_offset).
  describe("receive coalescing (coalesce after a batch from the underlay)", () => {
    const SEG = 1000;
    const seg = (seq: number, o: { flags?: number; sport?: number; fill?: number } = {}) => packet({ src: REMOTE, dst: POD, df: true },
      { proto: "tcp", sport: o.sport ?? 5201, dport: 40000, flags: o.flags ?? TCP.ACK, seq, ack: 777, payload: new Uint8Array(SEG).map((_, i) => (seq + i) & 255) });
    function batch(inners: Uint8Array[]) {
      const outs = run(e, inners.map((p) => vxlanPayload(4242, p)), 100, SlotFlag.FROM_OVERLAY, parseIpv4(NODE2));
      // the host zeroes the vnet headers of what goes to the TUN before coalescing
      for (const o of outs) if (o.slot.verdict === Verdict.Tun) new Uint8Array(e.memory, o.slot.data - 10, 10).fill(0);
      const merged = e.exports.coalesce(inners.length, 0);
      return { merged, slots: inners.map((_, i) => e.slot(i)) };
    }
    function finish(i: number): { bytes: Uint8Array; vnet: DataView } {
      const sl = e.slot(i), bytes = e.output(i).slice(), vnet = new DataView(e.memory, sl.data - 10, 10);
      const start = vnet.getUint16(6, true), off = vnet.getUint16(8, true);
      let sum = 0;
      for (let k = start; k < bytes.length; k += 2) sum += (bytes[k]! << 8) | (bytes[k + 1] ?? 0);
      while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
      const c = ~sum & 0xffff;
      bytes[start + off] = c >> 8; bytes[start + off + 1] = c & 255;
      return { bytes, vnet };
    }

    it("ten in-order segments and a PSH one become one TCPV4 GSO packet (gso_size 1000, NEEDS_CSUM); the next flow's segment stays apart", () => {
      const inners = [...Array.from({ length: 10 }, (_, k) => seg(1000 + k * SEG)), seg(1000 + 10 * SEG, { flags: TCP.ACK | TCP.PSH }), seg(50, { sport: 5202 })];
      const { merged, slots } = batch(inners);
      assert.equal(merged, 10);
      assert.equal(slots[0]!.verdict, Verdict.Tun);
      for (let k = 1; k <= 10; k++) assert.equal(slots[k]!.verdict, Verdict.None, `slot ${k} merged`);
      assert.equal(slots[11]!.verdict, Verdict.Tun);
      const { bytes, vnet } = finish(0);
      assert.deepEqual([vnet.getUint8(0), vnet.getUint8(1), vnet.getUint16(2, true), vnet.getUint16(4, true), vnet.getUint16(6, true), vnet.getUint16(8, true)],
        [1, 1, 40, SEG, 20, 16], "virtio_net_hdr: NEEDS_CSUM, GSO_TCPV4, hdr_len, gso_size, csum_start, csum_offset");
      const q = parse(bytes);
      assert.equal(q.totalLen, 40 + 11 * SEG);
      assert.equal(q.tcpFlags, TCP.ACK | TCP.PSH, "PSH of the last segment kept");
      referenceValid(bytes);
      const body = bytes.subarray(40);
      for (let i = 0; i < body.length; i++) if (body[i] !== ((1000 + i) & 255)) assert.fail(`payload byte ${i}`);
      const lone = e.output(11);
      assert.equal(new DataView(e.memory, slots[11]!.data - 10, 10).getUint8(1), 0, "a lone segment keeps an empty vnet header");
      referenceValid(lone);
    });

    it("a segment with a bad checksum, a gap in the sequence or a SYN is never merged", () => {
      const bad = seg(1000 + SEG); bad[bad.length - 1]! ^= 0xff;
      for (const [what, second] of [["bad checksum", bad], ["gap", seg(1000 + 2 * SEG)], ["SYN", seg(1000 + SEG, { flags: TCP.SYN | TCP.ACK })]] as const) {
        const { merged, slots } = batch([seg(1000), second, seg(5000)]);
        assert.equal(merged, 0, what);
        assert.deepEqual(slots.map((x) => x.verdict), [Verdict.Tun, Verdict.Tun, Verdict.Tun], what);
        assert.equal(new DataView(e.memory, slots[0]!.data - 10, 10).getUint8(1), 0, `${what}: no GSO header`);
      }
    });
  });
});
