// IPv6 peers for the dual-stack tests: servers that answer with the addresses the kernel gave the
// connection, and a one-shot client. (The IPv4 ones in topology.ts listen on 0.0.0.0 only.)
import { type ChildProcess } from "node:child_process";
import { inNs, spawnInNs } from "./netns.js";
import { waitFor } from "./topology.js";

/** TCP and UDP servers on [::]:argv[1] (IPv6 only). TCP answers, once the client has sent all it
 *  sends, {local, remote, bytes}; UDP answers each datagram with {remote}. */
const SERVER6 = `
const net = require("node:net"), dgram = require("node:dgram"), port = Number(process.argv[1]);
let n = 2; const ready = () => { if (--n === 0) console.error("ready"); };
net.createServer((s) => {
  s.on("error", () => {});
  let bytes = 0; s.on("data", (d) => { bytes += d.length; });
  s.on("end", () => s.end(JSON.stringify({ local: s.localAddress, remote: s.remoteAddress, bytes })));
}).listen({ port, host: "::", ipv6Only: true }, ready);
const u = dgram.createSocket({ type: "udp6", ipv6Only: true });
u.on("message", (m, r) => u.send(JSON.stringify({ remote: r.address }), r.port, r.address));
u.bind(port, "::", ready);`;

/** argv: proto host port [bytes to send] → one JSON line {ok, local?, from?, seen?, error?}. */
const CLIENT6 = `
const net = require("node:net"), dgram = require("node:dgram");
const [proto, host, port, bytes] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4] || 0)];
const done = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
setTimeout(() => done({ ok: false, error: "timeout" }), 20000);
if (proto === "tcp") {
  const s = net.connect({ host, port }); let d = "", local = "";
  s.on("connect", () => { local = s.localAddress; if (bytes) s.write(Buffer.alloc(bytes, 7)); s.end(); });
  s.on("data", (x) => d += x); s.on("end", () => done({ ok: true, local, seen: JSON.parse(d) }));
  s.on("error", (e) => done({ ok: false, error: e.code }));
} else {
  const s = dgram.createSocket("udp6");
  s.on("message", (m, r) => done({ ok: true, from: r.address, seen: JSON.parse(m) }));
  s.on("error", (e) => done({ ok: false, error: e.code }));
  s.connect(port, host, () => s.send("?"));
}`;

export interface Answer6 { ok: boolean; error?: string; local?: string; from?: string; seen?: { local?: string; remote: string; bytes?: number } }

/** Starts the IPv6 servers in a namespace; the caller ends the child (by PID) when done. */
export async function serve6(ns: string, port: number): Promise<ChildProcess> {
  const c = spawnInNs(ns, process.execPath, ["-e", SERVER6, String(port)]);
  let err = "";
  c.stderr?.on("data", (d: Buffer) => { err += d.toString(); });
  await waitFor(() => err.includes("ready") || c.exitCode !== null, `IPv6 servers in ${ns}`);
  if (!err.includes("ready")) throw new Error(`IPv6 servers in ${ns}: ${err}`);
  return c;
}

/** One TCP connection (sending `bytes` first) or one UDP datagram from a namespace. */
export function ask6(ns: string, proto: "tcp" | "udp", host: string, port: number, bytes = 0): Answer6 {
  return JSON.parse(inNs(ns, process.execPath, "-e", CLIENT6, proto, host, String(port), String(bytes)).trim()) as Answer6;
}
