import { strict as assert } from "node:assert";
import { DEFAULT_CONFIG_RAW, DEFAULT_CONFIG_YAML, defaultConfig, loadConfigText, validateConfig } from "../../../src/config/index.js";

describe("config/default", () => {
  it("the embedded default passes validation", () => {
    const r = validateConfig(structuredClone(DEFAULT_CONFIG_RAW));
    assert.ok("config" in r, JSON.stringify(r));
  });

  it("the embedded YAML text says the same as the embedded document", () => {
    const r = loadConfigText(DEFAULT_CONFIG_YAML, "default.yaml");
    assert.ok("config" in r, JSON.stringify(r));
    assert.deepEqual(r.config, defaultConfig());
  });

  it("is the demo node with web, dns (UDP and TCP) and web-nodeport 30080", () => {
    const c = defaultConfig();
    assert.deepEqual([c.node.name, c.node.underlayIP, c.node.podCIDR], ["demo-node", "10.99.0.1", "10.244.1.0/24"]);
    assert.deepEqual(c.services.map((s) => s.name), ["web", "dns", "web-nodeport"]);
    assert.deepEqual(c.services[1]!.ports.map((p) => p.protocol), ["UDP", "TCP"]);
    assert.equal(c.services[2]!.ports[0]!.nodePort, 30080);
    assert.deepEqual(c.services[2]!.backends.map((b) => b.ip), c.services[0]!.backends.map((b) => b.ip));
  });
});
