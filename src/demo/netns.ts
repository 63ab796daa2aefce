// The demo's network namespaces: named wasp-demo-<pid>-<name>, so that one run never touches a
// namespace it did not make (another run's, a test's, the root namespace). Every command names its
// namespace explicitly (`ip -n NS`, `ip netns exec NS`); nothing here runs in the root namespace
// except creating and deleting those namespaces.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";

export const NS_PREFIX = `wasp-demo-${process.pid}-`;

/** Runs a command and returns its stdout; throws with the command and its stderr on failure. */
export function sh(cmd: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === "ENOENT") throw new Error(`${cmd} is not installed. Install it (apt-get install iproute2) or run scripts/install-deps.sh`);
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err.stderr?.trim() || err.message}`);
  }
}

export function ip(ns: string, ...args: string[]): string {
  return sh("ip", ["-n", ns, ...args]);
}

export class Namespaces {
  private readonly made: string[] = [];

  /** A fresh namespace with lo up. */
  make(name: string): string {
    const ns = `${NS_PREFIX}${name}`;
    sh("ip", ["netns", "add", ns]);
    this.made.push(ns);
    ip(ns, "link", "set", "lo", "up");
    return ns;
  }

  /** A veth pair made inside nsA with its peer moved straight into nsB: no end ever sits in the root namespace. */
  veth(nsA: string, ifA: string, nsB: string, ifB: string): void {
    ip(nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB);
    ip(nsA, "link", "set", ifA, "up");
    ip(nsB, "link", "set", ifB, "up");
  }

  get names(): readonly string[] {
    return this.made;
  }

  /** Deletes the namespaces this run made, newest first; returns the ones that would not go. */
  removeAll(): string[] {
    const left: string[] = [];
    for (const ns of this.made.splice(0).reverse()) {
      try { sh("ip", ["netns", "del", ns]); } catch (e) { left.push(`${ns}: ${(e as Error).message}`); }
    }
    return left;
  }
}

/**
 * A long-running process inside ns. `ip netns exec` execs the command in place, so the child's PID
 * is the command's own. A process group of its own keeps the terminal's Ctrl-C away from it: the
 * demo ends its children itself, in order (the daemon first, so it removes its rules).
 */
export function spawnInNs(ns: string, cmd: string, args: readonly string[]): ChildProcess {
  return spawn("ip", ["netns", "exec", ns, cmd, ...args], { stdio: ["ignore", "pipe", "pipe"], detached: true });
}
