// The CNI fast path. dist/wasp is a small C front door (native/front/wasp-front.c): for a runtime's
// CNI call it sends the CNI_* variables and the config here and prints what comes back, so a pod
// ADD costs no Node start-up (~110 ms) and no `ip` processes: the plugin code (src/cni/) runs in
// this process, its netlink requests off the JS thread. Without a daemon the front door runs the
// same plugin in wasp-node, so both paths give the same answers.
//
// Request: "NAME=value\0" for each CNI_* variable, "WASP_FRONT_NETNS=dev:ino\0" (the caller's network
// namespace), "WASP_FRONT_SANDBOX=dev:ino\0" (CNI_NETNS as the caller sees it, when it exists), "\0", stdin.
// Reply: one status byte (the exit code; 255 = not handled here, run the plugin yourself), stdout
// (after 255: why, which the front door passes on to wasp-node to record).
import { mkdirSync, rmSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { dirname } from "node:path";
import { DEFAULT_DATA_DIR } from "../cni/config.js";
import { listenPrivate } from "./control-socket.js";

export interface CniCall { env: NodeJS.ProcessEnv; stdin: string }
export type CniRunner = (call: CniCall) => Promise<{ stdout: string; exitCode: number }>;

export const NOT_HANDLED = 255;

/** What this daemon's CNI socket did since it started (wasp status, wasp doctor, metrics): each
 *  declined call cost the runtime a Node start-up in wasp-node. */
export const cniCalls = {
  socket: "",
  answered: 0,
  declined: 0,
  lastDeclined: undefined as { at: string; command: string; reason: string } | undefined,
  /** The wasp networks whose calls it answered (wasp doctor finds their IPAM stores by them). */
  networks: [] as ServedNetwork[],
};
export interface ServedNetwork { name: string; dataDir: string; podCIDR: string; podCIDRv6?: string; cniSocket?: string }

/** Remembers the network of an answered call (at most 16, the latest kept). */
function noteNetwork(stdin: string): void {
  let c: Record<string, unknown>;
  try { c = JSON.parse(stdin) as Record<string, unknown>; } catch { return; }
  if (typeof c?.name !== "string" || typeof c.podCIDR !== "string") return;
  const n: ServedNetwork = {
    name: c.name, dataDir: typeof c.dataDir === "string" ? c.dataDir : DEFAULT_DATA_DIR, podCIDR: c.podCIDR,
    ...(typeof c.podCIDRv6 === "string" ? { podCIDRv6: c.podCIDRv6 } : {}), ...(typeof c.cniSocket === "string" ? { cniSocket: c.cniSocket } : {}),
  };
  cniCalls.networks = [...cniCalls.networks.filter((x) => x.name !== n.name || x.dataDir !== n.dataDir), n].slice(-16);
}
const MAX_REQUEST = 4 << 20;
/** CNI calls run at once; the others wait their turn holding only their connection. A running call
 *  holds a few files (rtnetlink sockets, the pod's namespace, IPAM files), so a node starting 250
 *  pods at once stays far inside the common 1,024 open-file limit. More would not be faster: the
 *  kernel serializes link changes on the RTNL lock. */
export const CNI_PARALLEL = 16;

/** Runs at most `n` of the functions given to it at once, the others in the order they came. */
export function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async (fn) => {
    if (running >= n) await new Promise<void>((r) => waiting.push(r));
    else running++;
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next(); else running--;
    }
  };
}

