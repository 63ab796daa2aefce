// Connections that outlive a daemon: a TCP echo conversation that keeps one connection open and
// counts its messages, and a numbered UDP stream whose every datagram is echoed. Restart and
// upgrade tests run them across kill -9 and SIGTERM of the daemon: a reset, a lost or late message,
// a datagram that never came back shows up in the counts. The kernel is the referee.
import type { ChildProcess } from "node:child_process";
import { spawnInNs } from "./netns.js";

/** TCP echo on the ports of argv[1] (JSON list), UDP echo on argv[2]: what comes in goes back. */
const ECHO = `
const net = require("node:net"), dgram = require("node:dgram");
const tcp = JSON.parse(process.argv[1]), udp = Number(process.argv[2]);
let pending = tcp.length + (udp ? 1 : 0);
const ready = () => { if (--pending === 0) console.log("ready"); };
for (const p of tcp) net.createServer((s) => { s.on("error", () => {}); s.pipe(s); }).listen(p, "0.0.0.0", ready);
if (udp) { const u = dgram.createSocket("udp4"); u.on("message", (m, r) => u.send(m, r.port, r.address)); u.bind(udp, "0.0.0.0", ready); }`;

/** One TCP connection to argv[1]:argv[2]; a numbered line every argv[3] ms for argv[4] ms, each
 *  expected back before the next second passes. Prints {sent, echoed, maxGapMs, error}. */
const TCP_TALK = `
const net = require("node:net");
const [host, port, every, total] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])];
let sent = 0, echoed = 0, buf = "", last = Date.now(), maxGap = 0, error = "", timer;
const s = net.connect(port, host, () => {
  console.log("connected");
  timer = setInterval(() => { s.write(sent++ + "\\n"); }, every);
  setTimeout(() => { clearInterval(timer); setTimeout(() => s.end(), 2000); }, total);
});
s.on("data", (d) => { buf += d; let i; while ((i = buf.indexOf("\\n")) >= 0) { buf = buf.slice(i + 1); echoed++; const now = Date.now(); maxGap = Math.max(maxGap, now - last); last = now; } });
s.on("error", (e) => { error = e.code || e.message; });
s.on("close", () => { clearInterval(timer); console.log(JSON.stringify({ sent, echoed, maxGapMs: maxGap, error })); process.exit(0); });`;

/** Numbered UDP datagrams to argv[1]:argv[2], one every argv[3] ms for argv[4] ms; counts the echoes
 *  (from the address it sent to). Prints {sent, echoed, lost, wrongSource}. */
const UDP_STREAM = `
const dgram = require("node:dgram");
const [host, port, every, total] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])];
const s = dgram.createSocket(host.includes(":") ? "udp6" : "udp4"), seen = new Set();
let sent = 0, wrongSource = 0;
s.on("message", (m, r) => { if (r.address !== host) wrongSource++; seen.add(Number(m.toString())); });
s.bind(0, () => {
  console.log("connected");
  const t = setInterval(() => s.send(String(sent++), port, host), every);
  setTimeout(() => { clearInterval(t); setTimeout(() => { console.log(JSON.stringify({ sent, echoed: seen.size, lost: sent - seen.size, wrongSource })); process.exit(0); }, 1000); }, total);
});`;

export interface TalkResult { sent: number; echoed: number; maxGapMs: number; error: string }
export interface UdpStreamResult { sent: number; echoed: number; lost: number; wrongSource: number }

function run<T>(ns: string, script: string, args: string[]): { started: Promise<void>; done: Promise<T>; child: ChildProcess } {
  const child = spawnInNs(ns, process.execPath, ["-e", script, ...args]);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
  const started = new Promise<void>((resolve, reject) => {
    const check = () => { if (out.includes("connected")) resolve(); };
    child.stdout!.on("data", check);
    child.once("exit", () => reject(new Error(`ended before it connected: ${out}`)));
  });
  const done = new Promise<T>((resolve, reject) => child.once("exit", () => {
    const line = out.trim().split("\n").pop() ?? "";
    try { resolve(JSON.parse(line) as T); } catch { reject(new Error(`no result: ${out}`)); }
  }));
  return { started, done, child };
}

/** Echo servers in ns: TCP on tcpPorts, UDP on udpPort; resolves once they listen. */
export function startEcho(ns: string, tcpPorts: number[], udpPort = 0): Promise<ChildProcess> {
  const child = spawnInNs(ns, process.execPath, ["-e", ECHO, JSON.stringify(tcpPorts), String(udpPort)]);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => { out += d.toString(); if (out.includes("ready")) resolve(child); });
    child.once("exit", () => reject(new Error(`echo servers ended: ${out}`)));
  });
}

/** One long TCP conversation (a line every everyMs for totalMs) through host:port. */
export function talk(ns: string, host: string, port: number, everyMs: number, totalMs: number) {
  return run<TalkResult>(ns, TCP_TALK, [host, String(port), String(everyMs), String(totalMs)]);
}

/** A numbered UDP stream (a datagram every everyMs for totalMs) to host:port, every one echoed. */
export function udpStream(ns: string, host: string, port: number, everyMs: number, totalMs: number) {
  return run<UdpStreamResult>(ns, UDP_STREAM, [host, String(port), String(everyMs), String(totalMs)]);
}
