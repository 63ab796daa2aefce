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

  it("accepts what a runtime adds to any plugin's config (args, capabilities, runtimeConfig, prevResult, cni.dev/*)", () => {
    const r = validateNetConf({ ...base, args: { labels: {} }, capabilities: { portMappings: true }, runtimeConfig: {}, prevResult: {}, "cni.dev/other": 1 });
    assert.ok("config" in r, `accepted: ${JSON.stringify(r)}`);
  });

  it("reports a field wasp does not read, with the field it likely meant (the CNI spec lets a plugin refuse unknown fields, args excepted): mut -> mtu, podCidr -> podCIDR, ipMasq", () => {
    assert.deepEqual(problems({ ...base, mut: 1400 }), ["mut is not a field the wasp plugin reads; did you mean mtu? (fields: podCIDR, podCIDRv6, mtu, underlayMTU, dataDir, dns, daemonSocket, cniSocket)"]);
    assert.match(problems({ ...base, podCidr: "10.244.1.0/24" }).join(" | "), /podCidr is not a field the wasp plugin reads; did you mean podCIDR\?/);
    assert.match(problems({ ...base, ipMasq: false })[0]!, /^ipMasq is not a field the wasp plugin reads \(fields:/);
  });

  it("an ipam section is refused: wasp does its own IPAM (the section's plugin would never run, its addresses never be the ones handed out)", () => {
    assert.match(problems({ ...base, ipam: { type: "host-local", ranges: [[{ subnet: "10.244.9.0/24" }]] } })[0]!,
      /^ipam \(type "host-local"\): wasp does its own IPAM, so an IPAM plugin is never run; remove the ipam section: pod addresses come from podCIDR/);
  });

  it("lenient (DEL, GC: they clean up whatever the config says): unread fields and ipam come back as warnings, the config is usable", () => {
    const r = validateNetConf({ ...base, mut: 1400, ipam: { type: "host-local" } }, false);
    assert.ok("config" in r, JSON.stringify(r));
    assert.deepEqual(r.warnings.map((w) => w.path), ["mut", "ipam"]);
  });

  it("cniSocket, the daemon's CNI socket the front door uses, must be an absolute path", () => {
    const r = validateNetConf({ ...base, cniSocket: "/run/wasp/cni.sock" });
    assert.ok("config" in r && r.config.cniSocket === "/run/wasp/cni.sock", JSON.stringify(r));
    assert.match(problems({ ...base, cniSocket: "cni.sock" })[0]!, /cniSocket \("cni.sock"\): must be an absolute path/);
  });

  it("says so when the config is not an object at all", () => {
    assert.deepEqual(problems([1, 2]), ["the network config is not a JSON object"]);
  });
});
