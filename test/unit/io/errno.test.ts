import { strict as assert } from "node:assert";
import { constants } from "node:os";
import { errnoCode, errnoWords, ioError, IoError } from "../../../src/io/index.js";
import { rfc1071 } from "../../helpers/packets.js";

describe("io/errno", () => {
  it("names Linux errno numbers as the kernel does (2 ENOENT, 16 EBUSY, 1 EPERM)", () => {
    assert.equal(errnoCode(2), "ENOENT");
    assert.equal(errnoCode(-16), "EBUSY");
    assert.equal(errnoCode(constants.errno.EPERM), "EPERM");
  });

  it("says an unknown errno as its number instead of failing", () => {
    assert.equal(errnoCode(4242), "E4242");
    assert.equal(errnoWords(4242), "error E4242");
  });

  it("builds the sentence: problem, thing, errno in words, then the fix", () => {
    const e = ioError("cannot open /dev/net/tun", 2, "Load the module: modprobe tun");
    assert.ok(e instanceof IoError && e instanceof Error, "an IoError, which is an Error");
    assert.equal(e.message, "cannot open /dev/net/tun: no such file (ENOENT). Load the module: modprobe tun");
    assert.equal(e.code, "ENOENT");
    assert.equal(e.errno, 2);
  });

  it("has words for every errno a device or socket open reports", () => {
    for (const code of ["EPERM", "ENOENT", "EBUSY", "EINVAL", "EADDRINUSE", "EADDRNOTAVAIL", "ENOBUFS", "EAGAIN"]) {
      assert.doesNotMatch(errnoWords(code), /^error /, code);
    }
  });
});

describe("test helper rfc1071", () => {
  it("matches the RFC 1071 §3 example (00 01 f2 03 f4 f5 f6 f7 sums to ddf2)", () => {
    assert.equal(rfc1071(Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])), ~0xddf2 & 0xffff);
  });
});
