// Drives a CNI plugin binary exactly as a container runtime (libcni) does: CNI_* variables in the
// environment, the network config JSON on stdin, the result or error JSON read from stdout, the
// exit status. Optionally inside a "node" namespace (`ip netns exec NODE plugin`), as if the
// runtime ran there. Conflists follow the CNI spec: name and cniVersion copied into each plugin's
// config, runtimeConfig from the capabilities a plugin advertises, prevResult chained on ADD and
// given from the cached ADD result on CHECK and DEL (DEL in reverse order).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { join } from "node:path";

export interface CniCall {
  command: string;
  /** Each is left out of the environment when undefined (to test a missing variable). */
  containerId?: string;
  netns?: string;
  ifname?: string;
  args?: string;
  path?: string;
  /** An object is sent as JSON; a string is sent as is (to test malformed input). */
  config: unknown;
  /** Run inside this namespace (ip netns exec), as a runtime on that node would. */
  nodeNs?: string;
  timeoutMs?: number;
  /** Extra variables for the plugin's environment (not CNI_*; e.g. a test failpoint). */
  extraEnv?: Record<string, string>;
}

export interface CniOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, undefined when empty or not JSON. */
  json: any;
  ms: number;
}

function envFor(call: CniCall): NodeJS.ProcessEnv {
  // The runtime's own environment minus any CNI_* of ours, plus exactly the call's variables.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CNI_")) env[k] = v;
  env.CNI_COMMAND = call.command;
  const set = (k: string, v: string | undefined) => { if (v !== undefined) env[k] = v; };
  set("CNI_CONTAINERID", call.containerId);
  set("CNI_NETNS", call.netns);
  set("CNI_IFNAME", call.ifname);
  set("CNI_ARGS", call.args);
  set("CNI_PATH", call.path);
  return { ...env, ...call.extraEnv };
}

/** CHECK, DEL and GC succeed silently (CNI spec: they print nothing on success): exit 0, empty
 *  stdout. `what` names the call in the messages. */
export function expectQuietSuccess(out: CniOutcome, what = "the call"): void {
  assert.equal(out.exitCode, 0, `${what}: ${out.stdout}`);
  assert.equal(out.stdout, "", what);
}

/** Starts the plugin; the caller may kill `child` (by its PID) before `done` settles. */
export function startPlugin(plugin: string, call: CniCall): { child: ChildProcess; done: Promise<CniOutcome> } {
  const [cmd, argv] = call.nodeNs ? ["ip", ["netns", "exec", call.nodeNs, plugin]] : [plugin, []];
  const t0 = process.hrtime.bigint();
  // `ip netns exec` execs the plugin in place, so the child's PID is the plugin's own.
  const child = spawn(cmd, argv as string[], { env: envFor(call), stdio: ["pipe", "pipe", "pipe"] });
  const done = new Promise<CniOutcome>((resolve, reject) => {
    let stdout = "", stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), call.timeoutMs ?? 30_000);
    child.on("error", (e) => { clearTimeout(timer); reject(e); });
    child.on("close", (exitCode, signal) => {
      clearTimeout(timer);
      let json: any;
      try { json = stdout.trim() ? JSON.parse(stdout) : undefined; } catch { json = undefined; }
      resolve({ exitCode, signal, stdout, stderr, json, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
    });
  });
  child.stdin!.on("error", () => { /* a plugin may exit without reading stdin */ });
  child.stdin!.end(typeof call.config === "string" ? call.config : JSON.stringify(call.config));
  return { child, done };
}

export function execPlugin(plugin: string, call: CniCall): Promise<CniOutcome> {
  return startPlugin(plugin, call).done;
}

// ── conflists ───────────────────────────────────────────────────────────────────────────────────

export interface Conflist {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  plugins: Array<Record<string, unknown> & { type: string }>;
}

/** Finds `type` in the CNI_PATH directories, as libcni does. */
export function findPlugin(type: string, cniPath: string): string {
  for (const dir of cniPath.split(":").filter(Boolean)) {
    const p = join(dir, type);
    try { accessSync(p, constants.X_OK); return p; } catch { /* next */ }
  }
  throw new Error(`plugin ${type} not found in CNI_PATH ${cniPath}`);
}

/**
 * The config libcni gives plugin i of a list: the list's name and cniVersion injected, the
 * capability arguments the plugin advertises under runtimeConfig, and prevResult when there is one.
 */
export function pluginConfig(list: Conflist, i: number, prevResult?: unknown, capabilityArgs: Record<string, unknown> = {}): Record<string, unknown> {
  const p = list.plugins[i]!;
  const conf: Record<string, unknown> = { ...p, name: list.name, cniVersion: list.cniVersion };
  const caps = (p.capabilities ?? {}) as Record<string, boolean>;
  const rc: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(capabilityArgs)) if (caps[k]) rc[k] = v;
  if (Object.keys(rc).length) conf.runtimeConfig = { ...((p.runtimeConfig as object) ?? {}), ...rc };
  if (prevResult !== undefined) conf.prevResult = prevResult;
  return conf;
}

export type Attachment = Omit<CniCall, "command" | "config">;

export interface ListOutcome {
  ok: boolean;
  /** The last plugin's result (ADD) or undefined. */
  result?: any;
  /** Every plugin call made, in order. */
  steps: Array<{ type: string; outcome: CniOutcome }>;
}

async function runList(command: string, list: Conflist, at: Attachment, order: number[], prev: (i: number, last: any) => unknown, capabilityArgs?: Record<string, unknown>): Promise<ListOutcome> {
  const steps: ListOutcome["steps"] = [];
  let last: any;
  for (const i of order) {
    const type = list.plugins[i]!.type;
    const outcome = await execPlugin(findPlugin(type, at.path ?? ""), { ...at, command, config: pluginConfig(list, i, prev(i, last), capabilityArgs) });
    steps.push({ type, outcome });
    if (outcome.exitCode !== 0) return { ok: false, steps }; // CNI spec: stop at the first error
    if (command === "ADD") last = outcome.json;
  }
  return { ok: true, result: last, steps };
}

export function addList(list: Conflist, at: Attachment, capabilityArgs?: Record<string, unknown>): Promise<ListOutcome> {
  return runList("ADD", list, at, list.plugins.map((_, i) => i), (i, last) => (i === 0 ? undefined : last), capabilityArgs);
}

export function checkList(list: Conflist, at: Attachment, addResult: unknown, capabilityArgs?: Record<string, unknown>): Promise<ListOutcome> {
  return runList("CHECK", list, at, list.plugins.map((_, i) => i), () => addResult, capabilityArgs);
}

export function delList(list: Conflist, at: Attachment, addResult: unknown, capabilityArgs?: Record<string, unknown>): Promise<ListOutcome> {
  return runList("DEL", list, at, list.plugins.map((_, i) => i).reverse(), () => addResult, capabilityArgs);
}
