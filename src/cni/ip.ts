// iproute2 for what only reads (CHECK, doctor): `ip -j` in the node's or a pod's namespace.
// ADD, DEL and GC change links through src/netlink/ (no process spawned).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";

/** Where a command runs: the plugin's own ("node") namespace, or a pod's namespace by path. */
export type Ns = { kind: "self" } | { kind: "path"; path: string };
export const SELF: Ns = { kind: "self" };

export class IpError extends Error {
  constructor(readonly what: string, readonly stderr: string) {
    super(`${what}: ${stderr.trim().split("\n").filter((l) => !/^Command failed/.test(l)).join("; ") || "failed"}`);
  }
}

// `ip -n NAME` only takes names under /var/run/netns; any other path (/proc/PID/ns/net) goes via nsenter.
function argv(ns: Ns, args: string[]): [string, string[]] {
  if (ns.kind === "self") return ["ip", args];
  const m = /^\/(?:var\/)?run\/netns\/([^/]+)$/.exec(ns.path);
  if (m) return ["ip", ["-n", m[1]!, ...args]];
  return ["nsenter", [`--net=${ns.path}`, "ip", ...args]];
}

function run(ns: Ns, args: string[], input: string | undefined, what: string): Promise<string> {
  const [cmd, a] = argv(ns, args);
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, a, { stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    let out = "", err = "";
    p.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    p.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
    p.on("error", (e) => reject(new IpError(what, `cannot run ${cmd}: ${e.message}`)));
    p.on("close", (code) => (code === 0 ? resolve(out) : reject(new IpError(what, err || `${cmd} exited with ${code}`))));
    if (p.stdin) {
      p.stdin.on("error", () => { /* ip exited before reading all of it; its exit status tells */ });
      p.stdin.end(input);
    }
  });
}

export async function ipJson<T>(ns: Ns, args: string[], what: string): Promise<T> {
  const out = await run(ns, ["-j", ...args], undefined, what);
  return (out.trim() ? JSON.parse(out) : []) as T;
}

/** Interface names of the caller's namespace, read from /proc (no process spawned). */
export function localLinks(): Set<string> {
  // /proc/self/net is the net namespace of this process, whatever /sys is mounted from.
  const text = readFileSync("/proc/self/net/dev", "utf8");
  const names = new Set<string>();
  for (const line of text.split("\n").slice(2)) {
    const i = line.indexOf(":");
    if (i > 0) names.add(line.slice(0, i).trim());
  }
  return names;
}

/** The devices the main table routes exactly `ip`/32 (/128) to, read from /proc (IPv4: net/route,
 *  little-endian hex; IPv6: net/ipv6_route), in the caller's namespace. */
export function hostRouteDevices(ip: string): string[] {
  const v6 = ip.includes(":");
  let text = "";
  try { text = readFileSync(v6 ? "/proc/self/net/ipv6_route" : "/proc/self/net/route", "utf8"); } catch { return []; }
  const out: string[] = [];
  if (!v6) {
    const want = ip.split(".").map(Number).reverse().map((b) => b.toString(16).padStart(2, "0")).join("").toUpperCase();
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 8 && f[1] === want && f[7] === "FFFFFFFF") out.push(f[0]!);
    }
    return out;
  }
  const want = expand6(ip);
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 10 && f[0] === want && f[1] === "80") out.push(f[9]!);
  }
  return out;
}

/** 32 hex digits of an IPv6 address, as /proc/net/ipv6_route writes it. */
function expand6(ip: string): string {
  const [h = "", t = ""] = ip.split("::");
  const hw = h ? h.split(":") : [], tw = ip.includes("::") ? (t ? t.split(":") : []) : [];
  return [...hw, ...Array(8 - hw.length - tw.length).fill("0"), ...tw].map((w) => w.padStart(4, "0")).join("").toLowerCase();
}
