// README command 1 (`sudo bash scripts/demo.sh [--seconds N] [--offline]`): a demo node on this
// machine in network namespaces of its own (see node.ts), traffic through every service of the
// embedded default config, and a summary from the daemon's control socket once a second. It runs
// until Ctrl-C or SIGTERM, or for N seconds; whichever way it ends (an error included) it removes
// everything it made. Nothing in the root namespace is changed.
import { accessSync, constants, existsSync } from "node:fs";
import { join } from "node:path";
import { NS_PREFIX } from "./netns.js";
import { Aborted, DemoNode, ROOT, TSX_LOADER } from "./node.js";
import { runOfflineDemo } from "./offline.js";
import { askControl, finalReport, SummaryTable, type Sample, type ServiceRow, type Status } from "./summary.js";

export const DEMO_USAGE = `usage: scripts/demo.sh [--seconds N] [--offline]

  --seconds N   stop after N seconds (default: run until Ctrl-C or SIGTERM)
  --offline     only the wasm core in this process on synthetic packets (no root, no namespaces)
`;

export interface DemoOptions { seconds?: number; offline: boolean }

export function parseDemoArgs(argv: readonly string[]): DemoOptions | { error: string } {
  const o: DemoOptions = { offline: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--offline") o.offline = true;
    else if (a === "--seconds" || a.startsWith("--seconds=")) {
      const v = a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[++i];
      const n = Number(v);
      if (v === undefined || v === "" || !Number.isFinite(n) || n <= 0) return { error: `--seconds is ${JSON.stringify(v ?? "")}; give a positive number of seconds` };
      o.seconds = n;
    } else if (a === "--help" || a === "-h") return { error: "" };
    else return { error: `unknown option ${JSON.stringify(a)}` };
  }
  return o;
}

/** What the node demo needs from this machine, as sentences that say what to do; empty when all is there. */
export function preflight(): string[] {
  const out: string[] = [];
  if (process.getuid?.() !== 0) out.push("the demo makes network namespaces and a TUN device, which takes root: run it as root (sudo bash scripts/demo.sh), or see the core alone with --offline");
  try { accessSync("/dev/net/tun", constants.R_OK | constants.W_OK); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    out.push(code === "ENOENT"
      ? "/dev/net/tun is missing (ENOENT), so the daemon cannot open wasp0. Load the module: modprobe tun (in a container: run it with --device /dev/net/tun)"
      : `cannot open /dev/net/tun (${code}). Run as root, or give the container the device (--device /dev/net/tun --cap-add NET_ADMIN)`);
  }
  if (!existsSync(TSX_LOADER)) out.push(`${TSX_LOADER} is missing: the npm packages are not installed. Run scripts/install-deps.sh (or npm ci)`);
  if (!existsSync(join(ROOT, "build/wasp.wasm"))) out.push("build/wasp.wasm is missing: the wasm core is not built. Run npm run build:wasm (or scripts/install-deps.sh)");
  if (!existsSync(join(ROOT, "native/build/Release/wasp_native.node"))) out.push("native/build/Release/wasp_native.node is missing: the N-API addon is not built. Run npm run build:native (or scripts/install-deps.sh)");
  return out;
}

const say = (line = "") => process.stdout.write(`${line}\n`);
const fail = (line: string) => process.stderr.write(`demo: ${line}\n`);

async function sample(node: DemoNode): Promise<Sample> {
  const [status, services] = await Promise.all([
    askControl<Status>(node.socketPath, { cmd: "status" }),
    askControl<{ services: ServiceRow[] }>(node.socketPath, { cmd: "services" }),
  ]);
  let answered = 0, failed = 0;
  for (const c of node.clientTotals().values()) { answered += c.ok; failed += c.failed; }
  return { atMs: Date.now(), status, services: services.services, answered, failed };
}

/** Runs the node demo; resolves with the exit code. Every way out passes through node.destroy(). */
export async function runNodeDemo(seconds: number | undefined): Promise<number> {
  const problems = preflight();
  if (problems.length) {
    for (const p of problems) fail(p);
    return 1;
  }
  let stopWhy: string | undefined;
  let wake: () => void = () => {};
  const stop = (why: string) => {
    if (stopWhy) { if (why.startsWith("SIG")) fail("still removing what the demo made; a moment, please"); return; }
    stopWhy = why;
    wake();
  };
  const onSignal = (sig: NodeJS.Signals) => stop(sig);
  const onCrash = (e: unknown) => { fail(`unexpected error: ${(e as Error)?.stack ?? String(e)}`); stop("error"); };
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(s, onSignal);
  process.on("uncaughtException", onCrash);
  process.on("unhandledRejection", onCrash);
  const sleep = (ms: number) => new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    wake = () => { clearTimeout(t); resolve(); };
  });

  const node = new DemoNode(() => stopWhy !== undefined);
  let code = 0;
  say(`wasp demo: a node in network namespaces of its own (${NS_PREFIX}*) on the embedded default config`);
  try {
    await node.build((line) => say(`  ${line}`));
    const t0 = Date.now();
    let prev = await sample(node);
    const first = prev;
    const table = new SummaryTable(prev.services);
    say();
    say(seconds ? `Running for ${seconds} s (Ctrl-C ends it sooner).` : "Running until Ctrl-C.");
    say();
    for (const h of table.header()) say(h);
    const endAt = seconds ? t0 + seconds * 1000 : Infinity;
    while (!stopWhy) {
      await sleep(Math.min(1000 - ((Date.now() - t0) % 1000), endAt - Date.now()));
      if (stopWhy) break;
      const broken = node.broken();
      if (broken) throw new Error(broken);
      const cur = await sample(node);
      if (cur.atMs - prev.atMs >= 500) { say(table.row(cur, prev, (cur.atMs - t0) / 1000)); prev = cur; }
      if (Date.now() >= endAt) break;
    }
    const last = await sample(node);
    say();
    for (const l of finalReport(last, (last.atMs - first.atMs) / 1000, node.clientTotals(), node.serverTotals())) say(l);
    if (stopWhy === "error") code = 1;
  } catch (e) {
    if (e instanceof Aborted) say(`stopped (${stopWhy}) before the node was ready.`);
    else {
      fail((e as Error).message);
      code = 1;
    }
  } finally {
    say();
    say(`stopping: the daemon first (SIGTERM: it removes its rules), servers, clients; CNI DEL for ${node.pods.length} pods;`);
    say(`          deleting ${node.nss.names.length} namespaces and ${node.work}`);
    const left = await node.destroy();
    if (left.length) {
      for (const l of left) fail(`left behind: ${l}`);
      fail("remove what is listed above by hand (ip netns del NAME; kill PID)");
      code = 1;
    } else {
      say("done: nothing the demo made is left.");
    }
    for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.off(s, onSignal);
    process.off("uncaughtException", onCrash);
    process.off("unhandledRejection", onCrash);
  }
  return code;
}

const opts = parseDemoArgs(process.argv.slice(2));
if ("error" in opts) {
  if (opts.error) process.stderr.write(`demo: ${opts.error}\n\n`);
  process.stderr.write(DEMO_USAGE);
  process.exitCode = opts.error ? 2 : 0;
} else if (opts.offline) {
  await runOfflineDemo(opts.seconds ?? 10);
} else {
  process.exitCode = await runNodeDemo(opts.seconds);
}
