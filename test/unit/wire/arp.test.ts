// ARP for IPv4 over Ethernet (RFC 826) as the core answers it in TAP mode: a literal request decoded
// through the Arp view and turned into its reply by emitArpReply, no tables or pipeline.
import assert from "node:assert/strict";
import { HeaderBench, ARP_FIELDS, hex, toHex } from "./hooks.js";

describe("wire/arp: a literal request through the Arp view, answered by emitArpReply (no tables)", () => {
  // QEMU user networking's exchange: the guest 10.0.2.15 (52:54:00:12:34:56) asks for its gateway
  // 10.0.2.2, which answers from 52:55:0a:00:02:02. tshark 4.0 decodes the request as hardware type
  // 1, protocol 0x0800, sizes 6 and 4, opcode 1, sender 52:54:00:12:34:56 10.0.2.15, target
  // 00:00:00:00:00:00 10.0.2.2, and the reply as opcode 2, sender 52:55:0a:00:02:02 10.0.2.2,
  // target 52:54:00:12:34:56 10.0.2.15.
  const REQUEST = hex("0001 0800 06 04 0001 5254 0012 3456 0a00 020f 0000 0000 0000 0a00 0202");
  const REPLY = hex("0001 0800 06 04 0002 5255 0a00 0202 0a00 0202 5254 0012 3456 0a00 020f");
  const GATEWAY_MAC = hex("5255 0a00 0202");
  const b = new HeaderBench();

  it("decodes the request as tshark does", () => {
    assert.equal(b.check("arpDecodeForTest", 28, REQUEST), "None", "checkArp");
    const f = b.fields(ARP_FIELDS);
    assert.deepEqual(f, { oper: 1, senderIp: 0x0a00020f, targetIp: 0x0a000202, senderMac: 8, targetMac: 18 });
    assert.deepEqual([toHex(b.bytes(b.at + f.senderMac, 6)), toHex(b.bytes(b.at + f.targetMac, 6))], ["525400123456", "000000000000"]);
  });

  it("emitArpReply turns the request into the gateway's literal reply, byte for byte, which decodes as opcode 2", () => {
    b.put(b.at, REQUEST);
    b.put(b.scratch, GATEWAY_MAC);
    b.hooks.arpReplyForTest(b.at, b.scratch);
    assert.equal(toHex(b.bytes(b.at, 28)), toHex(REPLY));
    assert.equal(b.check("arpDecodeForTest", 28), "None", "checkArp");
    assert.deepEqual(b.fields(ARP_FIELDS), { oper: 2, senderIp: 0x0a000202, targetIp: 0x0a00020f, senderMac: 8, targetMac: 18 });
  });

  it("checkArp calls 27 bytes, a hardware size of 8 and a protocol other than IPv4 BadArp", () => {
    assert.equal(b.check("arpDecodeForTest", 27, REQUEST), "BadArp", "27 bytes");
    const hw8 = REQUEST.slice(); hw8[4] = 8;
    assert.equal(b.check("arpDecodeForTest", 28, hw8), "BadArp", "hardware size 8");
    const v6 = REQUEST.slice(); v6[2] = 0x86; v6[3] = 0xdd;
    assert.equal(b.check("arpDecodeForTest", 28, v6), "BadArp", "protocol 0x86dd");
  });
});
