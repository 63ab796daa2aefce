// `wasp daemon` with the embedded config, and refusing to start (a bad option, an invalid config):
// it must say why, exit non-zero and leave the node namespace exactly as it was (run in a test
// namespace all the same).
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deleteAllNs, ip, makeNs, spawnInNs, stop } from "../helpers/netns.js";
import { waitFor } from "../helpers/topology.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const TSX = join(ROOT, "node_modules/tsx/dist/loader.mjs");

describe("wasp daemon: starting without a config, refusing bad options and configs (integration, needs root)", function () {
  this.timeout(60_000);
  let node = "", work = "";
  before(() => {
    node = makeNs("node");
    work = mkdtempSync(join(tmpdir(), "wasp-daemon-cli-"));
  });
  after(() => {
    deleteAllNs();
    rmSync(work, { recursive: true, force: true });
  });

  const daemon = (...args: string[]) => spawnSync("ip", ["netns", "exec", node, process.execPath, "--import", `file://${TSX}`,
    join(ROOT, "src/main.ts"), "daemon", "--socket", join(work, "wasp.sock"), "--metrics-port", "0", ...args], { encoding: "utf8", timeout: 30_000 });

  it("an unknown option exits 2 with the usage", () => {
    const r = daemon("--frobnicate");
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /unknown option "--frobnicate"/);
    assert.match(r.stderr, /usage: wasp daemon/);
  });

  it("--help prints the usage on stdout and exits 0 without touching the node", () => {
    const r = daemon("--help");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /usage: wasp daemon/);
    assert.doesNotMatch(ip(node, "link", "show"), /wasp0/);
  });

  it("--metrics-port out of range exits 2 naming the value", () => {
    const r = daemon("--metrics-port", "70000");
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--metrics-port is "70000"; a port is 0-65535/);
  });

  it("without --config it serves the embedded demo config; after SIGTERM, --cleanup leaves the namespace as it found it", async () => {
    const rules = ip(node, "-4", "rule", "show");
    const child = spawnInNs(node, process.execPath, ["--import", `file://${TSX}`, join(ROOT, "src/main.ts"), "daemon",
      "--socket", join(work, "demo.sock"), "--metrics-port", "0"]);
    let log = "";
    child.stderr!.on("data", (d: Buffer) => { log += d.toString(); });
    try {
      await waitFor(() => log.includes('"msg":"serving"') || child.exitCode !== null, "the daemon to serve", 30_000);
      assert.match(log, /no --config: running the embedded demo config/);
      assert.match(log, /"services":5/, log); // web 80/TCP, dns 53/UDP+TCP, web-nodeport ClusterIP + NodePort
      assert.match(ip(node, "-4", "addr", "show", "dev", "wasp0"), /inet 10\.244\.1\.1\/32/);
    } finally {
      await stop(child);
    }
    assert.equal(child.exitCode, 0, log);
    assert.notEqual(ip(node, "-4", "rule", "show"), rules, "SIGTERM leaves the datapath for the next daemon");
    const c = daemon("--cleanup");
    assert.equal(c.status, 0, c.stderr);
    assert.equal(ip(node, "-4", "rule", "show"), rules);
    assert.throws(() => ip(node, "link", "show", "wasp0"), "no wasp0");
  });

  it("an invalid config exits 1 naming every problem, and touches neither links nor rules", () => {
    const rules = ip(node, "-4", "rule", "show"), links = ip(node, "-o", "link", "show");
    const file = join(work, "bad.yaml");
    writeFileSync(file, "node:\n  name: n\n  underlayIP: 10.99.0.1\n  podCIDR: 10.244.1.0/33\nservices:\n  - name: web\n    ports: [{ port: 70000 }]\n");
    const r = daemon("--config", file);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /invalid config \(2 problems\)/);
    assert.match(r.stderr, /node\.podCIDR/);
    assert.match(r.stderr, /services\[0\]\.ports\[0\]\.port is 70000/);
    assert.equal(ip(node, "-4", "rule", "show"), rules);
    assert.equal(ip(node, "-o", "link", "show"), links);
  });
});
