// SCTP (RFC 9260 §3.1) as the core reads it, and its checksum, CRC32c (RFC 9260 Appendix A), with no
// tables or pipeline (test/unit/wire/hooks.ts). Expectations: the CRC32c test vectors of RFC 3720
// B.4, a literal INIT whose checksum tshark calls good, and a bitwise CRC32c written here apart from
// the core's table-driven one.
import assert from "node:assert/strict";
import { HeaderBench, hex } from "./hooks.js";
import { dissect, CHECKSUM_GOOD, CHECKSUM_BAD } from "../../helpers/tshark.js";

interface SctpHooks {
  crc32cForTest(p: number, len: number): number;
  sctpDecodeForTest(p: number, len: number, out: number): number;
  sctpSetPortForTest(p: number, len: number, off: number, to: number): void;
}
const SCTP_FIELDS = ["sport", "dport", "vtag", "check", "wanted"] as const;

/** CRC32c bit by bit (reflected polynomial 0x82f63b78, RFC 9260 Appendix A): the tests' own. */
function crc32cBitwise(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** The SCTP packet's checksum field set to the CRC32c of the packet with the field zeroed, least significant byte first. */
function withChecksum(sctp: Uint8Array): Uint8Array {
  const out = sctp.slice();
  out.fill(0, 8, 12);
  new DataView(out.buffer).setUint32(8, crc32cBitwise(out), true);
  return out;
}

const SCTP_CHECK = ["-o", "sctp.checksum:CRC 32c"];

describe("wire/sctp: the common header and CRC32c (no tables)", () => {
  const b = new HeaderBench();
  const h = b.hooks as unknown as SctpHooks;

  it("CRC32c gives RFC 3720 B.4's values: 32 zero bytes 0x8a9136aa, 32 x 0xff 0x62a8ab43, 0..31 0x46dd794e, 31..0 0x113fdb5c; \"123456789\" 0xe3069283", () => {
    const cases: Array<[Uint8Array, number]> = [
      [new Uint8Array(32), 0x8a9136aa], [new Uint8Array(32).fill(0xff), 0x62a8ab43],
      [Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e], [Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
      [new TextEncoder().encode("123456789"), 0xe3069283],
    ];
    for (const [data, want] of cases) {
      b.put(b.scratch, data);
      assert.equal(h.crc32cForTest(b.scratch, data.length) >>> 0, want, Buffer.from(data).toString("hex"));
      assert.equal(crc32cBitwise(data), want, "the tests' own CRC32c agrees");
    }
  });

  it("the table-driven CRC equals the bitwise one at every length 0-100 and every alignment (slicing by 8, then bytes)", () => {
    const data = Uint8Array.from({ length: 108 }, (_, i) => (i * 73 + 11) & 0xff);
    for (let off = 0; off < 8; off++) {
      for (let len = 0; len <= 100; len++) {
        b.put(b.scratch + off, data.subarray(0, len));
        assert.equal(h.crc32cForTest(b.scratch + off, len) >>> 0, crc32cBitwise(data.subarray(0, len)), `offset ${off}, ${len} bytes`);
      }
    }
  });

  it("decodes an INIT 10.244.1.5:40000 -> 10.96.0.20:9000 as tshark does: ports, vtag 0, the checksum it carries is the one it should", () => {
    const PACKET = hex("4500 0034 0001 4000 4084 23d9 0af4 0105 0a60 0014" +
      "9c40 2328 0000 0000 4046 9f92" + "0100 0014 1122 3344 0001 a000 000a ffff 0102 0304");
    const [t] = dissect([PACKET], undefined, SCTP_CHECK);
    assert.deepEqual([t!.get("sctp.srcport"), t!.get("sctp.dstport"), t!.get("sctp.checksum.status")], ["40000", "9000", CHECKSUM_GOOD]);
    b.put(b.at, PACKET);
    assert.equal(h.sctpDecodeForTest(b.at + 20, 32, b.out), 0);
    const f = b.fields(SCTP_FIELDS as unknown as readonly string[]);
    assert.deepEqual([f["sport"], f["dport"], f["vtag"]], [40000, 9000, 0]);
    assert.equal(f["check"], f["wanted"], "the stored checksum is the computed one");
    assert.equal(h.sctpDecodeForTest(b.at + 20, 11, b.out), 1, "11 bytes: TooShort");
  });

  it("a new port patches the checksum to what a full CRC32c gives, for either port, many lengths, and tshark calls the result good", () => {
    const packets: Uint8Array[] = [];
    for (const len of [12, 13, 32, 100, 1024, 1452]) {
      for (const off of [0, 2]) {
        const sctp = withChecksum(Uint8Array.from({ length: len }, (_, i) => (i < 4 ? [0x9c, 0x40, 0x23, 0x28][i]! : (i * 31 + len) & 0xff)));
        b.put(b.scratch, sctp);
        h.sctpSetPortForTest(b.scratch, len, off, 8080);
        const got = b.bytes(b.scratch, len);
        const want = sctp.slice(); want[off] = 0x1f; want[off + 1] = 0x90;
        assert.equal(Buffer.from(got).toString("hex"), Buffer.from(withChecksum(want)).toString("hex"), `${len} bytes, port at ${off}`);
        if (len >= 16) packets.push(ipv4(got));
      }
    }
    for (const t of dissect(packets, undefined, SCTP_CHECK)) assert.equal(t.get("sctp.checksum.status"), CHECKSUM_GOOD);
  });

  it("a packet that came with a wrong checksum still has a wrong one after the port is patched (as RFC 1624 keeps an Internet checksum's error)", () => {
    const sctp = withChecksum(hex("9c40 2328 0000 0000 0000 0000" + "0100 0014 1122 3344 0001 a000 000a ffff 0102 0304"));
    sctp[8]! ^= 0x01;
    b.put(b.scratch, sctp);
    h.sctpSetPortForTest(b.scratch, sctp.length, 2, 8080);
    const [t] = dissect([ipv4(b.bytes(b.scratch, sctp.length))], undefined, SCTP_CHECK);
    assert.equal(t!.get("sctp.checksum.status"), CHECKSUM_BAD);
  });
});

/** An IPv4 header (10.244.1.5 -> 10.244.1.10, protocol 132, valid header checksum) before `sctp`. */
function ipv4(sctp: Uint8Array): Uint8Array {
  const p = new Uint8Array(20 + sctp.length), v = new DataView(p.buffer);
  p.set([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 132, 0, 0, 10, 244, 1, 5, 10, 244, 1, 10]);
  v.setUint16(2, p.length);
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += v.getUint16(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  v.setUint16(10, ~s & 0xffff);
  p.set(sctp, 20);
  return p;
}
