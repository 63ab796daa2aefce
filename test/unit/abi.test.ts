// The host's mirror of the ABI (src/engine/abi.ts) must hold the very numbers of assembly/abi.ts:
// a mismatch silently misreads every slot, verdict or counter.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
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

  for (const name of ["Verdict", "Drop", "Op", "ServiceKind", "Select", "RouteKind", "CommitResult", "InitResult", "CtDir", "CtState", "CtClass", "Stage"]) {
    it(`enum ${name}: the same members with the same numbers, both ways`, () => {
      const core = enumMembers(name);
      const mirror = host[name] as Record<string, number | string>;
      assert.ok(core.size > 1 && mirror, name);
      for (const [k, v] of core) assert.equal(mirror[k], v, `${name}.${k}`);
      const mirrorNames = Object.keys(mirror).filter((k) => Number.isNaN(Number(k)));
      assert.deepEqual(mirrorNames.sort(), [...core.keys()].sort(), `${name} members`);
    });
  }

  for (const name of ["SlotFlag", "Note", "ServiceFlag", "FlowFlag"]) {
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

  it("FlowFlag: every flag is one bit of the flags byte and no two flags share a bit", () => {
    const bits = [...nsMembers("FlowFlag").values()];
    for (const b of bits) assert.ok(b > 0 && b < 256 && (b & (b - 1)) === 0, `FlowFlag value ${b} is one bit of a byte`);
    assert.equal(bits.reduce((a, b) => a | b, 0), bits.reduce((a, b) => a + b, 0), "no two FlowFlag values overlap");
  });

  it("the flow record's fields (16-byte addresses, u16 ports, u8 proto/state/cls/flags, u32 rest) fit CT_REC_SIZE without overlap", () => {
    const width = (name: string) => (/_(SRC|DST)$/.test(name) ? 16 : /PORT$/.test(name) ? 2 : /^CT_(PROTO|STATE|CLS|FLAGS)$/.test(name) ? 1 : 4);
    const fields = [...constants()].filter(([k]) => k.startsWith("CT_") && !/^CT_(REC_SIZE|CLASS_COUNT|TIMEOUT_)/.test(k));
    assert.ok(fields.length >= 18, `found ${fields.length} record fields`);
    const used = new Array<string | undefined>(abi.CT_REC_SIZE);
    for (const [name, off] of fields) {
      assert.ok(off % Math.min(width(name), 4) === 0, `${name} at ${off} is aligned`);
      for (let i = off; i < off + width(name); i++) {
        assert.ok(i < abi.CT_REC_SIZE, `${name} ends inside the record`);
        assert.equal(used[i], undefined, `byte ${i} belongs to ${used[i]} and ${name}`);
        used[i] = name;
      }
    }
  });

  it("CT_TIMEOUT_SEC holds, at each CtClass number, that class's CT_TIMEOUT_<CLASS>_SEC, for all CT_CLASS_COUNT classes", () => {
    const classes = enumMembers("CtClass"), c = constants();
    const snake = (k: string) => k.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
    assert.equal(classes.size, abi.CT_CLASS_COUNT, "CtClass members");
    assert.equal(abi.CT_TIMEOUT_SEC.length, abi.CT_CLASS_COUNT, "CT_TIMEOUT_SEC entries");
    for (const [k, v] of classes) assert.equal(abi.CT_TIMEOUT_SEC[v], c.get(`CT_TIMEOUT_${snake(k)}_SEC`), `CtClass.${k}`);
    const timeouts = [...c.keys()].filter((k) => /^CT_TIMEOUT_\w+_SEC$/.test(k));
    assert.deepEqual(timeouts.sort(), [...classes.keys()].map((k) => `CT_TIMEOUT_${snake(k)}_SEC`).sort(), "one timeout per class, no other");
  });

  it("CT_STATE_NAMES names every CtState and nothing else; STAGE_NAMES every Stage, in lower case", () => {
    assert.deepEqual(Object.keys(abi.CT_STATE_NAMES).map(Number).sort((a, b) => a - b), [...enumMembers("CtState").values()].sort((a, b) => a - b));
    assert.equal(new Set(Object.values(abi.CT_STATE_NAMES)).size, enumMembers("CtState").size, "state names are distinct");
    assert.deepEqual(abi.STAGE_NAMES, Object.fromEntries([...enumMembers("Stage")].map(([k, v]) => [v, k.toLowerCase()])));
  });

  it("the trace and service stats records fit their strides (TRACE_BYTES, STATS_STRIDE)", () => {
    assert.equal(abi.TRACE_BYTES, abi.TRACE_RECORDS + abi.TRACE_MAX_RECORDS * abi.TRACE_REC_SIZE);
    assert.deepEqual([abi.TRACE_STAGE, abi.TRACE_A, abi.TRACE_B, abi.TRACE_SLOT, abi.TRACE_REC_SIZE], [0, 4, 8, 12, 16], "four u32 a record");
    assert.deepEqual([abi.STATS_PACKETS, abi.STATS_BYTES, abi.STATS_NEW_FLOWS, abi.STATS_STRIDE], [0, 8, 16, 24]);
  });

  it("no other core file declares a layout of its own (CT_*, TRACE_*, STATS_* constants, FlowFlag, record offsets)", () => {
    const files = readdirSync(new URL("../../assembly/", import.meta.url), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts") && f !== "abi.ts");
    assert.ok(files.length > 10, `found ${files.length} core files`);
    for (const f of files) {
      const text = readFileSync(new URL(`../../assembly/${f}`, import.meta.url), "utf8");
      assert.doesNotMatch(text, /\b(const|let) (CT_\w+|TRACE_\w+|STATS_\w+|REC|F_SRC|STAT|PARSE|TIMEOUTS)\s*(:\s*\w+\s*)?=\s*\d|namespace (FlowFlag|Tcp)\b|enum (CtState|CtClass|Stage)\b/, `assembly/${f}`);
    }
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
