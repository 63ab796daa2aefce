// The packet path must never allocate or abort: the core is built with the stub runtime and must not
// call into it, nor import anything (an `abort` import means some path can trap with a message).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const wat = readFileSync(new URL("../../build/wasp.wat", import.meta.url), "utf8");
const wasm = readFileSync(new URL("../../build/wasp.wasm", import.meta.url));

describe("no allocation in the core (build/wasp.wat)", () => {
  for (const name of ["__new", "__alloc", "__renew", "__realloc", "__pin", "__collect"]) {
    it(`the compiled text mentions no ${name}`, () => {
      assert.equal(wat.includes(name), false, `${name} appears in build/wasp.wat`);
    });
  }

  it("the module imports nothing (no abort, no trace, no env)", () => {
    assert.doesNotMatch(wat, /\(import /);
    assert.deepEqual(WebAssembly.Module.imports(new WebAssembly.Module(wasm)), []);
  });

  it("the module's exports are functions and one memory (no runtime helpers)", () => {
    const ex = WebAssembly.Module.exports(new WebAssembly.Module(wasm));
    assert.deepEqual(ex.filter((x) => x.kind === "memory").map((x) => x.name), ["memory"]);
    assert.equal(ex.some((x) => /^__/.test(x.name)), false, ex.map((x) => x.name).join(","));
  });
});
