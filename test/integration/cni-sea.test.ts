// dist/wasp, the executable, is self-contained: copied into a temp bin dir with only wasp-node and
// wasp_native.node beside it (no repository, no node_modules, no build/wasp.wasm), it answers a
// runtime's VERSION, ADD, CHECK and DEL in a test node namespace, starts the daemon on the wasm
// core it carries inside, and hands CNI calls to that daemon when one runs on the node. Builds dist/wasp when it is missing (npm run build:sea; install-deps.sh
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
    if (!["wasp", "wasp-node", "wasp_native.node"].every((f) => fs.existsSync(join(DIST, f)))) {
      this.timeout(300_000);
      execFileSync("npm", ["run", "--silent", "build:sea"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    }
    work = fs.mkdtempSync(join(tmpdir(), "wasp-sea-"));
    bin = join(work, "bin");
    fs.mkdirSync(bin);
    wasp = join(bin, "wasp");
    fs.copyFileSync(join(DIST, "wasp"), wasp);
    fs.chmodSync(wasp, 0o755);
    fs.copyFileSync(join(DIST, "wasp-node"), join(bin, "wasp-node"));
    fs.chmodSync(join(bin, "wasp-node"), 0o755);
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

  it("is the front door, wasp-node and the addon, no script beside them; wasp is a small static binary", () => {
    assert.deepEqual(fs.readdirSync(bin).sort(), ["wasp", "wasp-node", "wasp_native.node"]);
    assert.ok(fs.statSync(wasp).size < 2 << 20, "the front door is small (it starts in about a millisecond)");
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

describe("CNI fast path: with a daemon on the node, dist/wasp hands ADD and DEL to it (integration, needs root)", function () {
  this.timeout(120_000);
  let work = "", bin = "", wasp = "", dnode = "", log = "";
  let daemon: ReturnType<typeof spawnInNs> | undefined;

  before(async function () {
    work = fs.mkdtempSync(join(tmpdir(), "wasp-fast-"));
    bin = join(work, "bin");
    fs.mkdirSync(bin);
    for (const f of ["wasp", "wasp-node", "wasp_native.node"]) fs.copyFileSync(join(DIST, f), join(bin, f));
    wasp = join(bin, "wasp");
    dnode = makeNs("fnode");
    daemon = spawnInNs(dnode, "env", ["-u", "WASP_WASM", "-u", "WASP_NATIVE", join(bin, "wasp-node"), "daemon",
      "--socket", join(work, "wasp.sock"), "--metrics-port", "0", "--healthz-bind-address", ""]);
    daemon.stderr!.on("data", (d: Buffer) => { log += d.toString(); });
    daemon.stdout!.on("data", (d: Buffer) => { log += d.toString(); });
    await waitFor(() => log.includes('"msg":"serving"') || daemon!.exitCode !== null, "the daemon to serve", 60_000);
    assert.match(log, /"msg":"serving"/, log);
    assert.ok(fs.existsSync(join(work, "cni.sock")), "the CNI socket sits beside the control socket");
  });
  after(async () => {
    if (daemon) await stop(daemon);
    deleteAllNs();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  const conf = () => ({ cniVersion: "1.0.0", name: "fastnet", type: "wasp", podCIDR: "10.244.1.0/24", dataDir: join(work, "ipam") });
  const env = () => ({ WASP_WASM: "", WASP_NATIVE: "", NODE_OPTIONS: "", WASP_CNI_SOCKET: join(work, "cni.sock") });
  const call = (command: string, pod: string, nodeNs: string, config: unknown, over: Partial<CniCall> = {}) =>
    execPlugin(wasp, { command, containerId: `cid-${pod}`, netns: `/var/run/netns/${pod}`, ifname: "eth0", path: bin,
      config, nodeNs, extraEnv: env(), ...over });
  const answered = (command: string, pod: string) =>
    log.split("\n").some((l) => l.includes('"msg":"cni call"') && l.includes(`"command":"${command}"`) && l.includes(`"containerId":"cid-${pod}"`));

  it("ADD is answered by the daemon (its log names the call): eth0 /32 and default route in the pod, the pod pings the node", async () => {
    const pod = makeNs("fpod");
    const add = await call("ADD", pod, dnode, conf());
    assert.equal(add.exitCode, 0, add.stdout + add.stderr);
    assert.equal(add.json.ips[0].address, "10.244.1.2/32");
    assert.ok(answered("ADD", pod), `the daemon did not log the ADD:\n${log}`);
    assert.match(ip(pod, "-4", "addr", "show", "dev", "eth0"), /inet 10\.244\.1\.2\/32/);
    assert.match(ip(pod, "-4", "route", "show"), /default via 169\.254\.1\.1 dev eth0 onlink/);
    assert.match(ip(dnode, "-4", "route", "show", "10.244.1.2"), /10\.244\.1\.2 dev wasp[0-9a-f]{11} scope link/);
    inNs(pod, "busybox", "ping", "-c1", "-W2", "10.244.1.1");

    const check = await call("CHECK", pod, dnode, { ...conf(), prevResult: add.json });
    assert.equal(check.exitCode, 0, check.stdout + check.stderr);
    const del = await call("DEL", pod, dnode, { ...conf(), prevResult: add.json });
    assert.equal(del.exitCode, 0, del.stdout + del.stderr);
    assert.ok(answered("DEL", pod), "the daemon did not log the DEL");
    assert.doesNotMatch(ip(pod, "link", "show"), /eth0/);
    assert.ok(!fs.existsSync(join(work, "ipam", "fastnet", "10.244.1.2")), "address released");
  });

  it("a CNI error made in the daemon reaches the runtime as the spec's error object with exit 1", async () => {
    const pod = makeNs("fpod");
    const r = await call("ADD", pod, dnode, { ...conf(), podCIDR: "10.244.1.0/33" });
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    assert.equal(r.json.code, 7, r.stdout);
    assert.match(r.json.msg, /podCIDR/);
  });

  it("a runtime in another network namespace is declined by the daemon: the plugin runs there (the veth is made in the caller's namespace)", async () => {
    const other = makeNs("fother");
    const pod = makeNs("fpod");
    const add = await call("ADD", pod, other, conf());
    assert.equal(add.exitCode, 0, add.stdout + add.stderr);
    assert.ok(!answered("ADD", pod), "the daemon must not run a call from another namespace");
    assert.match(ip(other, "link", "show"), /wasp[0-9a-f]{11}/, "the host veth is in the caller's namespace");
    assert.doesNotMatch(ip(dnode, "link", "show"), new RegExp(add.json.interfaces[0].name));
    const del = await call("DEL", pod, other, { ...conf(), prevResult: add.json });
    assert.equal(del.exitCode, 0, del.stdout + del.stderr);
  });

  it("30 ADDs in parallel, all answered by the daemon, get 30 distinct addresses; 30 parallel DELs leave no record and no veth", async () => {
    const pods = Array.from({ length: 30 }, () => makeNs("fpar"));
    const adds = await Promise.all(pods.map((p) => call("ADD", p, dnode, conf())));
    for (const r of adds) assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    const addrs = adds.map((r) => r.json.ips[0].address as string);
    assert.equal(new Set(addrs).size, 30, addrs.join(" "));
    assert.ok(pods.every((p) => answered("ADD", p)), "every ADD went through the daemon");
    const dels = await Promise.all(pods.map((p, i) => call("DEL", p, dnode, { ...conf(), prevResult: adds[i]!.json })));
    for (const r of dels) assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    assert.deepEqual(fs.readdirSync(join(work, "ipam", "fastnet")).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)), []);
    assert.doesNotMatch(ip(dnode, "link", "show"), /wasp[0-9a-f]{11}/);
  });

  it("once the daemon is gone, the same calls run in wasp-node and give the same answers", async () => {
    await stop(daemon!);
    daemon = undefined;
    assert.ok(!fs.existsSync(join(work, "cni.sock")), "the daemon removes its CNI socket on exit");
    const pod = makeNs("fpod");
    // the store's round-robin hint, as the daemon left it (parallel ADDs may have moved it back a
    // little: it is a hint, as host-local's is); wasp-node continues right after it
    const hint = fs.readFileSync(join(work, "ipam", "fastnet", "last_reserved_ip.0"), "utf8").trim();
    const after = `10.244.1.${Number(hint.split(".")[3]) + 1}/32`;
    const add = await call("ADD", pod, dnode, conf());
    assert.equal(add.exitCode, 0, add.stdout + add.stderr);
    assert.equal(add.json.ips[0].address, after, `allocation continues after the daemon's last reserved address ${hint}`);
    const del = await call("DEL", pod, dnode, { ...conf(), prevResult: add.json });
    assert.equal(del.exitCode, 0, del.stdout + del.stderr);
  });
});
