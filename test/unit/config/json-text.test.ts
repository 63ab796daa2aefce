// A JSON config text re-read through a ServiceCache (src/config/json-text.ts): when it
// differs from the last accepted one only inside the services list, only the services it touches
// are parsed and checked. The answer must be what validating the whole text gives (the full path is
// the reference: JSON.parse and validateConfig), for every edit: services changed, added, removed,
// moved; whitespace; settings; broken JSON; cross-service clashes. The unchanged services keep their
// objects and the config carries its change set.
import assert from "node:assert/strict";
import fc from "fast-check";
import { loadConfigBytesAsync, loadConfigText, loadConfigTextAsync, ServiceCache, type Config } from "../../../src/config/index.js";
import type { ConfigChanges } from "../../../src/config/schema.js";

type Raw = Record<string, unknown> & { services: Array<Record<string, unknown>> };

const NODE = { name: "n1", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" };
function svc(k: number, v = 0): Record<string, unknown> {
  return {
    name: `svc-${k}`, clusterIP: `10.96.${k >> 7}.${(k & 127) + 1}`,
    ports: [{ port: 80, targetPort: 8080 + (v % 3), ...(k % 5 === 0 ? { nodePort: 30000 + (k >> 1) } : {}) }],
    ...(k % 5 === 0 ? { type: "NodePort" } : {}),
    backends: [{ ip: `10.244.1.${2 + ((k + v) % 200)}` }, ...(v % 2 ? [{ ip: `10.244.2.${2 + (k % 200)}` }] : [])],
  };
}
const doc = (services: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}): Raw => ({ node: NODE, serviceCIDR: "10.96.0.0/16", ...extra, services });

/** The reference: the whole text parsed and validated, no cache. */
function reference(text: string): string {
  const r = loadConfigText(text, "c.json");
  return JSON.stringify("config" in r ? { config: r.config } : { problems: r.problems });
}
/** The text through the cache: as a string, or as a file's bytes (loadConfigBytesAsync). */
async function cached(text: string, cache: ServiceCache, asBytes = false): Promise<{ shown: string; config?: Config; changes?: ConfigChanges }> {
  const r = asBytes ? await loadConfigBytesAsync(Buffer.from(text), "c.json", cache) : await loadConfigTextAsync(text, "c.json", cache);
  if (!("config" in r)) return { shown: JSON.stringify({ problems: r.problems }) };
  return { shown: JSON.stringify({ config: r.config }), config: r.config, ...(r.changes && { changes: r.changes }) };
}

/** The services a change set says, applied to `since`: the new config's services, as a set. */
function applied(ch: ConfigChanges): Set<unknown> {
  const out = new Set<unknown>(ch.since.services);
  for (const s of ch.gone) out.delete(s);
  for (const s of ch.came) out.add(s);
  return out;
}

const edit = fc.oneof(
  fc.record({ op: fc.constant("change" as const), at: fc.nat(), v: fc.integer({ min: 1, max: 9 }) }),
  fc.record({ op: fc.constant("insert" as const), at: fc.nat(), k: fc.integer({ min: 0, max: 400 }) }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("move" as const), at: fc.nat(), to: fc.nat() }),
  fc.record({ op: fc.constant("setting" as const), cidr: fc.constantFrom("10.96.0.0/16", "10.96.0.0/12") }),
  fc.record({ op: fc.constant("clash" as const), at: fc.nat(), with: fc.nat(), what: fc.constantFrom("name", "clusterIP", "nodePort") }),
  fc.record({ op: fc.constant("bad" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("text" as const), at: fc.nat(), what: fc.constantFrom("drop", "comma", "space", "cut") }),
);