/** dev:ino of a file as the front door prints it; undefined when it cannot be read. */
export function fileId(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** Splits a request into its variables and stdin; undefined when it is not one. */
export function parseRequest(req: Buffer): { vars: Map<string, string>; stdin: string } | undefined {
  const vars = new Map<string, string>();
  let at = 0;
  for (;;) {
    const end = req.indexOf(0, at);
    if (end < 0) return undefined;
    if (end === at) return { vars, stdin: req.subarray(end + 1).toString("utf8") };
    const kv = req.subarray(at, end).toString("utf8");
    const eq = kv.indexOf("=");
    if (eq <= 0) return undefined;
    vars.set(kv.slice(0, eq), kv.slice(eq + 1));
    at = end + 1;
  }
}

/**
 * Why this daemon must not run the call itself, or undefined when it can. The plugin works on the
 * namespaces the caller sees: a caller in another network namespace (a runtime inside a test
 * namespace, another daemon's node), or a sandbox path that is another file here than there (another
 * mount namespace, where the runtime's bind mount did not propagate) is the caller's own business;
 * the front door then runs the plugin itself.
 */
export function declineReason(vars: Map<string, string>, ownNetns: string | undefined, sandboxId = fileId): string | undefined {
  if (ownNetns === undefined || vars.get("WASP_FRONT_NETNS") !== ownNetns) return "the caller is in another network namespace";
  const netns = vars.get("CNI_NETNS");
  if (netns && vars.get("WASP_FRONT_SANDBOX") !== sandboxId(netns)) return `${netns} is not the same file here as for the caller`;
  return undefined;
}

export interface CniSocketLog {
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
}

export async function serveCni(path: string, run: CniRunner, log: CniSocketLog, parallel = CNI_PARALLEL): Promise<Server> {
  const inTurn = limiter(parallel);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  rmSync(path, { force: true });
  const own = fileId("/proc/self/ns/net");
  cniCalls.socket = path;
  // allowHalfOpen: the front door shuts its side down to say "that was all"; ours stays open for the reply.
  const server = createServer({ allowHalfOpen: true }, (conn) => {
    const chunks: Buffer[] = [];
    let size = 0;
    conn.on("data", (d: Buffer) => {
      size += d.length;
      if (size > MAX_REQUEST) { conn.destroy(); return; }
      chunks.push(d);
    });
    conn.on("error", () => conn.destroy());
    conn.on("end", () => {
      const req = parseRequest(Buffer.concat(chunks));
      const reply = (status: number, stdout = "") => { if (!conn.destroyed) conn.end(Buffer.concat([Buffer.from([status]), Buffer.from(stdout)])); };
      if (!req) { reply(NOT_HANDLED); return; }
      const why = declineReason(req.vars, own);
      if (why) {
        // Each decline costs the runtime a Node start-up: say why, so a slow node can be fixed.
        log.info({ command: req.vars.get("CNI_COMMAND"), containerId: req.vars.get("CNI_CONTAINERID"), reason: why }, "cni call declined");
        cniCalls.declined++;
        cniCalls.lastDeclined = { at: new Date().toISOString(), command: req.vars.get("CNI_COMMAND") ?? "", reason: why };
        reply(NOT_HANDLED, why);
        return;
      }
      const env: NodeJS.ProcessEnv = {};
      for (const [k, v] of req.vars) if (k.startsWith("CNI_")) env[k] = v;
      const t0 = performance.now();
      inTurn(() => run({ env, stdin: req.stdin })).then(({ stdout, exitCode }) => {
        reply(exitCode, stdout ? `${stdout}\n` : "");
        cniCalls.answered++;
        noteNetwork(req.stdin);
        const o = { command: env.CNI_COMMAND, containerId: env.CNI_CONTAINERID, exitCode, ms: Math.round((performance.now() - t0) * 10) / 10 };
        if (exitCode === 0) log.info(o, "cni call");
        else log.warn({ ...o, error: stdout }, "cni call failed");
      }, (e: Error) => {
        // handle() answers every failure as a CNI error; reaching here is a bug: let the plugin try.
        log.warn({ err: e.message }, "cni call threw; the front door runs the plugin itself");
        cniCalls.declined++;
        cniCalls.lastDeclined = { at: new Date().toISOString(), command: env.CNI_COMMAND ?? "", reason: `the plugin threw: ${e.message}` };
        reply(NOT_HANDLED, `the plugin threw in the daemon: ${e.message}`);
      });
    });
  });
  // Root only: a CNI call creates interfaces and hands out addresses.
  return listenPrivate(server, path, "the CNI socket");
}
