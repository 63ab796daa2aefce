import { strict as assert } from "node:assert";
import { BlockList } from "node:net";
import fc from "fast-check";
import {
  canonicalCidr, canonicalIp, cidrContains, cidrsOverlap, formatIp, ipv4ToU32, isV4Mapped, mappedPrefixLen, parseCidr, parseIp,
  readAddr16, writeAddr16, type Cidr,
} from "../../../src/model/addr.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("model/addr", () => {
  it("writes an IPv4 address as IPv4-mapped IPv6 (RFC 4291 §2.5.5.2: ::ffff:a.b.c.d)", () => {
    const out = new Uint8Array(20);
    writeAddr16("10.96.0.10", out, 2);
    assert.equal(hex(out), "0000" + "00000000000000000000ffff0a60000a" + "0000");
  });

  it("writes compressed IPv6 forms as their 16 bytes (RFC 4291 §2.2 examples)", () => {
    const cases: Array<[string, string]> = [
      ["2001:DB8:0:0:8:800:200C:417A", "20010db80000000000080800200c417a"],
      ["2001:db8::8:800:200c:417a", "20010db80000000000080800200c417a"],
      ["ff01::101", "ff010000000000000000000000000101"],
      ["::1", "00000000000000000000000000000001"],
      ["::", "00000000000000000000000000000000"],
      ["::13.1.68.3", "0000000000000000000000000d014403"],
      ["::ffff:129.144.52.38", "00000000000000000000ffff81903426"],
      ["fd00:10:244:1::", "fd000010024400010000000000000000"],
    ];
    for (const [text, bytes] of cases) {
      const out = new Uint8Array(16);
      writeAddr16(text, out, 0);
      assert.equal(hex(out), bytes, text);
    }
  });

  it("refuses text that is not an address, and IPv6 zones", () => {
    for (const t of ["", "10.0.0.256", "1.2.3", "::g", "fe80::1%eth0", "10.0.0.1/24", " 10.0.0.1"]) assert.equal(parseIp(t), undefined, t);
    assert.throws(() => writeAddr16("nope", new Uint8Array(16), 0), /not an IPv4 or IPv6 address/);
  });

  it("formats IPv6 as RFC 5952 §4 does: lowercase, no leading zeros, longest zero run compressed", () => {
    assert.equal(canonicalIp("2001:0DB8:0000:0000:0000:0000:0000:0001"), "2001:db8::1");
    assert.equal(canonicalIp("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1"); // §4.2.3: the first of equal runs
    assert.equal(canonicalIp("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1"); // §4.2.2: one zero group stays
    assert.equal(canonicalIp("::ffff:10.0.0.1"), "::ffff:10.0.0.1");
  });

  it("formats IPv6 as the WHATWG URL parser serializes it, on random addresses", () => {
    const group = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), (groups) => {
      const text = groups.map((g) => g.toString(16)).join(":");
      const ip = parseIp(text);
      assert.ok(ip, `${text} parses`);
      fc.pre(!isV4Mapped(ip)); // URL prints a mapped address in hex groups, RFC 5952 §5 in dotted form
      assert.equal(`[${formatIp(ip)}]`, new URL(`http://[${text}]/`).hostname);
      assert.equal(formatIp(parseIp(formatIp(ip)) ?? ip), formatIp(ip));
    }), { seed: 42, numRuns: 500 });
  });

  it("reads 16 bytes back as the same address and family", () => {
    const b = new Uint8Array(16);
    writeAddr16("192.0.2.1", b, 0);
    assert.deepEqual({ f: readAddr16(b, 0).family, t: formatIp(readAddr16(b, 0)) }, { f: 4, t: "192.0.2.1" });
    writeAddr16("2001:db8::1", b, 0);
    assert.deepEqual({ f: readAddr16(b, 0).family, t: formatIp(readAddr16(b, 0)) }, { f: 6, t: "2001:db8::1" });
  });

  it("counts an IPv4 prefix length of 128 for the mapped form: /24 is 120, /0 is 96", () => {
    assert.equal(mappedPrefixLen(parseCidr("10.244.1.0/24") as Cidr), 120);
    assert.equal(mappedPrefixLen(parseCidr("0.0.0.0/0") as Cidr), 96);
    assert.equal(mappedPrefixLen(parseCidr("fd00::/64") as Cidr), 64);
  });

  it("parses CIDRs, flags host bits and refuses bad lengths", () => {
    const c = parseCidr("10.244.1.5/24");
    assert.ok(c, "10.244.1.5/24 parses");
    assert.equal(c.hostBitsSet, true);
    assert.equal(canonicalCidr("10.244.1.5/24"), "10.244.1.0/24");
    assert.equal(parseCidr("10.244.1.0/24")?.hostBitsSet, false);
    assert.equal(canonicalCidr("FD00:10:244:1:0::/64"), "fd00:10:244:1::/64");
    for (const t of ["10.0.0.0/33", "10.0.0.0", "10.0.0.0/", "10.0.0.0/-1", "::/129", "10.0.0.0/1a", "x/8"]) assert.equal(parseCidr(t), undefined, t);
  });

  it("contains() agrees with node:net BlockList on random IPv4 prefixes and addresses", () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((q) => q.join("."));
    fc.assert(fc.property(v4, fc.integer({ min: 0, max: 32 }), v4, (net, len, addr) => {
      const c = parseCidr(`${net}/${len}`) as Cidr;
      const bl = new BlockList();
      bl.addSubnet(net, len, "ipv4");
      assert.equal(cidrContains(c, parseIp(addr)!), bl.check(addr, "ipv4"));
    }), { seed: 7, numRuns: 1000 });
  });

  it("contains() agrees with node:net BlockList on random IPv6 prefixes", () => {
    const v6 = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(":"));
    fc.assert(fc.property(v6, fc.integer({ min: 0, max: 128 }), v6, fc.integer({ min: 0, max: 128 }), (net, len, other, flip) => {
      // Half of the probes share the prefix's first `flip` bits, so both answers occur often.
      const c = parseCidr(`${net}/${len}`) as Cidr;
      const a = parseIp(other)!;
      const probe = new Uint8Array(c.bytes);
      for (let bit = flip; bit < 128; bit++) if ((a.bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) probe[bit >> 3]! |= 1 << (7 - (bit & 7)); else probe[bit >> 3]! &= ~(1 << (7 - (bit & 7)));
      const text = formatIp({ family: 6, bytes: probe });
      const bl = new BlockList();
      bl.addSubnet(net, len, "ipv6");
      assert.equal(cidrContains(c, parseIp(text)!), bl.check(text, "ipv6"), `${net}/${len} ∋ ${text}`);
    }), { seed: 11, numRuns: 1000 });
  });

  it("two prefixes overlap exactly when one holds the other's network address", () => {
    const p = (t: string) => parseCidr(t) as Cidr;
    assert.equal(cidrsOverlap(p("10.244.0.0/16"), p("10.244.1.0/24")), true);
    assert.equal(cidrsOverlap(p("10.244.1.0/24"), p("10.244.0.0/16")), true);
    assert.equal(cidrsOverlap(p("10.244.1.0/24"), p("10.244.2.0/24")), false);
    assert.equal(cidrsOverlap(p("10.244.1.0/25"), p("10.244.1.128/25")), false);
    assert.equal(cidrsOverlap(p("0.0.0.0/0"), p("fd00::/8")), false); // families never overlap
  });

  it("gives an IPv4 address as a host-order u32", () => {
    assert.equal(ipv4ToU32(parseIp("10.99.0.2")!), 0x0a630002);
    assert.equal(ipv4ToU32(parseIp("255.255.255.255")!), 0xffffffff);
  });
});
