// Many pods at once, and plugins killed mid-ADD: the IPAM store never hands out an address twice,
// and GC leaves nothing of a killed ADD behind; 250 pods at once under a 1,024 open-file limit,
// exec'd and through the daemon. Same runtime-style driver as cni.test.ts.
import assert from "node:assert/strict";
import { execFileSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execPlugin, startPlugin, type CniOutcome } from "../helpers/cni-driver.js";
import { deleteAllNs, inNs, ip, makeNs, spawnInNs, stop, sysctl } from "../helpers/netns.js";
import { waitFor } from "../helpers/topology.js";
import { hostVethName } from "../../src/cni/names.js";
import { ownerKey } from "../../src/ipam/index.js";

const WASP = new URL("../../bin/wasp-dev", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const waspLinks = (ns: string) =>
  (JSON.parse(ip(ns, "-j", "link", "show")) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => /^wasp[0-9a-f]{11}$/.test(n)).sort();
const ping = (ns: string, addr: string) => { try { inNs(ns, "busybox", "ping", "-c1", "-W1", addr); return true; } catch { return false; } };

describe("cni plugin at scale: parallel ADD/DEL and kill -9", function () {
  this.timeout(300_000);
  let dataDir: string, node: string;
  const conf = () => ({ cniVersion: "1.1.0", name: "waspnet", type: "wasp", podCIDR: "10.244.1.0/24", dataDir });
  const storeFiles = () => fs.readdirSync(join(dataDir, "waspnet")).sort();
  const records = () => storeFiles().filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  const run = (command: string, pod: string | undefined, config: unknown, containerId = `cid-${pod}`) =>
    ({ command, containerId, netns: pod ? `/var/run/netns/${pod}` : "", ifname: "eth0", path: "/usr/lib/cni", config, nodeNs: node, timeoutMs: 120_000 });

  beforeEach(() => {
    dataDir = fs.mkdtempSync(join(tmpdir(), "wasp-cni-scale-"));
    node = makeNs("node");
    sysctl(node, "net.ipv4.ip_forward", 1);
    ip(node, "link", "add", "wasp0", "type", "bridge");
    ip(node, "addr", "add", "10.244.1.1/32", "dev", "wasp0");
    ip(node, "link", "set", "wasp0", "up");
  });
  afterEach(() => {
    deleteAllNs();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("20 ADDs in parallel get 20 distinct addresses and every pod answers the node's ping; 20 parallel DELs empty the pool and leave no veth", async () => {
    // each call starts the TypeScript sources (bin/wasp-dev): 20 at once keep this under half a minute
    const pods = Array.from({ length: 20 }, () => makeNs("pod"));
    const adds = await Promise.all(pods.map((p) => execPlugin(WASP, run("ADD", p, conf()))));
    adds.forEach((r, i) => assert.equal(r.exitCode, 0, `ADD ${i}: ${r.stdout}${r.stderr}`));
    const addrs = adds.map((r) => r.json.ips[0].address.split("/")[0] as string);
    assert.equal(new Set(addrs).size, 20);
    assert.equal(records().length, 20);
    assert.equal(waspLinks(node).length, 20);
    const unreachable = addrs.filter((a) => !ping(node, a));
    assert.deepEqual(unreachable, []);
    assert.ok(ping(pods[0]!, addrs[19]!), "first pod reaches the last");

    const dels = await Promise.all(pods.map((p, i) => execPlugin(WASP, run("DEL", p, { ...conf(), prevResult: adds[i]!.json }))));
    dels.forEach((r, i) => assert.equal(r.exitCode, 0, `DEL ${i}: ${r.stdout}${r.stderr}`));
    assert.deepEqual(storeFiles(), [".owners", "last_reserved_ip.0"], "only bookkeeping is left");
    assert.deepEqual(fs.readdirSync(join(dataDir, "waspnet", ".owners")), ["indexed"], "and no pod's index entry");
    assert.deepEqual(waspLinks(node), []);
  });

  for (const [point, leaves] of [["after-claim", "an address record"], ["after-veth", "a record and a veth"], ["after-pod", "a complete attachment"]] as const) {
    it(`SIGKILL ${point.replace("-", " ")} leaves ${leaves}; a retried ADD reuses the address, and GC without that attachment removes all of it`, async () => {
      const pod = makeNs("pod");
      const k = await execPlugin(WASP, { ...run("ADD", pod, conf()), extraEnv: { WASP_CNI_FAILPOINT: point } });
      assert.equal(k.signal, "SIGKILL");
      assert.deepEqual(records(), ["10.244.1.2"], "the claim survived the kill");
      assert.equal(waspLinks(node).length, point === "after-claim" ? 0 : 1);

      // A retried ADD of the same attachment (what a runtime does) gets the address back and a fresh veth.
      const retry = await execPlugin(WASP, run("ADD", pod, conf()));
      assert.equal(retry.exitCode, 0, retry.stdout);
      assert.equal(retry.json.ips[0].address, "10.244.1.2/32");
      assert.deepEqual(waspLinks(node), [hostVethName(`cid-${pod}`, "eth0")]);
      assert.ok(ping(node, "10.244.1.2"), "the node pings the pod the retried ADD wired");

      // Killed again, and this time the runtime has given up on the pod: GC removes everything.
      const k2 = await execPlugin(WASP, { ...run("ADD", pod, conf()), extraEnv: { WASP_CNI_FAILPOINT: point } });
      assert.equal(k2.signal, "SIGKILL");
      const gc = await execPlugin(WASP, { ...run("GC", undefined, { ...conf(), "cni.dev/valid-attachments": [] }), containerId: undefined, ifname: undefined, netns: undefined });
      assert.equal(gc.exitCode, 0, gc.stdout);
      assert.deepEqual(records(), []);
      assert.deepEqual(waspLinks(node), []);
      assert.deepEqual(storeFiles().filter((f) => f.startsWith(".tmp-") || f === "lock"), []);
      assert.deepEqual((JSON.parse(ip(pod, "-j", "link", "show")) as Array<{ ifname: string }>).map((l) => l.ifname), ["lo"]);
    });
  }

  it("kill -9 of plugins in the middle of ADD, then GC with the survivors as valid attachments: no leaked address, veth, temp file or lock", async () => {
    const pods = Array.from({ length: 20 }, () => makeNs("pod"));
    const started = pods.map((p) => startPlugin(WASP, run("ADD", p, conf())));
    // Kill every other plugin at a different moment: during Node's start-up, IPAM, or the ip calls.
    const kills = started.map(async (s, i) => {
      if (i % 2 === 1) return;
      await sleep(300 + i * 150);
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGKILL"); // by its PID
    });
    const outcomes: CniOutcome[] = await Promise.all(started.map((s) => s.done));
    await Promise.all(kills);
    const killed = outcomes.filter((o) => o.signal === "SIGKILL").length;
    assert.ok(killed >= 3, `only ${killed} plugins were killed mid-ADD; the test proves nothing`);
    await sleep(1000); // an `ip` a killed plugin had started finishes on its own

    const survivors = pods.filter((_, i) => outcomes[i]!.exitCode === 0);
    const valid = survivors.map((p) => ({ containerID: `cid-${p}`, ifname: "eth0" }));
    const gc = await execPlugin(WASP, { ...run("GC", undefined, { ...conf(), "cni.dev/valid-attachments": valid }), containerId: undefined, ifname: undefined, netns: undefined });
    assert.equal(gc.exitCode, 0, gc.stdout + gc.stderr);

    const survivorAddrs = survivors.map((p) => outcomes[pods.indexOf(p)]!.json.ips[0].address.split("/")[0] as string).sort();
    assert.deepEqual(records().sort(), survivorAddrs);
    assert.deepEqual(waspLinks(node), survivors.map((p) => hostVethName(`cid-${p}`, "eth0")).sort());
    assert.deepEqual(storeFiles().filter((f) => f.startsWith(".tmp-") || f === "lock"), []);
    for (const [i, p] of pods.entries()) {
      if (outcomes[i]!.exitCode === 0) continue;
      const podLinks = (JSON.parse(ip(p, "-j", "link", "show")) as Array<{ ifname: string }>).map((l) => l.ifname);
      assert.deepEqual(podLinks, ["lo"], `killed pod ${i} keeps no interface`);
    }
    for (const a of survivorAddrs) assert.ok(ping(node, a), `survivor ${a} still reachable after GC`);
  });
});

// The issue this answers: each call read every address record at once, so 226 parallel DELs in
// one process (the daemon) failed with EMFILE and leaked their addresses. Here every process runs
// under the common 1,024 open-file limit (soft and hard, so Node cannot raise it), beside 2,000
// other pods' records written as host-local writes them; one pod's ADD and DEL come first, as on a
// node just upgraded (that first call indexes the records), then many at once: 250 through the
// daemon, 24 exec'd plugins. The timeouts are generous.
describe("cni plugin at scale: parallel ADDs and DELs under a 1,024 open-file limit (250 through the daemon), beside 2,000 other pods", function () {
  this.timeout(2_400_000);
  const ROOT = new URL("../..", import.meta.url).pathname;
  const OTHERS = 2000;
  let work = "", dataDir = "", node = "", limited = "";
  let daemon: ChildProcess | undefined, log = "";

  const records = () => fs.readdirSync(join(dataDir, "bignet")).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  const conf = () => ({ cniVersion: "1.0.0", name: "bignet", type: "wasp", podCIDR: "10.244.0.0/16", dataDir });

  before(function () {
    // dist/wasp (the front door) and wasp-node, built from these sources: a Node start-up per call
    // from the TypeScript sources would cost 0.8 s of CPU each.
    const built = fs.existsSync(join(ROOT, "dist/wasp-node")) ? fs.statSync(join(ROOT, "dist/wasp-node")).mtimeMs : 0;
    if (newestSource(join(ROOT, "src")) > built) execFileSync("npm", ["run", "--silent", "build:sea"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    work = fs.mkdtempSync(join(tmpdir(), "wasp-cni-fds-"));
    limited = join(work, "wasp");
    // what a runtime started under `ulimit -n 1024` would exec
    fs.writeFileSync(limited, `#!/bin/sh\nulimit -n 1024 || exit 99\nexec ${join(ROOT, "dist/wasp")} "$@"\n`, { mode: 0o755 });
  });
  beforeEach(() => {
    dataDir = join(work, `ipam-${Date.now()}`);
    fs.mkdirSync(join(dataDir, "bignet"), { recursive: true });
    for (let i = 0; i < OTHERS; i++) fs.writeFileSync(join(dataDir, "bignet", `10.244.${100 + (i >> 8)}.${i & 255}`), `other-${i}\r\neth0`);
    node = makeNs("node");
    sysctl(node, "net.ipv4.ip_forward", 1);
    ip(node, "link", "add", "wasp0", "type", "bridge");
    ip(node, "addr", "add", "10.244.0.1/32", "dev", "wasp0");
    ip(node, "link", "set", "wasp0", "up");
  });
  afterEach(async () => {
    if (daemon) await stop(daemon);
    daemon = undefined;
    deleteAllNs();
  });
  after(() => { if (work) fs.rmSync(work, { recursive: true, force: true }); });

  const call = (command: string, pod: string, config: unknown, socket: string) => execPlugin(limited, {
    command, containerId: `cid-${pod}`, netns: `/var/run/netns/${pod}`, ifname: "eth0", path: join(ROOT, "dist"), config, nodeNs: node,
    timeoutMs: 1_200_000, extraEnv: { WASP_WASM: "", WASP_NATIVE: "", NODE_OPTIONS: "", WASP_CNI_SOCKET: socket },
  });

  /** n ADDs at once, then n DELs at once; every call succeeds and nothing of them is left. */
  async function addAndDel(socket: string, n: number): Promise<void> {
    const first = makeNs("first");
    const add = await call("ADD", first, conf(), socket);
    assert.equal(add.exitCode, 0, `the first pod's ADD: ${add.stdout}${add.stderr}`);
    const del = await call("DEL", first, { ...conf(), prevResult: add.json }, socket);
    assert.equal(del.exitCode, 0, `the first pod's DEL: ${del.stdout}${del.stderr}`);

    const pods = Array.from({ length: n }, () => makeNs("big"));
    const adds = await Promise.all(pods.map((p) => call("ADD", p, conf(), socket)));
    const failedAdds = adds.map((r, i) => ({ i, r })).filter(({ r }) => r.exitCode !== 0);
    assert.deepEqual(failedAdds.map(({ i, r }) => `ADD ${i}: ${r.exitCode} ${r.stdout}${r.stderr}`).slice(0, 5), [], `${failedAdds.length} of ${n} ADDs failed`);
    const addrs = adds.map((r) => (r.json.ips[0].address as string).split("/")[0]!);
    assert.equal(new Set(addrs).size, n, `${n} distinct addresses`);
    assert.equal(records().length, OTHERS + n);
    assert.equal(waspLinks(node).length, n, "a host veth per pod");
    for (const i of [0, n >> 1, n - 1]) assert.ok(ping(node, addrs[i]!), `the node pings pod ${i} at ${addrs[i]}`);

    const dels = await Promise.all(pods.map((p, i) => call("DEL", p, { ...conf(), prevResult: adds[i]!.json }, socket)));
    const failedDels = dels.map((r, i) => ({ i, r })).filter(({ r }) => r.exitCode !== 0);
    assert.deepEqual(failedDels.map(({ i, r }) => `DEL ${i}: ${r.exitCode} ${r.stdout}${r.stderr}`).slice(0, 5), [], `${failedDels.length} of ${n} DELs failed`);
    assert.deepEqual(records().filter((f) => addrs.includes(f)), [], "no address of a deleted pod is left");
    assert.equal(records().length, OTHERS, "the other pods' records are untouched");
    assert.deepEqual(waspLinks(node), []);
    const left = fs.readdirSync(join(dataDir, "bignet")).filter((f) => !/^\d+\.\d+\.\d+\.\d+$/.test(f) && f !== "last_reserved_ip.0" && f !== ".owners");
    assert.deepEqual(left, [], "no temp file or lock outlives the calls");
    const ownerDirs = new Set(fs.readdirSync(join(dataDir, "bignet", ".owners")));
    assert.deepEqual(pods.filter((p) => ownerDirs.has(ownerKey({ containerId: `cid-${p}`, ifname: "eth0" }))), [], "no index entry of a deleted pod is left");
    assert.deepEqual([...ownerDirs].filter((f) => f.endsWith(".lock")), [], "no owner's lock is left");
  }

  // 24 processes at once: what each call opens does not depend on how many run (the first pod's
  // ADD and DEL beside 2,000 records already show a call's cost); 250 Node start-ups at once would
  // take five minutes of a 2-core machine's CI time
  it("each plugin exec'd as a runtime does (front door, then wasp-node), under ulimit -n 1024: 24 ADDs and DELs at once succeed, nothing leaks", async () => {
    await addAndDel(join(work, "no-daemon.sock"), 24);
  });

  it("through a daemon limited to 1,024 open files (prlimit), which runs every call in-process: all 250 ADDs and DELs succeed, nothing leaks", async () => {
    const sock = join(work, "wasp.sock");
    daemon = spawnInNs(node, "prlimit", ["--nofile=1024:1024", join(ROOT, "bin/wasp-dev"), "daemon", "--socket", sock, "--metrics-port", "0", "--healthz-bind-address", ""]);
    log = "";
    daemon.stdout!.on("data", (d: Buffer) => { log += d.toString(); });
    daemon.stderr!.on("data", (d: Buffer) => { log += d.toString(); });
    await waitFor(() => log.includes('"msg":"serving"') || daemon!.exitCode !== null, "the daemon to serve", 60_000);
    assert.match(log, /"msg":"serving"/, log);
    assert.match(fs.readFileSync(`/proc/${daemon.pid}/limits`, "utf8"), /Max open files\s+1024\s+1024/, "the daemon runs under the limit");
    await addAndDel(join(work, "cni.sock"), 250);
    const served = log.split("\n").filter((l) => l.includes('"msg":"cni call"')).length;
    assert.equal(served, 502, "the daemon answered every ADD and DEL itself (none fell back to wasp-node)");
    assert.doesNotMatch(log, /EMFILE/);
    assert.equal(daemon.exitCode, null, "the daemon still runs");
  });
});

/** The newest modification time of a file under dir. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) newest = Math.max(newest, fs.statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}
