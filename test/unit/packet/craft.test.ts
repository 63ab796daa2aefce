// The host's crafted packets (trace, the offline demo): headers and checksums as the RFC 1071
// reference (test/helpers/packets.ts) and tshark read them.
import { strict as assert } from "node:assert";
import { craftPacket, withEthernet, withVxlan, type CraftProto } from "../../../src/packet/craft.js";
import { inetChecksum } from "../../../src/packet/checksum.js";
import { checksumsOk } from "../../helpers/packets.js";
import { dissect, CHECKSUM_GOOD } from "../../helpers/tshark.js";

const c = (src: string, dst: string, proto: CraftProto, sport: number, dport: number) =>
  craftPacket({ src, dst, proto, sport, dport, payload: new TextEncoder().encode("wasp trace") });

describe("packet/craft", () => {
    it("TCP SYN, UDP and ICMP echo, IPv4 and IPv6: headers and checksums right by the RFC 1071 reference and by tshark", () => {
      const cases = [
        c("10.244.1.5", "10.96.0.10", "tcp", 40000, 80), c("10.244.1.5", "10.96.0.10", "udp", 40000, 53),
        c("10.244.1.5", "10.96.0.10", "icmp", 0, 0), c("fd00::5", "fd00:96::a", "tcp", 40000, 80),
        c("fd00::5", "fd00:96::a", "udp", 40000, 53), c("fd00::5", "fd00:96::a", "icmp", 0, 0),
      ];
      for (const p of cases) assert.ok(checksumsOk(p), Buffer.from(p).toString("hex"));
      const d = dissect(cases);
      assert.equal(d[0]!.get("tcp.flags.syn"), "1");
      assert.equal(d[0]!.get("tcp.dstport"), "80");
      assert.equal(d[0]!.get("ip.ttl"), "63");
      assert.equal(d[0]!.get("ip.checksum.status"), CHECKSUM_GOOD);
      assert.equal(d[1]!.get("udp.checksum.status"), CHECKSUM_GOOD);
      assert.equal(d[2]!.get("icmp.type"), "8");
      assert.equal(d[2]!.get("icmp.checksum.status"), CHECKSUM_GOOD);
      assert.equal(d[3]!.get("ipv6.dst"), "fd00:96::a");
      assert.equal(d[3]!.get("tcp.checksum.status"), CHECKSUM_GOOD);
      assert.equal(d[5]!.get("icmpv6.type"), "128");
      assert.equal(d[5]!.get("icmpv6.checksum.status"), CHECKSUM_GOOD);
    });


  it("the checksum of RFC 1071's example words is 0x220d (§3: sum 0xddf2, complemented)", () => {
    assert.equal(inetChecksum(Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7)), 0x220d);
  });

  it("a TCP segment with ACK set carries the flags asked for and an acknowledgment number", () => {
    const p = craftPacket({ src: "10.244.1.5", dst: "10.244.1.9", proto: "tcp", sport: 1, dport: 2, tcpFlags: 0x10 });
    const d = dissect([p])[0]!;
    assert.equal(d.get("tcp.flags.ack"), "1", "ACK");
    assert.equal(d.get("tcp.flags.syn"), "0", "no SYN");
    assert.equal(d.get("tcp.checksum.status"), CHECKSUM_GOOD);
  });

  it("refuses addresses of two families, naming them", () => {
    assert.throws(() => craftPacket({ src: "10.0.0.1", dst: "fd00::1", proto: "udp" }), /10\.0\.0\.1 -> fd00::1/);
  });

  it("withEthernet and withVxlan put RFC 894 / RFC 7348 §5 headers in front (EtherType by IP version, the I flag, the VNI)", () => {
    const p = c("fd00::5", "fd00:96::a", "udp", 1, 2);
    const f = withEthernet(p, Uint8Array.of(2, 0, 0, 0, 0, 1), Uint8Array.of(2, 0, 0, 0, 0, 2));
    assert.deepEqual([...f.subarray(0, 14)], [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd]);
    const v = withVxlan(0x123456, f);
    assert.deepEqual([...v.subarray(0, 8)], [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    assert.equal(v.length, 8 + f.length);
  });
});
