// Network namespaces for tests: unique names per run (wasp-t-<pid>-<n>), removed in after(),
// also when a test fails. Nothing here touches the root namespace's links, routes or rules.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";

let counter = 0;
const created = new Set<string>();

/** Runs a command and returns its stdout; throws with stderr in the message on failure. */
export function sh(cmd: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err.stderr?.trim() || err.message}`);
  }
}

/** `ip` with arguments; `ip -n NS ...` when ns is given. */
export function ip(ns: string | undefined, ...args: string[]): string {
  return sh("ip", ns ? ["-n", ns, ...args] : args);
}

/** Runs a command inside the namespace and returns stdout. */
export function inNs(ns: string, cmd: string, ...args: string[]): string {
  return sh("ip", ["netns", "exec", ns, cmd, ...args]);
}

/** Starts a long-running command inside the namespace; the caller ends it by PID (see stop()). */
export function spawnInNs(ns: string, cmd: string, args: readonly string[]): ChildProcess {
  return spawn("ip", ["netns", "exec", ns, cmd, ...args], { stdio: ["ignore", "pipe", "pipe"] });
}

/** Creates a fresh namespace with lo up; its name is unique to this process and call. */
export function makeNs(tag = ""): string {
  const name = `wasp-t-${process.pid}-${++counter}${tag ? `-${tag}` : ""}`;
  sh("ip", ["netns", "add", name]);
  created.add(name);
  ip(name, "link", "set", "lo", "up");
  return name;
}

export function deleteNs(name: string): void {
  if (!created.delete(name)) return;
  try { sh("ip", ["netns", "del", name]); } catch { /* already gone */ }
}

/** Removes every namespace this process created (for after() hooks and exit handlers). */
export function deleteAllNs(): void {
  for (const n of [...created]) deleteNs(n);
}

/** Connects two namespaces with a veth pair; returns nothing, names are the caller's. */
export function veth(nsA: string, ifA: string, nsB: string, ifB: string): void {
  sh("ip", ["link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB]);
  ip(nsA, "link", "set", ifA, "up");
  ip(nsB, "link", "set", ifB, "up");
}

export function sysctl(ns: string, key: string, value: string | number): void {
  inNs(ns, "sysctl", "-qw", `${key}=${value}`);
}

/** Ends a process this test started (by its PID) and waits for it to exit. */
export async function stop(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  // A daemon undoes its node picture on SIGTERM; on a loaded machine that can take seconds.
  const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
  await exited;
  clearTimeout(timer);
}

process.on("exit", deleteAllNs);
