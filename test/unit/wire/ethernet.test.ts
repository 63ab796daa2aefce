// Ethernet II (IEEE 802.3) as the core reads and writes it in TAP mode: one literal frame header,
// decoded through the Ethernet view and written again by emitEthernet, no tables or pipeline.
import assert from "node:assert/strict";
import { HeaderBench, ETHERNET_FIELDS, hex, toHex } from "./hooks.js";

describe("wire/ethernet: one literal header through the Ethernet view and emitEthernet (no tables)", () => {
  // The broadcast frame of an ARP request from 52:54:00:12:34:56 (QEMU's default guest MAC); tshark
  // 4.0 decodes destination ff:ff:ff:ff:ff:ff, source 52:54:00:12:34:56, type 0x0806 (ARP).
  const HEADER = hex("ffff ffff ffff 5254 0012 3456 0806");
  const b = new HeaderBench();

  it("decodes destination, source and type as tshark does, and emitEthernet writes the same 14 bytes", () => {
    assert.equal(b.check("ethernetDecodeForTest", 14, HEADER), "None", "checkEthernet");
    const f = b.fields(ETHERNET_FIELDS);
    assert.deepEqual(f, { dst: 0, src: 6, type: 0x0806 });
    assert.deepEqual([toHex(b.bytes(b.at + f.dst, 6)), toHex(b.bytes(b.at + f.src, 6))], ["ffffffffffff", "525400123456"]);
    b.put(b.scratch + 64, HEADER.subarray(0, 12));   // the two MACs for the emit
    b.hooks.ethernetEmitForTest(b.scratch, b.scratch + 64, b.scratch + 70, 0x0806);
    assert.equal(toHex(b.bytes(b.scratch, 14)), toHex(HEADER));
  });

  it("checkEthernet calls 13 bytes BadEthernet", () => {
    assert.equal(b.check("ethernetDecodeForTest", 13), "BadEthernet");
  });
});
