// The local control socket: a unix socket (mode 0600) answering one JSON request per connection
// with one JSON line, then closing. The CLI (wasp status, wasp services) talks to it.
//
// A client has CONTROL_IDLE_MS to send its request and to read its answer; the handler's own time
// does not count. At most CONTROL_MAX_CONNECTIONS are open at once: a new one past the cap closes
// the oldest connection still waiting for its request (so a pile of silent clients cannot keep
// `wasp status` out, nor take the daemon's open files), and is refused only when every open one
// is being answered.
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";

/** An answer, or a promise of one (a kernel dump read off the JS thread). */
export type Handler = (req: { cmd?: unknown }) => unknown;

const MAX_REQUEST = 64 * 1024;
/** README, "Operator commands": the control socket's limits. */
export const CONTROL_IDLE_MS = 10_000;
export const CONTROL_MAX_CONNECTIONS = 64;

export interface ControlLimits {
  idleMs?: number;
  maxConnections?: number;
}

/** True when something answers on `path` (another daemon); false for a stale file. */
function inUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once("connect", () => { c.destroy(); resolve(true); });
    c.once("error", () => resolve(false));
  });
}

export async function serveControl(path: string, handle: Handler, limits: ControlLimits = {}): Promise<Server> {
  const idleMs = limits.idleMs ?? CONTROL_IDLE_MS, max = limits.maxConnections ?? CONTROL_MAX_CONNECTIONS;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (await inUse(path)) throw new Error(`cannot serve the control socket ${path}: another daemon answers there. Stop it or pick another path (--socket)`);
  rmSync(path, { force: true });
  const open = new Set<Socket>();
  /** The open connections that have not sent their request yet, oldest first. */
  const waiting = new Set<Socket>();
  // allowHalfOpen: the client may shut its side down after the request (the CLI does); ours stays
  // open until the answer is written, however long the handler takes.
  const server = createServer({ allowHalfOpen: true }, (conn) => {
    if (open.size >= max) {
      const oldest = waiting.values().next().value as Socket | undefined;
      if (!oldest) { conn.destroy(); return; }
      oldest.destroy();
      waiting.delete(oldest); open.delete(oldest);
    }
    open.add(conn); waiting.add(conn);
    conn.on("close", () => { open.delete(conn); waiting.delete(conn); });
    conn.setTimeout(idleMs, () => conn.destroy());
    let buf = "";
    conn.setEncoding("utf8");
    const answer = (v: unknown) => {
      if (conn.destroyed || conn.writableEnded) return;
      // Once the answer is in the kernel's buffer the client can read it after we close: a client
      // that never shuts its side does not hold a connection.
      conn.setTimeout(idleMs);
      conn.end(`${JSON.stringify(v)}\n`, () => conn.destroy());
    };
    conn.on("data", (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST) { answer({ error: `request over ${MAX_REQUEST} bytes` }); return; }
      const nl = buf.indexOf("\n");
      if (nl >= 0) reply(buf.slice(0, nl));
    });
    conn.on("end", () => reply(buf));
    conn.on("error", () => conn.destroy());
    let asked = false;
    const reply = (text: string) => {
      if (asked || conn.writableEnded) return;
      asked = true;
      waiting.delete(conn);
      conn.setTimeout(0); // the handler's time is the daemon's, not the client's
      let req: unknown;
      try { req = JSON.parse(text); } catch { answer({ error: 'the request is not JSON; send {"cmd":"status"}' }); return; }
      if (typeof req !== "object" || req === null) { answer({ error: 'expected an object like {"cmd":"status"}' }); return; }
      Promise.resolve().then(() => handle(req as { cmd?: unknown })).then(answer, (e: Error) => answer({ error: e.message }));
    };
  });
  return listenPrivate(server, path, "the control socket");
}

/** Listens on the unix socket path, root only (0600) from its first moment; `what` names it in errors. */
export async function listenPrivate(server: Server, path: string, what: string): Promise<Server> {
  // The socket file is made by listen(): a umask keeps it private from the start.
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) => reject(new Error(`cannot serve ${what} ${path}: ${e.code ?? e.message}`)));
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(old);
  }
  chmodSync(path, 0o600);
  return server;
}
