// src/io/native.ts and the addon share one more layout besides the slot: the Int32Array in which
// writeBatch and sendBatch report their drops. Its field numbers must be those of
// native/src/drops.h, or a full queue would read as a tunnel refusal.
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { DROP_FIELDS, DropField } from "../../../src/io/native.js";

const header = readFileSync(new URL("../../../native/src/drops.h", import.meta.url), "utf8")
  .replace(/\/\/.*$/gm, "");

describe("io/native: the drop report (src/io/native.ts = native/src/drops.h)", () => {
  it("DropField has the same members with the same numbers in both, and DROP_FIELDS counts them", () => {
    const body = /enum class DropField : uint32_t \{([^}]*)\}/.exec(header);
    assert.ok(body, "enum class DropField in native/src/drops.h");
    const cpp = Object.fromEntries([...body[1]!.matchAll(/(\w+)\s*=\s*(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
    const ts = Object.fromEntries(Object.entries(DropField).filter(([k]) => Number.isNaN(Number(k))));
    assert.ok(Object.keys(cpp).length >= 3, `members found in drops.h: ${Object.keys(cpp).join(", ")}`);
    assert.deepEqual(ts, cpp);
    const fields = /constexpr uint32_t DROP_FIELDS = (\d+);/.exec(header);
    assert.equal(Number(fields?.[1]), DROP_FIELDS, "DROP_FIELDS in drops.h");
    assert.equal(DROP_FIELDS, Object.keys(cpp).length, "DROP_FIELDS is the number of fields");
  });
});
