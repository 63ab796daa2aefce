// A JSON config text re-read through a ServiceCache (src/config/json-text.ts): when it
// differs from the last accepted one only inside the services list, only the services it touches
// are parsed and checked. The answer must be what validating the whole text gives (the full path is
// the reference: JSON.parse and validateConfig), for every edit: services changed, added, removed,
// moved; whitespace; settings; broken JSON; cross-service clashes. The unchanged services keep their
// objects and the config carries its change set.
import assert from "node:assert/strict";
import fc from "fast-check";
import { loadConfigText, loadConfigTextAsync, ServiceCache, type Config } from "../../../src/config/index.js";
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
async function cached(text: string, cache: ServiceCache): Promise<{ shown: string; config?: Config; changes?: ConfigChanges }> {
  const r = await loadConfigTextAsync(text, "c.json", cache);
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
  it("gives what validating the whole text gives, for random edits of services, settings, layout and broken JSON (fast-check, seeded)", async () => {
    let incremental = 0, edits = 0;
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 40 }), fc.array(edit, { minLength: 1, maxLength: 12 }), async (size, steps) => {
      const cache = new ServiceCache();
      let raw = doc(Array.from({ length: size }, (_, k) => svc(k * 3)));
      let text = JSON.stringify(raw, null, 1);
      let last = await cached(text, cache);
      assert.equal(last.shown, reference(text));
      for (const e of steps) {
        const next = applyEdit(raw, text, e);
        const got = await cached(next.text, cache), want = reference(next.text);
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