/** Applies one edit to the document or its text; returns the new text. */
type Edit = typeof edit extends fc.Arbitrary<infer T> ? T : never;
function applyEdit(raw: Raw, text: string, e: Edit): { raw: Raw; text: string } {
  const list = raw.services.slice(), n = list.length;
  const textOf = (r: Raw) => JSON.stringify(r, null, 1);
  switch (e.op) {
    case "change": if (n) list[e.at % n] = svc(Number(String(list[e.at % n]!.name).slice(4)), e.v); break;
    case "insert": if (!list.some((s) => s.name === `svc-${e.k}`)) list.splice(e.at % (n + 1), 0, svc(e.k)); break;
    case "delete": if (n) list.splice(e.at % n, 1); break;
    case "move": if (n) { const [s] = list.splice(e.at % n, 1); list.splice(e.to % n, 0, s!); } break;
    case "setting": return { raw: { ...raw, serviceCIDR: e.cidr }, text: textOf({ ...raw, serviceCIDR: e.cidr }) };
    case "clash": if (n > 1) {
      const a = list[e.at % n]!, b = list[e.with % n]!;
      const c: Record<string, unknown> = { ...a };
      if (e.what === "name") c.name = b.name;
      else if (e.what === "clusterIP") c.clusterIP = b.clusterIP;
      else { c.type = "NodePort"; c.ports = [{ port: 81, nodePort: 31999 }]; list[e.with % n] = { ...b, type: "NodePort", ports: [{ port: 82, nodePort: 31999 }] }; }
      list[e.at % n] = c;
    } break;
    case "bad": if (n) list[e.at % n] = { ...list[e.at % n]!, ports: [{ port: 70000 }] }; break;
    case "text": {
      // corruptions and layout changes of the text itself, at a comma of the services list
      const commas = [...text.matchAll(/},\n/g)].map((m) => m.index!);
      if (!commas.length) return { raw, text };
      const at = commas[e.at % commas.length]! + 1;
      const t = e.what === "drop" ? text.slice(0, at) + text.slice(at + 1) : e.what === "comma" ? `${text.slice(0, at)},${text.slice(at)}`
        : e.what === "space" ? `${text.slice(0, at)}  ${text.slice(at)}` : text.slice(0, at);
      return { raw, text: t };
    }
  }
  const next = { ...raw, services: list };
  return { raw: next, text: textOf(next) };
}

describe("config: a JSON text re-read where it changed (ServiceCache)", () => {
  for (const asBytes of [false, true]) it(`gives what validating the whole text gives, for random edits of services, settings, layout and broken JSON, handed over as ${asBytes ? "a file's bytes" : "a string"} (fast-check, seeded)`, async () => {
    let incremental = 0, edits = 0;
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 40 }), fc.array(edit, { minLength: 1, maxLength: 12 }), async (size, steps) => {
      const cache = new ServiceCache();
      let raw = doc(Array.from({ length: size }, (_, k) => svc(k * 3)));
      let text = JSON.stringify(raw, null, 1);
      let last = await cached(text, cache, asBytes);
      assert.equal(last.shown, reference(text));
      for (const e of steps) {
        const next = applyEdit(raw, text, e);
        const got = await cached(next.text, cache, asBytes), want = reference(next.text);
        assert.equal(got.shown, want, `after ${JSON.stringify(e)}`);
        edits++;
        if (got.changes) {
          incremental++;
          assert.equal(got.changes.since, last.config, "the change set is relative to the last accepted config");
          assert.deepEqual(applied(got.changes), new Set(got.config!.services), "since + came - gone is the new config's services");
          for (const s of got.config!.services) {
            if (!got.changes.came.includes(s)) assert.ok(last.config!.services.includes(s), "a service that did not come is the same object as before");
          }
        }
        if (got.config) { last = got; raw = next.raw; text = next.text; }
      }
    }), { seed: 20261207, numRuns: 150 });
    assert.ok(incremental > edits / 4, `most accepted service edits took the incremental path (${incremental} of ${edits} edits)`);
  });

  it("a one-service change in 3,000 services: only that service comes and goes, every other keeps its object", async () => {
    const cache = new ServiceCache();
    const services = Array.from({ length: 3000 }, (_, k) => svc(k));
    const first = await cached(JSON.stringify(doc(services)), cache);
    const changed = services.slice();
    changed[1500] = svc(1500, 4);
    const second = await cached(JSON.stringify(doc(changed)), cache);
    assert.ok(second.changes, "the config comes with its change set");
    assert.equal(second.changes.since, first.config);
    assert.deepEqual(second.changes.came.map((s) => s.name), ["svc-1500"]);
    assert.deepEqual(second.changes.gone.map((s) => s.name), ["svc-1500"]);
    assert.equal(second.changes.settingsChanged, false);
    const same = second.config!.services.filter((s, i) => s === first.config!.services[i]).length;
    assert.equal(same, 2999, "the other 2,999 services are the very objects of the first config");
  });

  it("edits the services list cannot explain take the whole text: a setting, a duplicated comma, an empty value", async () => {
    const cache = new ServiceCache();
    const services = [svc(1), svc(2), svc(3)];
    await cached(JSON.stringify(doc(services)), cache);
    const setting = await cached(JSON.stringify(doc(services, { clusterCIDR: "10.244.0.0/16" })), cache);
    assert.ok(setting.config && !setting.changes, "a setting changed: the full path, no change set");
    const text = JSON.stringify(doc(services, { clusterCIDR: "10.244.0.0/16" }));
    for (const bad of [text.replace("},{", "},,{"), text.replace("}]", "},]"), text.replace("[{", "[,{")]) {
      const r = await cached(bad, cache);
      assert.equal(r.shown, reference(bad), "broken JSON is reported as the full parse reports it");
      assert.match(r.shown, /is not valid JSON/);
    }
  });
});

