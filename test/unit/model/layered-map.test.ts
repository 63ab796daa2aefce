import assert from "node:assert/strict";
import { LayeredMap } from "../../../src/model/layered-map.js";

describe("LayeredMap", () => {
  it("reads, sizes and iterates as a plain Map given the same sets and deletes, across folds of its layer, and leaves earlier versions as they were", () => {
    let seed = 7;
    const rand = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const plain = new Map<number, string>();
    for (let k = 0; k < 500; k++) plain.set(k, `v${k}`);
    let layered = LayeredMap.of(plain as ReadonlyMap<number, string>);
    const expected = new Map(plain);
    const versions: Array<[LayeredMap<number, string>, Map<number, string>]> = [];
    for (let round = 0; round < 300; round++) {
      const set: Array<[number, string]> = [], deleted: number[] = [];
      for (let j = rand(6); j > 0; j--) set.push([rand(700), `r${round}`]);
      for (let j = rand(6); j > 0; j--) deleted.push(rand(700));
      layered = layered.with(set, deleted);
      for (const k of deleted) expected.delete(k);
      for (const [k, v] of set) expected.set(k, v);
      versions.push([layered, new Map(expected)]);
    }
    for (const [version, want] of versions) {
      assert.equal(version.size, want.size, "size counts the keys present");
      assert.deepEqual(new Map(version), want, "iteration gives every key present with its value, once");
      for (let k = 0; k < 700; k++) {
        assert.equal(version.get(k), want.get(k), `get(${k})`);
        assert.equal(version.has(k), want.has(k), `has(${k})`);
      }
    }
  });

  it("keeps the base's order for keys it had and puts new keys last, as a Map keeps insertion order", () => {
    const m = LayeredMap.of(new Map([["a", 1], ["b", 2], ["c", 3]])).with([["b", 20], ["d", 4]], ["a"]);
    assert.deepEqual([...m.keys()], ["b", "c", "d"]);
    assert.deepEqual([...m.values()], [20, 3, 4]);
  });
});
