// README command 1, run as a person runs it (the TypeScript entry of scripts/demo.sh, without the
// install step): a demo node in namespaces of its own with traffic through every service of the
// embedded default config. The clients' own answers and the daemon's counters show the traffic;
// afterwards the kernel shows that no namespace, process or file of the run is left and that the
// root namespace's rules and routes are as they were.
import { strict as assert } from "node:assert";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CLIENT, SERVER } from "../../src/demo/workloads.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const TSX = join(ROOT, "node_modules/tsx/dist/loader.mjs");

/** The entries of the embedded default config (src/config/default.ts), as the summary names them. */
const ENTRIES = ["10.96.0.10:80/TCP", "10.96.0.53:53/UDP", "10.96.0.53:53/TCP", "10.96.0.11:80/TCP", "*:30080/TCP"];

interface Run { code: number | null; out: string; err: string; pid: number }

function runDemo(args: string[], signalAfterMs?: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", `file://${TSX}`, join(ROOT, "src/demo/main.ts"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { err += d.toString(); });
    // Once it is running (its table has begun), end it as `kill PID` would.
    const poll = signalAfterMs === undefined ? undefined : setInterval(() => {
      if (/^\s+\d+\s+\d+/m.test(out)) { clearInterval(poll); setTimeout(() => child.kill("SIGTERM"), signalAfterMs); }
    }, 100);
    const killer = setTimeout(() => child.kill("SIGKILL"), 110_000);
    child.on("error", reject);
    child.on("close", (code) => { clearTimeout(killer); clearInterval(poll); resolve({ code, out, err, pid: child.pid! }); });
  });
}

const netnsNames = () => execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n").map((l) => l.split(" ")[0]!).filter(Boolean);

/** PIDs of processes running the demo's server or client script (node -e SCRIPT). */
function workloadPids(): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let argv: string[];
    try { argv = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0"); } catch { continue; }
    if (argv.includes(SERVER) || argv.includes(CLIENT)) pids.push(Number(d));
  }
  return pids;
}

const rootPicture = () => ["rule", "route"].map((what) => execFileSync("ip", ["-4", what, "show"], { encoding: "utf8" })).join("\n");

/** The closing table's row of an entry: [flows, packets, ok, failed]. */
function entryRow(out: string, entry: string): number[] {
  const line = out.split("\n").find((l) => l.split(/\s{2,}/)[1] === entry);
  assert.ok(line, `no row for ${entry} in:\n${out}`);
  return line.trim().split(/\s{2,}/).slice(3, 7).map((c) => Number(c.split(" ")[0]));
}

function assertLeftNothing(r: Run, before: { picture: string; workloads: number[] }): void {
  const prefix = `wasp-demo-${r.pid}-`;
  assert.ok(r.out.includes(prefix), `the run names its namespaces ${prefix}*:\n${r.out}`);
  assert.deepEqual(netnsNames().filter((n) => n.startsWith(prefix)), [], "no namespace of the run is left");
  const daemonPid = Number(/wasp daemon \(pid (\d+)\)/.exec(r.out)?.[1]);
  assert.ok(daemonPid > 0, r.out);
  assert.ok(!existsSync(`/proc/${daemonPid}`), `the daemon (pid ${daemonPid}) is still running`);
  assert.deepEqual(workloadPids().filter((p) => !before.workloads.includes(p)), [], "no server or client of the run is left");
  const work = /control socket (\/\S+)\/run\/wasp\.sock/.exec(r.out)?.[1];
  assert.ok(work && !existsSync(work), `the temp dir ${work} is removed`);
  assert.equal(rootPicture(), before.picture, "the root namespace's rules and routes are unchanged");
  assert.match(r.out, /done: nothing the demo made is left\./);
}

describe("demo (README command 1): a node in namespaces of its own (integration, needs root)", function () {
  this.timeout(120_000);

  it("--seconds 6: traffic through every service of the default config and every backend, no drops, no failed request, exit 0, nothing left behind", async () => {
    const before = { picture: rootPicture(), workloads: workloadPids() };
    const r = await runDemo(["--seconds", "6"]);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.out}\n${r.err}`);
    assert.equal(r.err, "", "nothing on stderr");
    // The live summary: a row a second, each with traffic.
    const rows = r.out.split("\n").filter((l) => /^\s+\d+\s+\d+\s+\d+\s+\d+/.test(l));
    assert.ok(rows.length >= 4, `at least 4 live rows:\n${r.out}`);
    for (const row of rows.slice(1)) assert.ok(Number(row.trim().split(/\s+/)[1]) > 0, `packets/s > 0 in: ${row}`);
    const offload = /^datapath: offload/m.test(r.out);
    for (const entry of ENTRIES) {
      const [flows, packets, ok, failed] = entryRow(r.out, entry);
      // full-wasm: every packet of a flow crosses the engine; offload: its first (the kernel carries the rest, below)
      assert.ok(flows! > 0 && packets! >= flows! && (offload || packets! > flows!), `${entry}: flows ${flows}, packets ${packets}`);
      assert.ok(ok! > 0, `${entry}: the clients got answers (${ok})`);
      assert.equal(failed, 0, `${entry}: no failed request`);
    }
    if (offload) {
      const carried = Number(/the kernel carried the rest: (\d+) packets/.exec(r.out)?.[1]);
      const flows = ENTRIES.reduce((n, e) => n + entryRow(r.out, e)[0]!, 0);
      assert.ok(carried > flows, `the kernel carried ${carried} packets of ${flows} flows`);
    } else assert.match(r.out, /^datapath: full-wasm/m);
    assert.match(r.out, /^drops: none$/m);
    assert.match(r.out, /^clients: [1-9]\d* requests answered, 0 failed$/m);
    assert.match(r.out, /generation 1$/m);
    // Both web backends take new flows, and the dns pod answers: the servers' own counts.
    const answered = /^backends: web-1 answered (\d+), web-2 answered (\d+), dns answered (\d+)$/m.exec(r.out);
    assert.ok(answered, r.out);
    for (const n of answered.slice(1)) assert.ok(Number(n) > 0, answered[0]);
    assertLeftNothing(r, before);
  });

  it("SIGTERM mid-run ends it with exit 0, the summary printed and everything removed", async () => {
    const before = { picture: rootPicture(), workloads: workloadPids() };
    const r = await runDemo([], 1500);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.out}\n${r.err}`);
    assert.match(r.out, /^clients: [1-9]\d* requests answered, 0 failed$/m);
    assertLeftNothing(r, before);
  });
});
