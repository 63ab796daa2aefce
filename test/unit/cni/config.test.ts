import assert from "node:assert/strict";
import { validateNetConf } from "../../../src/cni/config.js";

const base = { cniVersion: "1.1.0", name: "wasp-net", type: "wasp", podCIDR: "10.244.1.0/24" };
const problems = (raw: unknown) => {
  const r = validateNetConf(raw);
  assert.ok("problems" in r, "expected problems");
  return r.problems.map((p) => p.message);
};

describe("cni: network config validation (pure)", () => {
  it("fills the defaults: mtu 1450 (1500 underlay - 50 VXLAN), dataDir /var/lib/cni/networks, empty dns", () => {
    const r = validateNetConf(base);
    assert.ok("config" in r, `the base config is valid: ${JSON.stringify(r)}`);
    assert.equal(r.config.mtu, 1450);
    assert.equal(r.config.dataDir, "/var/lib/cni/networks");
    assert.deepEqual(r.config.dns, {});
  });

  it("derives the mtu from underlayMTU when only that is given (9000 -> 8950)", () => {
    const r = validateNetConf({ ...base, underlayMTU: 9000 });
    assert.ok("config" in r, `underlayMTU 9000 is valid: ${JSON.stringify(r)}`);
    assert.equal(r.config.mtu, 8950);
  });

  it("names a bad pod CIDR with its value: 'podCIDR 10.244.1.0/33 is not a CIDR'", () => {
    assert.deepEqual(problems({ ...base, podCIDR: "10.244.1.0/33" }), ["podCIDR 10.244.1.0/33 is not a CIDR"]);
  });

  it("reports every problem at once: missing name and podCIDR, bad podCIDRv6, mtu too large", () => {
    const p = problems({ cniVersion: "1.0.0", type: "wasp", podCIDRv6: "10.0.0.0/8", mtu: 1500 });
    assert.ok(p.includes("name is missing"), p.join(" | "));
    assert.ok(p.includes("podCIDR is missing"), p.join(" | "));
    assert.ok(p.some((m) => /^podCIDRv6 10.0.0.0\/8 is not IPv6/.test(m)), p.join(" | "));
    assert.ok(p.some((m) => /^mtu 1500 does not fit/.test(m)), p.join(" | "));
    assert.equal(p.length, 4);
  });

  it("rejects an IPv6 podCIDR (it belongs in podCIDRv6) and a /31 that has no pod address", () => {
    assert.match(problems({ ...base, podCIDR: "fd00::/64" })[0]!, /not IPv4/);
    assert.match(problems({ ...base, podCIDR: "10.244.1.0/31" })[0]!, /no room for a pod/);
  });

  it("follows the CNI spec's network name rule (alphanumeric first, then [A-Za-z0-9_.-])", () => {
    assert.match(problems({ ...base, name: "-bad" })[0]!, /^name \("-bad"\)/);
    assert.ok("config" in validateNetConf({ ...base, name: "k8s-pod.net_1" }), "k8s-pod.net_1 is a valid network name");
  });

  it("accepts the GC list under cni.dev/valid-attachments and the older cni.dev/attachments", () => {
    const att = [{ containerID: "c1", ifname: "eth0" }];
    for (const key of ["cni.dev/valid-attachments", "cni.dev/attachments"]) {
      const r = validateNetConf({ ...base, [key]: att });
      assert.ok("config" in r, `${key} is accepted: ${JSON.stringify(r)}`);
      assert.deepEqual(r.config.validAttachments, att);
    }
    assert.match(problems({ ...base, "cni.dev/valid-attachments": [{ containerID: "c1" }] })[0]!, /ifname is missing/);
  });

  it("keeps unknown fields (args, capabilities, ipMasq) out of the way: plugins may ignore them", () => {
    assert.ok("config" in validateNetConf({ ...base, args: { labels: {} }, capabilities: { portMappings: true }, ipMasq: false }), "args, capabilities and ipMasq are accepted");
  });

  it("says so when the config is not an object at all", () => {
    assert.deepEqual(problems([1, 2]), ["the network config is not a JSON object"]);
  });
});
