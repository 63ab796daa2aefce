// TAP mode: the core is the gateway on an Ethernet link. It answers every ARP request (RFC 826) with
// its own MAC and frames what it routes to the TAP device's MAC.
import assert from "node:assert/strict";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, runOne, expectVerdict, tsharkValid, Verdict, Drop, SlotFlag } from "./setup.js";
import { LINKTYPE_ETHERNET } from "../../helpers/pcap.js";
import { Note } from "../../../src/engine/index.js";

const ENGINE_MAC = "02:77:61:73:70:01", PEER_MAC = "02:00:00:00:00:02", POD_MAC = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05];

function arpRequest(senderIp: number[], targetIp: number[]): Uint8Array {
  const f = new Uint8Array(42);
  f.set([255, 255, 255, 255, 255, 255], 0); f.set(POD_MAC, 6); f[12] = 0x08; f[13] = 0x06;
  f.set([0, 1, 0x08, 0x00, 6, 4, 0, 1], 14);
  f.set(POD_MAC, 22); f.set(senderIp, 28); f.set([0, 0, 0, 0, 0, 0], 32); f.set(targetIp, 38);
  return f;
}

function frame(ip: Uint8Array, type = 0x0800): Uint8Array {
  const f = new Uint8Array(14 + ip.length);
  f.set([0x02, 0x77, 0x61, 0x73, 0x70, 0x01], 0); f.set(POD_MAC, 6); f[12] = type >> 8; f[13] = type & 255;
  f.set(ip, 14);
  return f;
}

describe("pipeline: TAP mode", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => {
    e = newEngine({ mode: "tap", engineMac: ENGINE_MAC, tapPeerMac: PEER_MAC });
    commit(e, clusterRoutes().service({ vip: "10.96.0.10", port: 80, proto: "tcp", id: 1, backends: [{ ip: "10.244.1.10", port: 8080 }] }));
  });

  for (const target of [[10, 244, 1, 1], [10, 244, 1, 77], [8, 8, 8, 8]]) {
    it(`answers an ARP request for ${target.join(".")} with a reply from the engine MAC (tshark: opcode 2)`, () => {
      const o = runOne(e, arpRequest([10, 244, 1, 5], target), 100, SlotFlag.ETHERNET);
      expectVerdict(o, Verdict.Tun);
      assert.ok(o.slot.note & Note.ARP_ANSWERED, "Note.ARP_ANSWERED set");
      assert.equal(o.bytes.length, 42);
      const [d] = tsharkValid([o.bytes], LINKTYPE_ETHERNET);
      assert.equal(d!.get("arp.opcode"), "2");
      assert.equal(d!.get("arp.src.proto_ipv4"), target.join("."), "sender = the address asked for");
      assert.equal(d!.get("arp.src.hw_mac"), ENGINE_MAC);
      assert.equal(d!.get("arp.dst.proto_ipv4"), "10.244.1.5");
      assert.equal(d!.get("arp.dst.hw_mac"), "0a:58:0a:f4:01:05");
      assert.equal(d!.get("eth.dst"), "0a:58:0a:f4:01:05");
      assert.equal(d!.get("eth.src"), ENGINE_MAC);
    });
  }

  it("does not answer an ARP probe (sender IP 0.0.0.0, RFC 5227 §2.1.1): any reply would be taken as an address conflict", () => {
    const o = runOne(e, arpRequest([0, 0, 0, 0], [10, 244, 1, 5]), 100, SlotFlag.ETHERNET);
    assert.equal(o.slot.verdict, Verdict.Drop);
    assert.equal(o.slot.note & Note.ARP_ANSWERED, 0);
  });

  it("does not answer a gratuitous ARP announcement (sender IP = target IP, RFC 5227 §2.3) with its own MAC", () => {
    const o = runOne(e, arpRequest([10, 244, 1, 5], [10, 244, 1, 5]), 100, SlotFlag.ETHERNET);
    assert.equal(o.slot.verdict, Verdict.Drop);
    assert.equal(o.slot.note & Note.ARP_ANSWERED, 0);
  });

  it("drops an ARP reply (only requests are answered) and a truncated ARP as BadArp", () => {
    const r = arpRequest([10, 244, 1, 5], [10, 244, 1, 1]); r[21] = 2;
    expectVerdict(runOne(e, r, 100, SlotFlag.ETHERNET), Verdict.Drop, Drop.BadArp);
    expectVerdict(runOne(e, arpRequest([10, 244, 1, 5], [10, 244, 1, 1]).subarray(0, 30).slice(), 100, SlotFlag.ETHERNET), Verdict.Drop, Drop.BadArp);
  });

  it("routes an IPv4 frame and frames it to the TAP peer MAC from the engine MAC", () => {
    const ip = packet({ src: "10.244.1.5", dst: "10.244.1.9" }, { proto: "udp", sport: 1, dport: 2 });
    const o = runOne(e, frame(ip), 100, SlotFlag.ETHERNET);
    expectVerdict(o, Verdict.Tun);
    assert.equal(o.bytes.length, 14 + ip.length);
    const [d] = tsharkValid([o.bytes], LINKTYPE_ETHERNET);
    assert.equal(d!.get("eth.dst"), PEER_MAC);
    assert.equal(d!.get("eth.src"), ENGINE_MAC);
    assert.equal(d!.get("ip.dst"), "10.244.1.9");
    assert.equal(d!.get("ip.ttl"), "63");
  });

  it("DNATs a framed SYN to a VIP and frames the result", () => {
    const o = runOne(e, frame(packet({ src: "10.244.1.5", dst: "10.96.0.10" }, { proto: "tcp", sport: 4000, dport: 80, flags: TCP.SYN })), 100, SlotFlag.ETHERNET);
    expectVerdict(o, Verdict.Tun);
    const q = parse(o.bytes.subarray(14));
    assert.deepEqual([q.dst, q.dport], ["10.244.1.10", 8080]);
    const [d] = tsharkValid([o.bytes], LINKTYPE_ETHERNET);
    assert.equal(d!.get("eth.dst"), PEER_MAC);
  });

  it("drops an unknown EtherType and a frame shorter than 14 bytes as BadEthernet", () => {
    expectVerdict(runOne(e, frame(new Uint8Array(30), 0x88cc), 100, SlotFlag.ETHERNET), Verdict.Drop, Drop.BadEthernet);
    expectVerdict(runOne(e, new Uint8Array(10), 100, SlotFlag.ETHERNET), Verdict.Drop, Drop.BadEthernet);
  });

  it("an answer the core makes (port unreachable) is framed to the peer MAC and verifies", () => {
    const o = runOne(e, frame(packet({ src: "10.244.1.5", dst: "10.96.0.99" }, { proto: "udp", sport: 1, dport: 2 })), 100, SlotFlag.ETHERNET);
    expectVerdict(o, Verdict.Tun, Drop.NoService);
    const [d] = tsharkValid([o.bytes], LINKTYPE_ETHERNET);
    assert.equal(d!.get("eth.dst"), PEER_MAC);
    assert.deepEqual([d!.get("icmp.type"), d!.get("icmp.code")], ["3", "3"]);
  });

  it("traffic to a remote pod leaves as VXLAN without an extra Ethernet header", () => {
    const ip = packet({ src: "10.244.1.5", dst: "10.244.2.9" }, { proto: "udp", sport: 1, dport: 2 });
    const o = runOne(e, frame(ip), 100, SlotFlag.ETHERNET);
    expectVerdict(o, Verdict.Overlay);
    assert.equal(o.bytes.length, ip.length + 50);
    assert.equal(o.bytes[0], 0x45);
    tsharkValid([o.bytes]);
  });
});
