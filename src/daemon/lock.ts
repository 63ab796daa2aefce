// One daemon per node: a daemon holds an abstract unix socket, "@wasp-daemon", before it touches
// anything. Abstract sockets belong to a network namespace and vanish with their process (kill -9
// included), so the lock is per node and never stale. A second daemon (or `--cleanup`) that finds it
// taken asks the holder for its PID and refuses, naming it; the running daemon is not disturbed.
import { createConnection, createServer, type Server } from "node:net";

const LOCK = "\0wasp-daemon";

export class DaemonRunningError extends Error {}

/** Takes the node's daemon lock; throws DaemonRunningError naming the daemon that holds it. */
export async function takeDaemonLock(): Promise<Server> {
  const server = createServer((c) => { c.on("error", () => {}); c.end(`${process.pid}\n`); });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(LOCK, () => { server.off("error", reject); resolve(); });
    });
    server.unref();
    return server;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
    const pid = await holder();
    throw new DaemonRunningError(`another wasp daemon${pid ? ` (pid ${pid})` : ""} runs in this network namespace; ` +
      "one daemon serves a node: stop it first (its datapath stays for the next one)");
  }
}

/** The PID the lock's holder answers with, or "" when it does not answer. */
function holder(): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    const c = createConnection(LOCK);
    const done = () => resolve(text.trim());
    c.setTimeout(1000, () => { c.destroy(); done(); });
    c.on("data", (d) => { text += d.toString(); });
    c.on("end", done);
    c.on("error", done);
  });
}
