// The host's mirror of the ABI (src/engine/abi.ts) must hold the very numbers of assembly/abi.ts:
// a mismatch silently misreads every slot, verdict or counter.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as abi from "../../src/engine/abi.js";

const src = readFileSync(new URL("../../assembly/abi.ts", import.meta.url), "utf8");

function constants(): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of src.matchAll(/^export const (\w+): u32 = ([^;]+);/gm)) m.set(x[1]!, evalNum(x[2]!));
  return m;
}
function evalNum(expr: string): number {
  assert.match(expr, /^[\d\s+*x()a-fA-F<]+$/, `a plain number expression: ${expr}`);
  return Function(`return (${expr});`)() as number;
}
function block(kind: "enum" | "namespace", name: string): string {
  const re = kind === "enum" ? new RegExp(`export const enum ${name} \\{([^}]*)\\}`) : new RegExp(`export namespace ${name} \\{([\\s\\S]*?)\\n\\}`);
  const m = re.exec(src);
  assert.ok(m, `${kind} ${name} in assembly/abi.ts`);
  return m[1]!.replace(/\/\*\*?[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
}
function enumMembers(name: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of block("enum", name).matchAll(/(\w+)\s*=\s*(\d+)/g)) m.set(x[1]!, Number(x[2]));
  return m;
}
function nsMembers(name: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of block("namespace", name).matchAll(/export const (\w+): u\d+ = (\d+);/g)) m.set(x[1]!, Number(x[2]));
  return m;
}

describe("ABI mirror (src/engine/abi.ts = assembly/abi.ts)", () => {
  const host = abi as unknown as Record<string, unknown>;

  it("every `export const NAME: u32` of the core has the same value in the host mirror", () => {
    const c = constants();
    assert.ok(c.size >= 50, `found ${c.size} constants`);
    for (const [name, v] of c) assert.equal(host[name], v, name);
  });

  for (const name of ["Verdict", "Drop", "Op", "ServiceKind", "Select", "RouteKind", "CommitResult", "InitResult"]) {
    it(`enum ${name}: the same members with the same numbers, both ways`, () => {
      const core = enumMembers(name);
      const mirror = host[name] as Record<string, number | string>;
      assert.ok(core.size > 1 && mirror, name);
      for (const [k, v] of core) assert.equal(mirror[k], v, `${name}.${k}`);
      const mirrorNames = Object.keys(mirror).filter((k) => Number.isNaN(Number(k)));
      assert.deepEqual(mirrorNames.sort(), [...core.keys()].sort(), `${name} members`);
    });
  }

  for (const name of ["SlotFlag", "Note", "ServiceFlag"]) {
    it(`namespace ${name}: the same flags with the same bits, both ways`, () => {
      const core = nsMembers(name);
      assert.ok(core.size > 1, name);
      assert.deepEqual({ ...(host[name] as object) }, Object.fromEntries(core), name);
    });
  }

  it("Drop numbers are dense 0..DROP_COUNT-1 and Verdict numbers 0..VERDICT_COUNT-1 (counter indexes)", () => {
    assert.deepEqual([...enumMembers("Drop").values()].sort((a, b) => a - b), [...Array(abi.DROP_COUNT).keys()]);
    assert.deepEqual([...enumMembers("Verdict").values()].sort((a, b) => a - b), [...Array(abi.VERDICT_COUNT).keys()]);
    assert.ok(abi.C_DROP_BASE >= abi.VERDICT_COUNT && abi.C_DROP_BASE + abi.DROP_COUNT <= abi.C_BYTES_IN, "counter ranges do not overlap");
  });
});

// The addon reads and writes the same slots in C++: native/src/slot.h must hold the numbers of
// assembly/abi.ts under the same names, or every packet native hands over is misread.
describe("native layout (native/src/slot.h = assembly/abi.ts)", () => {
  const header = readFileSync(new URL("../../native/src/slot.h", import.meta.url), "utf8")
    .replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  const BITS: Record<string, number> = { uint8_t: 8, uint16_t: 16, uint32_t: 32 };

  /** `constexpr TYPE NAME = N[, NAME = N];` in a C++ text, by name: [type, value]. */
  function cppConstants(text: string): Map<string, [string, number]> {
    const m = new Map<string, [string, number]>();
    for (const x of text.matchAll(/constexpr\s+(\w+)\s+([^;]+);/g)) {
      for (const part of x[2]!.split(",")) {
        const d = /^\s*(\w+)\s*=\s*(\d+)\s*$/.exec(part);
        assert.ok(d, `slot.h: "${part.trim()}" is NAME = decimal number`);
        m.set(d[1]!, [x[1]!, Number(d[2])]);
      }
    }
    return m;
  }
  // The innermost namespaces (SlotFlag, Note) hold flags; what is left outside them is the layout.
  const spaces = new Map<string, Map<string, [string, number]>>();
  const layout = cppConstants(header.replace(/namespace (\w+) \{([^{}]*)\}/g, (_, name: string, body: string) => {
    spaces.set(name, cppConstants(body));
    return "";
  }));

  it("every constexpr of the layout is a u32 `export const` of assembly/abi.ts with the same name and value", () => {
    const core = constants();
    assert.ok(layout.size >= 12, `found ${layout.size} layout constants in slot.h`);
    for (const [name, [type, v]] of layout) {
      assert.ok(core.has(name), `slot.h's ${name} is not an export const of assembly/abi.ts`);
      assert.equal(v, core.get(name), name);
      assert.equal(type, "uint32_t", `${name} is a u32 in assembly/abi.ts`);
    }
  });

  it("slot.h names every SLOT_* field of assembly/abi.ts (the whole slot, not just what native reads)", () => {
    const fields = [...constants().keys()].filter((k) => k.startsWith("SLOT_") && k !== "SLOT_PACKET_ROOM");
    assert.deepEqual([...layout.keys()].filter((k) => k.startsWith("SLOT_")).sort(), fields.sort());
  });

  it("namespaces SlotFlag and Note in slot.h hold bits of assembly/abi.ts with the same names, values and widths", () => {
    assert.ok(spaces.has("SlotFlag") && spaces.has("Note"), `namespaces in slot.h: ${[...spaces.keys()].join(", ")}`);
    for (const [ns, members] of spaces) {
      const core = nsMembers(ns);
      assert.ok(members.size > 0, `namespace ${ns} in slot.h is empty`);
      for (const [name, [type, v]] of members) {
        assert.equal(v, core.get(name), `${ns}::${name}`);
        const width = new RegExp(`export namespace ${ns} \\{[\\s\\S]*?export const ${name}: u(\\d+) =`).exec(src);
        assert.equal(BITS[type], Number(width?.[1]), `${ns}::${name} has the width of ${ns}.${name}`);
      }
    }
  });
});
