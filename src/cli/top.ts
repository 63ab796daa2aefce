// `wasp top`: a live view of the daemon, refreshed every --interval seconds: packets/s, bytes/s,
// new flows/s, the busiest services, drops by reason. q or Ctrl-C quits and gives the terminal back
// as it was (main screen, cursor, cooked mode), also when the daemon goes away.
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

/** The screen for two samples (rates over the time between them). */
export function render(prev: Sample, cur: Sample, width: number): string {
  const dt = Math.max(0.001, (cur.at - prev.at) / 1000);
  const rate = (a: number, b: number) => Math.max(0, (b - a) / dt);
  const c = cur.status.counters, p = prev.status.counters;
  const pps = rate(p.named.packets_in ?? 0, c.named.packets_in ?? 0), bps = rate(p.named.bytes_in ?? 0, c.named.bytes_in ?? 0);
  const nfs = rate(p.named.new_flows ?? 0, c.named.new_flows ?? 0);
  const s = cur.status;
  const lines: string[] = [];
  lines.push(`wasp top - node ${s.node}, ${s.mode} mode, generation ${s.generation}, up ${fmtDuration(s.uptimeSec)}   (q quits)`);
  lines.push(`packets/s ${fmtInt(Math.round(pps))}   bytes/s ${fmtBytes(Math.round(bps))}   new flows/s ${fmtInt(Math.round(nfs))}   conntrack ${fmtInt(s.conntrack.entries)} / ${fmtInt(s.conntrack.capacity)}`);
  lines.push(`verdicts/s: ${["tun", "overlay", "host", "drop"].map((v) => `${v} ${fmtInt(Math.round(rate(p.verdicts[v] ?? 0, c.verdicts[v] ?? 0)))}`).join("   ")}`);
  lines.push("");
  const before = new Map(prev.services.map((e) => [e.key, e]));
  const svc = cur.services.map((e) => {
    const b = before.get(e.key);
    return { e, pps: rate(b?.packets ?? e.packets, e.packets), bps: rate(b?.bytes ?? e.bytes, e.bytes), nfs: rate(b?.newFlows ?? e.newFlows, e.newFlows) };
  }).sort((x, y) => y.pps - x.pps || y.e.packets - x.e.packets).slice(0, 10);
  lines.push("TOP SERVICES");
  lines.push(...table(["SERVICE", "PORT", "ENTRY", "PACKETS/S", "BYTES/S", "NEW FLOWS/S", "PACKETS"],
    svc.map((x) => [x.e.service, x.e.port, x.e.key, Math.round(x.pps), fmtBytes(Math.round(x.bps)), Math.round(x.nfs), x.e.packets])).trimEnd().split("\n"));
  lines.push("");
  const drops = Object.entries(c.drops).filter(([, n]) => n > 0).map(([r, n]) => [r, Math.round(rate(p.drops[r] ?? 0, n)), n] as [string, number, number]);
  lines.push("DROPS BY REASON");
  if (drops.length) lines.push(...table(["REASON", "PER SECOND", "TOTAL"], drops).trimEnd().split("\n"));
  else lines.push("none");
  return lines.map((l) => (l.length > width ? l.slice(0, width) : l)).join("\n");
}

export async function top(o: Record<string, any>): Promise<void> {
  const socket = String(o.socket), intervalSec = Number(o.interval), iterations = Number(o.iterations);
  if (!(intervalSec >= 0.1 && intervalSec <= 3600)) throw new CliError(`--interval is ${JSON.stringify(o.interval)}; give seconds, 0.1-3600`, EXIT.USAGE);
  if (!Number.isInteger(iterations) || iterations < 0) throw new CliError(`--iterations is ${JSON.stringify(o.iterations)}; give a whole number (0: until q)`, EXIT.USAGE);
  let prev = await sample(socket); // fails with exit 3 before the screen changes when no daemon answers
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