describe("config: a JSON file's bytes re-read where they changed (loadConfigBytesAsync)", () => {
  /** The bytes through the cache, with whether the cache now keeps them (the bytes path accepted them). */
  async function fromBytes(text: string, cache: ServiceCache) {
    const bytes = Buffer.from(text);
    const r = await loadConfigBytesAsync(bytes, "c.json", cache);
    const shown = JSON.stringify("config" in r ? { config: r.config } : { problems: r.problems });
    return { shown, config: "config" in r ? r.config : undefined, changes: "config" in r ? r.changes : undefined, kept: cache.keeps(bytes) };
  }
  const names = (ss: readonly { name: string }[] | undefined) => (ss ?? []).map((s) => s.name);

  it("an ASCII file: a service changed, inserted or removed at the very start, in the middle and at the very end of the list is read from the bytes, with only that service in the change set", async () => {
    const cache = new ServiceCache();
    let services = Array.from({ length: 300 }, (_, k) => svc(k));
    let last = await fromBytes(JSON.stringify(doc(services), null, 1), cache);
    assert.ok(last.config && last.kept, "the first text is accepted and its bytes kept");
    const steps: Array<{ what: string; edit: (l: typeof services) => void; came: string[]; gone: string[] }> = [
      { what: "the first changed", edit: (l) => { l[0] = svc(0, 3); }, came: ["svc-0"], gone: ["svc-0"] },
      { what: "the middle changed", edit: (l) => { l[150] = svc(150, 5); }, came: ["svc-150"], gone: ["svc-150"] },
      { what: "the last changed", edit: (l) => { l[l.length - 1] = svc(299, 7); }, came: ["svc-299"], gone: ["svc-299"] },
      { what: "one inserted before the first", edit: (l) => { l.unshift(svc(400)); }, came: ["svc-400"], gone: [] },
      { what: "one appended after the last", edit: (l) => { l.push(svc(401)); }, came: ["svc-401"], gone: [] },
      { what: "the first removed", edit: (l) => { l.shift(); }, came: [], gone: ["svc-400"] },
      { what: "the last removed", edit: (l) => { l.pop(); }, came: [], gone: ["svc-401"] },
    ];
    for (const step of steps) {
      services = services.slice();
      step.edit(services);
      const text = JSON.stringify(doc(services), null, 1);
      const got = await fromBytes(text, cache);
      assert.equal(got.shown, reference(text), `${step.what}: what the whole text gives`);
      assert.ok(got.changes && got.kept, `${step.what}: read from the bytes, with a change set`);
      assert.equal(got.changes.since, last.config, `${step.what}: the change set is relative to the last accepted config`);
      assert.deepEqual([names(got.changes.came), names(got.changes.gone)], [step.came, step.gone], step.what);
      last = got;
    }
  });

  it("an ASCII file changed outside the services list (a setting, the node) takes the whole text; the next change inside the list is read from the bytes again", async () => {
    const cache = new ServiceCache();
    const services = Array.from({ length: 50 }, (_, k) => svc(k));
    await fromBytes(JSON.stringify(doc(services)), cache);
    for (const extra of [{ clusterCIDR: "10.244.0.0/16" }, { clusterCIDR: "10.244.0.0/16", mode: "tap" }]) {
      const text = JSON.stringify(doc(services, extra));
      const got = await fromBytes(text, cache);
      assert.equal(got.shown, reference(text));
      assert.ok(got.config && !got.changes, `${JSON.stringify(extra)}: the full path, no change set`);
      assert.ok(got.kept, "the full path keeps the ASCII bytes for the next compare");
    }
    const nodeText = JSON.stringify({ ...doc(services, { clusterCIDR: "10.244.0.0/16", mode: "tap" }), node: { ...NODE, name: "n2" } });
    const node = await fromBytes(nodeText, cache);
    assert.ok(node.config && !node.changes, "the node changed (before the list): the full path");
    const changed = services.slice();
    changed[49] = svc(49, 2);
    const text = JSON.stringify({ ...doc(changed, { clusterCIDR: "10.244.0.0/16", mode: "tap" }), node: { ...NODE, name: "n2" } });
    const got = await fromBytes(text, cache);
    assert.equal(got.shown, reference(text));
    assert.deepEqual(names(got.changes?.came), ["svc-49"], "a change in the list after the full path: read from the bytes");
  });

  it("a rejected ASCII text is reported as the whole text reports it, and the next change is relative to the last accepted config", async () => {
    const cache = new ServiceCache();
    const services = Array.from({ length: 20 }, (_, k) => svc(k));
    const first = await fromBytes(JSON.stringify(doc(services)), cache);
    const bad = services.slice();
    bad[19] = { ...svc(19), ports: [{ port: 70000 }] };
    const badText = JSON.stringify(doc(bad));
    const rejected = await fromBytes(badText, cache);
    assert.equal(rejected.shown, reference(badText));
    assert.match(rejected.shown, /services\[19\]\.ports\[0\]\.port/);
    assert.ok(!rejected.kept, "a rejected text's bytes are not kept");
    const good = services.slice();
    good[3] = svc(3, 1);
    const text = JSON.stringify(doc(good));
    const got = await fromBytes(text, cache);
    assert.equal(got.shown, reference(text));
    assert.equal(got.changes?.since, first.config, "the change set is relative to the last accepted config, not the rejected text");
    assert.deepEqual(names(got.changes?.came), ["svc-3"]);
  });

  it("a non-ASCII file (an ExternalName of café.example) is decoded whole: what the whole text gives, changes after the é read where they changed; an ASCII file after it is read from the bytes", async () => {
    const cache = new ServiceCache();
    const services: Array<Record<string, unknown>> = Array.from({ length: 30 }, (_, k) => svc(k));
    services[2] = { name: "ext", type: "ExternalName", externalName: "café.example" };
    const text = JSON.stringify(doc(services), null, 1);
    assert.notEqual(Buffer.byteLength(text), text.length, "the text has a character of two bytes in UTF-8");
    const first = await fromBytes(text, cache);
    assert.equal(first.shown, reference(text));
    assert.ok(first.config && !first.kept, "accepted, its bytes not kept (offsets in bytes are not characters')");
    // byte offsets after the é are one more than character offsets: a change there must still hit svc-20
    const changed = services.slice();
    changed[20] = svc(20, 4);
    const next = JSON.stringify(doc(changed), null, 1);
    const got = await fromBytes(next, cache);
    assert.equal(got.shown, reference(next));
    assert.deepEqual([names(got.changes?.came), names(got.changes?.gone)], [["svc-20"], ["svc-20"]], "the text path read only svc-20");
    const ascii = changed.slice();
    ascii[2] = { name: "ext", type: "ExternalName", externalName: "cafe.example" };
    const asciiText = JSON.stringify(doc(ascii), null, 1);
    const back = await fromBytes(asciiText, cache);
    assert.equal(back.shown, reference(asciiText));
    assert.ok(back.config && back.kept, "back to ASCII: the bytes are kept again");
    const last = ascii.slice();
    last[25] = svc(25, 6);
    const lastText = JSON.stringify(doc(last), null, 1);
    const fromB = await fromBytes(lastText, cache);
    assert.equal(fromB.shown, reference(lastText));
    assert.deepEqual(names(fromB.changes?.came), ["svc-25"], "then read from the bytes where they changed");
  });

  it("an ASCII YAML file is decoded whole and gives what the whole text gives", async () => {
    const cache = new ServiceCache();
    const yaml = "node: { name: n1, underlayIP: 10.99.0.1, podCIDR: 10.244.1.0/24 }\nservices:\n  - { name: web, clusterIP: 10.96.0.10, ports: [{ port: 80 }] }\n";
    const r = await loadConfigBytesAsync(Buffer.from(yaml), "c.yaml", cache);
    const want = loadConfigText(yaml, "c.yaml");
    assert.deepEqual(r, want);
    assert.ok(!cache.json, "no JSON state is kept for YAML");
  });
});
