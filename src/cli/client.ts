// The CLI's side of the control socket: one JSON request per connection, one JSON line back.
import { createConnection } from "node:net";

export const DEFAULT_SOCKET = "/run/wasp/wasp.sock";

/** Exit codes every command keeps (documented in `wasp --help` and the README). */
export const EXIT = {
  OK: 0,
  /** The command ran and the answer is "something is wrong" (doctor found a problem; the daemon refused the request). */
  FAILED: 1,
  /** Bad usage: an unknown option, a missing or malformed argument. */
  USAGE: 2,
  /** The daemon is not running or does not answer on its control socket. */
  NO_DAEMON: 3,
} as const;

/** A failure with its exit code; the message is the problem, the thing, the value, then the fix. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.FAILED) {
    super(message);
  }
}

const TIMEOUT_MS = 5000;

/** Sends one request to the daemon and resolves with its answer; a daemon error becomes a CliError. */
export function request<T = any>(socketPath: string, req: Record<string, unknown>, timeoutMs = TIMEOUT_MS): Promise<T> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socketPath);
    let text = "";
    const timer = setTimeout(() => {
      c.destroy();
      reject(new CliError(`the daemon did not answer on ${socketPath} within ${timeoutMs / 1000} s; check its log (journalctl -u wasp or the pod's log)`, EXIT.NO_DAEMON));
    }, timeoutMs);
    c.setEncoding("utf8");
    c.on("data", (d: string) => { text += d; });
    c.on("end", () => {
      clearTimeout(timer);
      let v: any;
      try { v = JSON.parse(text); } catch {
        reject(new CliError(`the daemon's answer on ${socketPath} is not JSON: ${JSON.stringify(text.slice(0, 200))}`, EXIT.FAILED));
        return;
      }
      if (v && typeof v === "object" && typeof v.error === "string") reject(new CliError(`the daemon says: ${v.error}`, EXIT.FAILED));
      else resolve(v as T);
    });
    c.on("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(unreachable(socketPath, e));
    });
    c.end(`${JSON.stringify(req)}\n`);
  });
}

function unreachable(path: string, e: NodeJS.ErrnoException): CliError {
  const start = "Start it (wasp daemon --config FILE, as root in the node's network namespace) or name its socket with --socket PATH";
  switch (e.code) {
    case "ENOENT":
      return new CliError(`the wasp daemon is not running: no control socket at ${path} (ENOENT). ${start}`, EXIT.NO_DAEMON);
    case "ECONNREFUSED":
      return new CliError(`the wasp daemon is not running: nothing listens on ${path} (ECONNREFUSED; a stale socket file). ${start}`, EXIT.NO_DAEMON);
    case "EACCES":
    case "EPERM":
      return new CliError(`cannot open the control socket ${path}: permission denied (${e.code}); it is mode 0600, owned by root. Run as root (sudo)`, EXIT.NO_DAEMON);
    case "ENOTSOCK":
      return new CliError(`${path} is not a socket (ENOTSOCK); name the daemon's control socket with --socket PATH`, EXIT.NO_DAEMON);
    default:
      return new CliError(`cannot reach the wasp daemon at ${path}: ${e.code ?? e.message}. ${start}`, EXIT.NO_DAEMON);
  }
}
