// VXLAN (RFC 7348 §5) as the core reads and writes it: one literal header, decoded through the
// Vxlan view and written again by emitVxlan, no tables or pipeline.
import assert from "node:assert/strict";
import { HeaderBench, VXLAN_FIELDS, hex, toHex } from "./hooks.js";

describe("wire/vxlan: one literal header through the Vxlan view and emitVxlan (no tables)", () => {
  // From a frame 192.168.100.1:49152 -> 192.168.100.2:4789 carrying an Ethernet frame with an ICMP
  // echo: tshark 4.0 decodes the VXLAN header as flags 0x0800 (the I flag, RFC 7348's 0x08 in the
  // first byte), VNI 42, reserved fields zero.
  const HEADER = hex("0800 0000 0000 2a00");
  const b = new HeaderBench();

  it("decodes the I flag and VNI 42 as tshark does, and emitVxlan writes the same 8 bytes", () => {
    assert.equal(b.check("vxlanDecodeForTest", 8, HEADER), "None", "checkVxlan");
    assert.deepEqual(b.fields(VXLAN_FIELDS), { flags: 0x08, vni: 42 });
    b.hooks.vxlanEmitForTest(b.scratch, 42);
    assert.equal(toHex(b.bytes(b.scratch, 8)), toHex(HEADER));
  });

  it("checkVxlan calls a header without the I flag, and 7 bytes, BadVxlan (RFC 7348: I must be set)", () => {
    assert.equal(b.check("vxlanDecodeForTest", 8, hex("0000 0000 0000 2a00")), "BadVxlan", "no I flag");
    assert.equal(b.check("vxlanDecodeForTest", 7, HEADER), "BadVxlan", "7 bytes");
  });
});
