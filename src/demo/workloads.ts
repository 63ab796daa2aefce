// The programs the demo runs inside its pods, as `node -e SCRIPT ARGS`: small enough to read here,
// and no files to install into a namespace.

/**
 * Servers: TCP on each port of argv[1] (JSON list) answers the first bytes it gets with one line
 * naming the pod (argv[3]), then closes (HTTP-ish on 8080: a status line); UDP on argv[2] (0: none)
 * answers each datagram the same way (DNS-ish: one question, one answer). Prints "ready" once all
 * listen, then five times a second the requests answered so far as {"answered": N}.
 */
export const SERVER = `
const net = require("node:net"), dgram = require("node:dgram");
const tcp = JSON.parse(process.argv[1]), udp = Number(process.argv[2]), name = process.argv[3];
let pending = tcp.length + (udp ? 1 : 0);
let answered = 0;
const ready = () => { if (--pending === 0) { console.log("ready"); setInterval(() => console.log(JSON.stringify({ answered })), 200); } };
for (const p of tcp) net.createServer((s) => {
  s.on("error", () => {});
  s.once("data", () => { answered++; s.end(p === 8080 ? "HTTP/1.0 200 OK\\r\\n\\r\\n" + name + "\\n" : name + " answers " + p + "/tcp\\n"); });
}).listen(p, "0.0.0.0", ready);
if (udp) {
  const u = dgram.createSocket("udp4");
  u.on("message", (m, r) => { answered++; u.send(name + " answers " + m.toString(), r.port, r.address); });
  u.bind(udp, "0.0.0.0", ready);
}`;

export interface Target {
  /** Column name in the client report. */
  name: string;
  proto: "tcp" | "udp";
  host: string;
  port: number;
}

/**
 * A client loop: short connections to the targets of argv[1] in turn, argv[2] ms apart, until it
 * is ended. Five times a second it prints one JSON line, cumulative: {"name": [answered, failed, lastError]}.
 */
export const CLIENT = `
const net = require("node:net"), dgram = require("node:dgram");
const targets = JSON.parse(process.argv[1]), gapMs = Number(process.argv[2]);
const counts = Object.fromEntries(targets.map((t) => [t.name, [0, 0, ""]]));
function once(t) { return new Promise((resolve) => {
  let done = false, s;
  const fin = (err) => { if (done) return; done = true; clearTimeout(timer); try { t.proto === "udp" ? s.close() : s.destroy(); } catch {} resolve(err); };
  const timer = setTimeout(() => fin("timeout"), 2000);
  if (t.proto === "udp") {
    s = dgram.createSocket("udp4");
    s.on("error", (e) => fin(e.code || e.message));
    s.on("message", () => fin(""));
    s.connect(t.port, t.host, () => s.send("A? web.default.svc"));
  } else {
    let got = "";
    s = net.connect({ host: t.host, port: t.port }, () => s.write(t.port === 53 ? "A? web.default.svc" : "GET / HTTP/1.0\\r\\n\\r\\n"));
    s.on("data", (d) => { got += d; });
    s.on("end", () => fin(got ? "" : "empty answer"));
    s.on("error", (e) => fin(e.code || e.message));
  }
}); }
setInterval(() => console.log(JSON.stringify(counts)), 200);
(async () => {
  for (let i = 0; ; i++) {
    const t = targets[i % targets.length], err = await once(t), c = counts[t.name];
    if (err) { c[1]++; c[2] = err; } else c[0]++;
    await new Promise((r) => setTimeout(r, gapMs));
  }
})();`;

/** What a client reports: per target, [answered, failed, last error]. */
export type ClientReport = Record<string, [number, number, string]>;
