// TCP (RFC 793 §3.1), UDP (RFC 768) and ICMP (RFC 792) headers as the core reads and writes them:
// one literal packet each, decoded through its view and written again by its emit function, with
// no tables or pipeline (test/unit/wire/hooks.ts). The literals' checksums are the ones tshark 4.0
// calls good.
import assert from "node:assert/strict";
import { HeaderBench, TCP_FIELDS, UDP_FIELDS, ICMP_FIELDS, hex, toHex } from "./hooks.js";

describe("wire/l4: one literal header each through L4Ports/Tcp/Udp/Icmp and emitTcp/emitUdp/emitIcmp (no tables)", () => {
  const b = new HeaderBench();

  it("TCP: decodes a RST,ACK as tshark does, and emitTcp plus the pseudo-header checksum write the same 20 bytes", () => {
    // Linux's answer to a SYN (seq 0x12345678) at a closed port 80: 10.244.1.6:80 -> 10.244.1.5:40000,
    // seq 0, ack 0x12345679, header 20 bytes, flags RST+ACK (0x014), window 0, checksum 0x92a0 (good).
    const IP = hex("4500 0028 0000 4000 4006 22de 0af4 0106 0af4 0105");
    const TCP = hex("0050 9c40 0000 0000 1234 5679 5014 0000 92a0 0000");
    b.put(b.at, new Uint8Array([...IP, ...TCP]));
    b.hooks.tcpDecodeForTest(b.at + 20, b.out);
    assert.deepEqual(b.fields(TCP_FIELDS), { sport: 80, dport: 40000, seq: 0, ack: 0x12345679, dataOffset: 20, flags: 0x14 });
    b.put(b.scratch, IP);
    b.hooks.tcpEmitForTest(b.scratch, 80, 40000, 0, 0x12345679, 0x14);
    assert.equal(toHex(b.bytes(b.scratch + 20, 20)), toHex(TCP));
  });

  it("UDP: decodes a datagram's header as tshark does, and emitUdp writes the same 8 bytes", () => {
    // 10.244.1.5:40000 -> 10.96.0.10:7, length 12 ("wasp"), checksum 0x625a (good)
    const PACKET = hex("4500 0020 1c46 4000 4011 0825 0af4 0105 0a60 000a" + "9c40 0007 000c 625a" + "7761 7370");
    b.put(b.at, PACKET);
    b.hooks.udpDecodeForTest(b.at + 20, b.out);
    assert.deepEqual(b.fields(UDP_FIELDS), { sport: 40000, dport: 7, length: 12, check: 0x625a });
    b.hooks.udpEmitForTest(b.scratch, 40000, 7, 12, 0x625a);
    assert.equal(toHex(b.bytes(b.scratch, 8)), toHex(PACKET.subarray(20, 28)));
  });

  it("ICMP: decodes an echo request as tshark does, and emitIcmp plus the RFC 792 checksum write the same message", () => {
    // echo request 10.244.1.5 -> 10.244.1.6: type 8, code 0, checksum 0xd9ba (good), identifier
    // 0x1234, sequence 1, 8 bytes of data
    const ICMP = hex("0800 d9ba 1234 0001" + "0001 0203 0405 0607");
    b.put(b.at, new Uint8Array([...hex("4500 0024 0001 0000 4001 62e6 0af4 0105 0af4 0106"), ...ICMP]));
    b.hooks.icmpDecodeForTest(b.at + 20, b.out);
    assert.deepEqual(b.fields(ICMP_FIELDS), { type: 8, code: 0, check: 0xd9ba, rest: 0x12340001, id: 0x1234, seq: 1 });
    b.put(b.scratch + 8, ICMP.subarray(8));   // the data the checksum covers; the header before it is zero
    b.hooks.icmpEmitForTest(b.scratch, 16, 8, 0, 0x12340001);
    assert.equal(toHex(b.bytes(b.scratch, 16)), toHex(ICMP));
  });
});
