// dist/wasp, the single executable, is self-contained: copied alone into a temp bin dir with only
// wasp_native.node beside it (no repository, no node_modules, no build/wasp.wasm), it answers a
// runtime's VERSION, ADD, CHECK and DEL in a test node namespace, and starts the daemon on the wasm
// core it carries inside. Builds dist/wasp when it is missing (npm run build:sea; install-deps.sh
// builds it already).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execPlugin, type CniCall } from "../helpers/cni-driver.js";
import { deleteAllNs, inNs, ip, makeNs, spawnInNs, stop, sysctl } from "../helpers/netns.js";
import { waitFor } from "../helpers/topology.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const DIST = join(ROOT, "dist");

describe("single executable: dist/wasp copied alone is the CNI plugin and the daemon (integration, needs root)", function () {
  this.timeout(120_000);
  let work = "", bin = "", wasp = "", node = "", dataDir = "";

  before(function () {
    if (!fs.existsSync(join(DIST, "wasp")) || !fs.existsSync(join(DIST, "wasp_native.node"))) {
      this.timeout(300_000);
      execFileSync("npm", ["run", "--silent", "build:sea"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    }
    work = fs.mkdtempSync(join(tmpdir(), "wasp-sea-"));
    bin = join(work, "bin");
    fs.mkdirSync(bin);
    wasp = join(bin, "wasp");
    fs.copyFileSync(join(DIST, "wasp"), wasp);
    fs.chmodSync(wasp, 0o755);
    fs.copyFileSync(join(DIST, "wasp_native.node"), join(bin, "wasp_native.node"));
    dataDir = join(work, "ipam");

    node = makeNs("node");
    sysctl(node, "net.ipv4.ip_forward", 1);
    ip(node, "link", "add", "wasp0", "type", "bridge"); // stands in for the daemon's TUN, as in cni.test.ts
    ip(node, "addr", "add", "10.244.1.1/32", "dev", "wasp0");
    ip(node, "link", "set", "wasp0", "up");
    ip(node, "route", "add", "default", "dev", "wasp0");
  });
  after(() => {
    deleteAllNs();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  // Nothing of the repository is reachable: no WASP_* pointers, cwd and PATH without it.
  const env = (): Record<string, string> => ({ WASP_WASM: "", WASP_NATIVE: "", NODE_OPTIONS: "" });
  const conf = { cniVersion: "1.0.0", name: "waspnet", type: "wasp", podCIDR: "10.244.1.0/24", get dataDir() { return dataDir; } };
  const call = (command: string, pod: string, config: unknown, over: Partial<CniCall> = {}) =>
    execPlugin(wasp, { command, containerId: `cid-${pod}`, netns: `/var/run/netns/${pod}`, ifname: "eth0", path: bin,
      config: JSON.parse(JSON.stringify(config)), nodeNs: node, extraEnv: env(), ...over });

  it("is one file with no script beside it (the CNI bin dir holds only wasp and wasp_native.node)", () => {
    assert.deepEqual(fs.readdirSync(bin).sort(), ["wasp", "wasp_native.node"]);
    const out = execFileSync(wasp, ["--help"], { cwd: work, encoding: "utf8", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    assert.match(out, /^Usage: wasp \[options\] \[command\]/m);
  });

  it("VERSION answers with only CNI_COMMAND set and no netns", async () => {
    const r = await execPlugin(wasp, { command: "VERSION", config: { cniVersion: "1.0.0" }, extraEnv: env() });
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    assert.equal(r.json.cniVersion, "1.0.0");
    assert.ok(r.json.supportedVersions.includes("1.0.0"), r.stdout);
    assert.equal(r.stderr, "", "no experimental-SEA warning or other noise on stderr");
  });

  it("ADD wires a pod (eth0 /32, default via 169.254.1.1) that pings the node; CHECK passes; DEL removes it and releases the address", async () => {
    const pod = makeNs("pod");
    const add = await call("ADD", pod, conf);
    assert.equal(add.exitCode, 0, add.stdout + add.stderr);
    assert.equal(add.json.cniVersion, "1.0.0");
    assert.equal(add.json.ips[0].address, "10.244.1.2/32");
    assert.match(ip(pod, "-4", "addr", "show", "dev", "eth0"), /inet 10\.244\.1\.2\/32/);
    assert.match(ip(pod, "-4", "route", "show"), /default via 169\.254\.1\.1 dev eth0 onlink/);
    inNs(pod, "busybox", "ping", "-c1", "-W2", "10.244.1.1"); // throws when no reply
    assert.ok(fs.existsSync(join(dataDir, "waspnet", "10.244.1.2")), "host IPAM record written");

    const check = await call("CHECK", pod, { ...conf, prevResult: add.json });
    assert.equal(check.exitCode, 0, check.stdout + check.stderr);

    const del = await call("DEL", pod, { ...conf, prevResult: add.json });
    assert.equal(del.exitCode, 0, del.stdout + del.stderr);
    assert.doesNotMatch(ip(pod, "link", "show"), /eth0/);
    assert.ok(!fs.existsSync(join(dataDir, "waspnet", "10.244.1.2")), "address released");
    const again = await call("DEL", pod, conf, { netns: "" }); // containerd's DEL after the task exited
    assert.equal(again.exitCode, 0, again.stdout + again.stderr);
  });

  it("a bad config is a CNI error on stdout (code 7 or 1), exit 1, not a crash", async () => {
    const pod = makeNs("pod");
    const r = await call("ADD", pod, { cniVersion: "1.0.0", name: "waspnet", type: "wasp" });
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    assert.equal(typeof r.json.code, "number", r.stdout);
    assert.equal(typeof r.json.msg, "string", r.stdout);
  });

  it("`wasp daemon` starts on the wasm core inside the executable and the addon beside it, and stops on SIGTERM", async () => {
    const dnode = makeNs("dnode");
    const child = spawnInNs(dnode, "env", ["-u", "WASP_WASM", "-u", "WASP_NATIVE", wasp, "daemon",
      "--socket", join(work, "wasp.sock"), "--metrics-port", "0"]);
    let log = "";
    child.stderr!.on("data", (d: Buffer) => { log += d.toString(); });
    child.stdout!.on("data", (d: Buffer) => { log += d.toString(); });
    try {
      await waitFor(() => log.includes('"msg":"serving"') || child.exitCode !== null, "the daemon to serve", 60_000);
      assert.match(log, /"msg":"serving"/, log);
      assert.match(ip(dnode, "-4", "addr", "show", "dev", "wasp0"), /inet 10\.244\.1\.1\/32/);
    } finally {
      await stop(child);
    }
    assert.equal(child.exitCode, 0, log);
  });
});
