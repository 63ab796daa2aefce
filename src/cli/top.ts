// `wasp top`: a live view of the daemon, refreshed every --interval seconds: packets/s, bytes/s,
// new flows/s, the busiest services, drops by reason. q or Ctrl-C quits and gives the terminal back
// as it was (main screen, cursor, cooked mode), also when the daemon goes away. --json prints the
// same rates as JSON, one document per interval.
import { CliError, EXIT, request } from "./client.js";
import { fmtBytes, fmtDuration, fmtInt, table } from "./format.js";
import type { ServiceRow, Status } from "./queries.js";

interface Sample { at: number; status: Status; services: ServiceRow[] }

const ALT_ON = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J", ALT_OFF = "\x1b[?25h\x1b[?1049l";

async function sample(socket: string): Promise<Sample> {
  const [status, sv] = await Promise.all([
    request<Status>(socket, { cmd: "status" }), request<{ services: ServiceRow[] }>(socket, { cmd: "services" }),
  ]);
  return { at: performance.now(), status, services: sv.services };
}

/** What two samples say per second (the rates between them): what --json prints and the screen shows. */
export interface Rates {
  node: string; mode: string; generation: number; uptimeSec: number; intervalSec: number;
  packetsPerSec: number; bytesPerSec: number; newFlowsPerSec: number; conntrack: { entries: number; capacity: number };
  verdictsPerSec: Record<string, number>;
  /** The busiest ten service entries first. */
  services: Array<{ service: string; port: string; entry: string; packetsPerSec: number; bytesPerSec: number; newFlowsPerSec: number; packets: number }>;
  drops: Array<{ reason: string; perSec: number; total: number }>;
}

export function rates(prev: Sample, cur: Sample): Rates {
  const dt = Math.max(0.001, (cur.at - prev.at) / 1000);
  const rate = (a: number, b: number) => Math.round(Math.max(0, (b - a) / dt));
  const c = cur.status.counters, p = prev.status.counters, s = cur.status;
  const before = new Map(prev.services.map((e) => [e.key, e]));
  return {
    node: s.node, mode: s.mode, generation: s.generation, uptimeSec: s.uptimeSec, intervalSec: Math.round(dt * 1000) / 1000,
    packetsPerSec: rate(p.named.packets_in ?? 0, c.named.packets_in ?? 0), bytesPerSec: rate(p.named.bytes_in ?? 0, c.named.bytes_in ?? 0),
    newFlowsPerSec: rate(p.named.new_flows ?? 0, c.named.new_flows ?? 0), conntrack: s.conntrack,
    verdictsPerSec: Object.fromEntries(["tun", "overlay", "host", "drop"].map((v) => [v, rate(p.verdicts[v] ?? 0, c.verdicts[v] ?? 0)])),
    services: cur.services.map((e) => {
      const b = before.get(e.key);
      return {
        service: e.service, port: e.port, entry: e.key, packetsPerSec: rate(b?.packets ?? e.packets, e.packets),
        bytesPerSec: rate(b?.bytes ?? e.bytes, e.bytes), newFlowsPerSec: rate(b?.newFlows ?? e.newFlows, e.newFlows), packets: e.packets,
      };
    }).sort((x, y) => y.packetsPerSec - x.packetsPerSec || y.packets - x.packets).slice(0, 10),
    drops: Object.entries(c.drops).filter(([, n]) => n > 0).map(([reason, n]) => ({ reason, perSec: rate(p.drops[reason] ?? 0, n), total: n })),
  };
}

/** The screen for two samples (rates over the time between them). */
export function render(prev: Sample, cur: Sample, width: number): string {
  const r = rates(prev, cur);
  const lines: string[] = [];
  lines.push(`wasp top - node ${r.node}, ${r.mode} mode, generation ${r.generation}, up ${fmtDuration(r.uptimeSec)}   (q quits)`);
  lines.push(`packets/s ${fmtInt(r.packetsPerSec)}   bytes/s ${fmtBytes(r.bytesPerSec)}   new flows/s ${fmtInt(r.newFlowsPerSec)}   conntrack ${fmtInt(r.conntrack.entries)} / ${fmtInt(r.conntrack.capacity)}`);
  lines.push(`verdicts/s: ${Object.entries(r.verdictsPerSec).map(([v, n]) => `${v} ${fmtInt(n)}`).join("   ")}`);
  lines.push("");
  lines.push("TOP SERVICES");
  lines.push(...table(["SERVICE", "PORT", "ENTRY", "PACKETS/S", "BYTES/S", "NEW FLOWS/S", "PACKETS"],
    r.services.map((x) => [x.service, x.port, x.entry, x.packetsPerSec, fmtBytes(x.bytesPerSec), x.newFlowsPerSec, x.packets])).trimEnd().split("\n"));
  lines.push("");
  lines.push("DROPS BY REASON");
  if (r.drops.length) lines.push(...table(["REASON", "PER SECOND", "TOTAL"], r.drops.map((d) => [d.reason, d.perSec, d.total])).trimEnd().split("\n"));
  else lines.push("none");
  return lines.map((l) => (l.length > width ? l.slice(0, width) : l)).join("\n");
}

export async function top(o: Record<string, any>): Promise<void> {
  const socket = String(o.socket), intervalSec = Number(o.interval), iterations = Number(o.iterations);
  if (!(intervalSec >= 0.1 && intervalSec <= 3600)) throw new CliError(`--interval is ${JSON.stringify(o.interval)}; give seconds, 0.1-3600`, EXIT.USAGE);
  if (!Number.isInteger(iterations) || iterations < 0) throw new CliError(`--iterations is ${JSON.stringify(o.iterations)}; give a whole number (0: until q)`, EXIT.USAGE);
  let prev = await sample(socket); // fails with exit 3 before the screen changes when no daemon answers
  if (o.json) {
    // for scripts: the rates over each interval, one JSON document a line (one, unless --iterations says more)
    for (let n = 0; n < (iterations || 1); n++) {
      await new Promise((r) => setTimeout(r, intervalSec * 1000));
      const cur = await sample(socket);
      process.stdout.write(`${JSON.stringify(rates(prev, cur))}\n`);
      prev = cur;
    }
    return;
  }
  const tty = process.stdout.isTTY === true, stdin = process.stdin;
  const rawInput = stdin.isTTY === true;
  let done = false, timer: NodeJS.Timeout | undefined, wake: (() => void) | undefined;
  const quit = () => { done = true; clearTimeout(timer); wake?.(); };
  const onKey = (d: Buffer) => { const k = d.toString(); if (k === "q" || k === "Q" || k === "\x03") quit(); };
  if (tty) process.stdout.write(ALT_ON);
  if (rawInput) { stdin.setRawMode(true); stdin.resume(); stdin.on("data", onKey); }
  process.on("SIGINT", quit);
  process.on("SIGTERM", quit);
  let failure: unknown;
  try {
    for (let n = 0; !done && (iterations === 0 || n < iterations); n++) {
      await new Promise<void>((resolve) => { wake = resolve; timer = setTimeout(resolve, intervalSec * 1000); });
      if (done) break;
      let cur: Sample;
      try { cur = await sample(socket); } catch (e) { failure = e; break; }
      const screen = render(prev, cur, tty ? process.stdout.columns || 120 : 1000);
      // overwrite in place (home, each line then clear to its end, clear below): no blank flash between frames
      process.stdout.write(tty ? `\x1b[H${screen.split("\n").map((l) => `${l}\x1b[K`).join("\n")}\n\x1b[J` : `${screen}\n\n`);
      prev = cur;
    }
  } finally {
    if (rawInput) { stdin.off("data", onKey); stdin.setRawMode(false); stdin.pause(); }
    process.off("SIGINT", quit);
    process.off("SIGTERM", quit);
    if (tty) process.stdout.write(ALT_OFF);
  }
  if (failure) throw failure;
}
