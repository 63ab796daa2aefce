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
