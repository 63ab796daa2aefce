import { strict as assert } from "node:assert";
import { formatProblems, loadConfigText, parseConfigText } from "../../../src/config/index.js";

describe("config/parse", () => {
  it("reads YAML and JSON to the same document", () => {
    const yaml = parseConfigText("node:\n  name: n1\n  underlayIP: 10.99.0.1\n", "c.yaml");
    const json = parseConfigText('{"node": {"name": "n1", "underlayIP": "10.99.0.1"}}', "c.json");
    assert.deepEqual(yaml, json);
  });

  it("detects JSON by content when the extension says nothing", () => {
    assert.deepEqual(parseConfigText('{"mode": "tap"}', "config"), { value: { mode: "tap" } });
  });

  it("gives a YAML syntax error with its line and column", () => {
    const r = parseConfigText("node:\n  name: n1\n   bad: [\n", "c.yaml");
    assert.ok("problems" in r, "bad YAML is a problem");
    const p = r.problems[0]!;
    assert.equal(p.path, "");
    assert.match(p.message, /^is not valid YAML: /);
    assert.equal(typeof p.line, "number");
    assert.ok(p.line! >= 2, `line ${p.line}`);
    assert.equal(typeof p.column, "number");
  });

  it("gives a JSON syntax error with its line and column when V8 names the offset", () => {
    const r = parseConfigText('{\n  "mode": "tun",\n  "node" 1\n}', "c.json");
    assert.ok("problems" in r, "bad JSON is a problem");
    assert.deepEqual({ line: r.problems[0]!.line, column: r.problems[0]!.column }, { line: 3, column: 10 });
    assert.match(r.problems[0]!.message, /^is not valid JSON: [^\n]+$/);
    assert.doesNotMatch(r.problems[0]!.message, /position/);
  });

  it("rejects duplicate keys in YAML instead of letting the last one win", () => {
    const r = parseConfigText("mode: tun\nmode: tap\n", "c.yaml");
    assert.ok("problems" in r, `a duplicate key is a problem: ${JSON.stringify(r)}`);
  });

  it("formats problems as file: path message, and syntax errors as file:line:column", () => {
    const lines = formatProblems("/etc/wasp/config.yaml", [
      { path: "services[2].ports[0].port", message: "is 70000; a port is 1-65535" },
      { path: "", message: "is not valid YAML: oops", line: 3, column: 5 },
    ]);
    assert.deepEqual(lines, [
      "/etc/wasp/config.yaml: services[2].ports[0].port is 70000; a port is 1-65535",
      "/etc/wasp/config.yaml:3:5: is not valid YAML: oops",
    ]);
  });

  it("loads text through parse and validation", () => {
    const r = loadConfigText("node: { name: n1, underlayIP: 10.99.0.1, podCIDR: 10.244.1.0/24 }\nservices:\n  - { name: a, clusterIP: 10.96.0.1, ports: [{ port: 70000 }] }\n", "c.yaml");
    assert.ok("problems" in r, "port 70000 is a problem");
    assert.deepEqual(formatProblems("c.yaml", r.problems), ["c.yaml: services[0].ports[0].port is 70000; a port is 1-65535"]);
  });
});
