// The local control socket: a unix socket (mode 0600) answering one JSON request per connection
// with one JSON line, then closing. The CLI (wasp status, wasp services) talks to it.
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server } from "node:net";
import { dirname } from "node:path";

/** An answer, or a promise of one (a kernel dump read off the JS thread). */
export type Handler = (req: { cmd?: unknown }) => unknown;

const MAX_REQUEST = 64 * 1024;

/** True when something answers on `path` (another daemon); false for a stale file. */
function inUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once("connect", () => { c.destroy(); resolve(true); });
    c.once("error", () => resolve(false));
  });
}

export async function serveControl(path: string, handle: Handler): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (await inUse(path)) throw new Error(`cannot serve the control socket ${path}: another daemon answers there. Stop it or pick another path (--socket)`);
  rmSync(path, { force: true });
  // allowHalfOpen: a client that sends its request and ends its side still gets an answer that
  // takes a while (a kernel dump), instead of a connection closed under it
  const server = createServer({ allowHalfOpen: true }, (conn) => {
    let buf = "", asked = false;
    conn.setEncoding("utf8");
    const answer = (v: unknown) => { conn.end(`${JSON.stringify(v)}\n`); };
    conn.on("data", (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST) { answer({ error: `request over ${MAX_REQUEST} bytes` }); return; }
      const nl = buf.indexOf("\n");
      if (nl >= 0) reply(buf.slice(0, nl));
    });
    conn.on("end", () => { if (!conn.writableEnded) reply(buf); });
    conn.on("error", () => conn.destroy());
    const reply = (text: string) => {
      if (conn.writableEnded || asked) return;
      asked = true;
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
