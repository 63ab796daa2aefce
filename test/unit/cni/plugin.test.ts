// The plugin's answers that need no network: VERSION, and the errors raised before anything is made.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { handle } from "../../../src/cni/index.js";
import { formatResult, mergeResults, type Result } from "../../../src/cni/result.js";
import { hostVethName, randomMac } from "../../../src/cni/names.js";
import { readEnv } from "../../../src/cni/env.js";

const conf = { cniVersion: "1.0.0", name: "n", type: "wasp", podCIDR: "10.244.1.0/24", dataDir: "/nonexistent-wasp-test" };
const env = (command: string, extra: Record<string, string> = {}) => ({ CNI_COMMAND: command, CNI_CONTAINERID: "c1", CNI_NETNS: "/var/run/netns/none", CNI_IFNAME: "eth0", ...extra });
const call = async (e: NodeJS.ProcessEnv, stdin: string) => {
  const r = await handle({ env: e, stdin });
  return { ...r, json: r.stdout ? JSON.parse(r.stdout) : undefined };
};

describe("cni: VERSION and early errors (CNI spec 1.1 error codes)", () => {
  it("VERSION reports 0.4.0, 1.0.0, 1.1.0 and echoes the request's cniVersion", async () => {
    const r = await call({ CNI_COMMAND: "VERSION" }, JSON.stringify({ cniVersion: "1.0.0" }));
    assert.equal(r.exitCode, 0);
    assert.deepEqual(r.json, { cniVersion: "1.0.0", supportedVersions: ["0.4.0", "1.0.0", "1.1.0"] });
  });

  it("malformed JSON on stdin is code 6 (failed to decode content)", async () => {
    const r = await call(env("ADD"), "{x");
    assert.equal(r.exitCode, 1);
    assert.equal(r.json.code, 6);
    assert.match(r.json.msg, /not JSON/);
  });

  it("an unknown cniVersion is code 1 (incompatible CNI version), naming the versions supported", async () => {
    const r = await call(env("ADD"), JSON.stringify({ ...conf, cniVersion: "9.9.9" }));
    assert.equal(r.json.code, 1);
    assert.match(r.json.msg, /9\.9\.9.*0\.4\.0, 1\.0\.0, 1\.1\.0/);
  });

  it("missing fields are code 7 (invalid network config) and all named in msg", async () => {
    const r = await call(env("ADD"), JSON.stringify({ cniVersion: "1.0.0", type: "wasp" }));
    assert.equal(r.json.code, 7);
    assert.match(r.json.msg, /name is missing/);
    assert.match(r.json.msg, /podCIDR is missing/);
  });

  it("a field wasp does not read: ADD refuses it with code 7 naming the likely field; DEL goes on and says so on stderr (a runtime logs it)", async () => {
    const add = await call(env("ADD"), JSON.stringify({ ...conf, mut: 1400 }));
    assert.equal(add.json.code, 7);
    assert.match(add.json.msg, /mut is not a field the wasp plugin reads; did you mean mtu\?/);
    const dataDir = mkdtempSync(join(tmpdir(), "wasp-cni-del-"));
    try {
      // no veth of this container here, no address in the store: DEL has nothing to undo
      const del = await call(env("DEL", { CNI_CONTAINERID: "c-never-added" }), JSON.stringify({ ...conf, dataDir, mut: 1400 }));
      assert.equal(del.exitCode, 0, del.stdout);
      assert.match(del.stderr ?? "", /^wasp: the network config: mut is not a field the wasp plugin reads; did you mean mtu\?/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("an unknown CNI_COMMAND is code 4 (invalid environment variables)", async () => {
    const r = await call(env("FOO"), JSON.stringify(conf));
    assert.equal(r.json.code, 4);
    assert.match(r.json.msg, /unknown CNI_COMMAND "FOO"/);
  });

  it("ADD with an empty CNI_NETNS is code 4; with a path that does not exist, code 3 (container unknown)", async () => {
    assert.equal((await call(env("ADD", { CNI_NETNS: "" }), JSON.stringify(conf))).json.code, 4);
    const r = await call(env("ADD", { CNI_NETNS: "/var/run/netns/wasp-no-such-ns" }), JSON.stringify(conf));
    assert.equal(r.json.code, 3);
  });

  it("GC and STATUS with a pre-1.1.0 config are code 1 (the verbs came with spec 1.1.0)", async () => {
    for (const c of ["GC", "STATUS"]) {
      const r = await call({ CNI_COMMAND: c }, JSON.stringify({ ...conf, "cni.dev/valid-attachments": [] }));
      assert.equal(r.json.code, 1, c);
    }
  });

  it("error objects carry cniVersion, code, msg (and details when there is more to say)", async () => {
    const r = await call(env("ADD"), JSON.stringify({ ...conf, cniVersion: "0.4.0", podCIDR: "bad" }));
    assert.deepEqual(Object.keys(r.json).sort(), ["cniVersion", "code", "msg"]);
    assert.equal(r.json.cniVersion, "0.4.0");
  });

  it("rejects a container ID and an ifname the spec and Linux do not allow", () => {
    assert.throws(() => readEnv(env("ADD", { CNI_CONTAINERID: "a/b" })), /CNI_CONTAINERID/);
    assert.throws(() => readEnv(env("ADD", { CNI_IFNAME: "a-very-long-ifname0" })), /CNI_IFNAME/);
  });

  it("VERSION ignores the per-container variables (podman probes it with CNI_NETNS=dummy), ADD does not", () => {
    const placeholders = { CNI_CONTAINERID: "", CNI_NETNS: "dummy", CNI_IFNAME: "dummy", CNI_PATH: "dummy" };
    assert.equal(readEnv(env("VERSION", placeholders)).command, "VERSION");
    assert.throws(() => readEnv(env("ADD", { ...placeholders, CNI_CONTAINERID: "c1" })), /CNI_NETNS "dummy" is not an absolute path/);
  });
});

describe("cni: result shapes per version", () => {
  const r: Result = {
    cniVersion: "x",
    interfaces: [{ name: "waspabc", mac: "02:00:00:00:00:01", mtu: 1450 }, { name: "eth0", mac: "02:00:00:00:00:02", mtu: 1450, sandbox: "/var/run/netns/p" }],
    ips: [{ address: "10.244.1.2/32", gateway: "169.254.1.1", interface: 1 }, { address: "fd00::2/128", gateway: "fe80::1", interface: 1 }],
    routes: [{ dst: "0.0.0.0/0", gw: "169.254.1.1" }],
    dns: {},
  };
  it("0.4.0 results carry ips[].version '4'/'6' (spec 0.4.0), 1.0.0 results do not", () => {
    assert.deepEqual(formatResult(r, "0.4.0").ips, [
      { version: "4", address: "10.244.1.2/32", gateway: "169.254.1.1", interface: 1 },
      { version: "6", address: "fd00::2/128", gateway: "fe80::1", interface: 1 },
    ]);
    assert.ok((formatResult(r, "1.0.0").ips as object[]).every((i) => !("version" in i)), "no ips[].version in a 1.0.0 result");
  });
  it("interfaces[].mtu appears only from 1.1.0 (a 1.1 addition)", () => {
    assert.ok((formatResult(r, "1.0.0").interfaces as object[]).every((i) => !("mtu" in i)), "no interfaces[].mtu in a 1.0.0 result");
    assert.equal((formatResult(r, "1.1.0").interfaces as Array<{ mtu?: number }>)[1]!.mtu, 1450);
  });
  it("after another plugin, our interface indexes shift past the previous result's interfaces", () => {
    const prev: Result = { cniVersion: "1.0.0", interfaces: [{ name: "lo0" }], ips: [], routes: [], dns: { nameservers: ["10.96.0.10"] } };
    const m = mergeResults(prev, r);
    assert.equal(m.interfaces.length, 3);
    assert.deepEqual(m.ips.map((i) => i.interface), [2, 2]);
    assert.deepEqual(m.dns, { nameservers: ["10.96.0.10"] });
  });
});

describe("cni: names", () => {
  it("host veth: 'wasp' + 11 hex digits, 15 characters, stable per (containerID, ifname)", () => {
    const a = hostVethName("c1", "eth0");
    assert.match(a, /^wasp[0-9a-f]{11}$/);
    assert.equal(a.length, 15);
    assert.equal(hostVethName("c1", "eth0"), a);
    assert.notEqual(hostVethName("c1", "net1"), a);
    assert.notEqual(hostVethName("c2", "eth0"), a);
  });
  it("MACs are unicast and locally administered (IEEE 802 bits 0 and 1 of the first byte)", () => {
    for (let i = 0; i < 50; i++) {
      const b0 = parseInt(randomMac().slice(0, 2), 16);
      assert.equal(b0 & 1, 0);
      assert.equal(b0 & 2, 2);
    }
  });
});
