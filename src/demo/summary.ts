// The live summary: the daemon's control socket asked once a second ({"cmd":"status"} and
// {"cmd":"services"}, see src/daemon/control-socket.ts), turned into one aligned row per second
// and a closing table. Formatting is pure, so it is read and tested without a daemon.
import { createConnection } from "node:net";
import { fmtCounts } from "../cli/format.js";

export interface Status {
  generation: number;
  conntrack: { entries: number; capacity: number };
  counters: { drops: Record<string, number>; named: { packets_in: number; new_flows: number } };
  /** Packets lost outside the engine, by place. */
  pathDrops: Record<string, number>;
  /** Offload mode: the kernel carries each flow after its first packet; its counters of them. */
  offload?: { on: boolean; why: string; kernel?: Record<string, { packets: number; bytes: number }> };
}

/** Packets of service flows so far: those through the engine, and in offload mode those the kernel
 *  carried for the flows the engine decided. */
export function servicePackets(st: Status): number {
  const k = st.offload?.kernel;
  return st.counters.named.packets_in + (k ? (k["offloaded_in"]?.packets ?? 0) + (k["offloaded_out"]?.packets ?? 0) : 0);
}
export interface ServiceRow {
  key: string; service: string; kind: string; packets: number; newFlows: number;
  backends: Array<{ addr: string; port: number; eligible: boolean }>;
}
export interface Sample { atMs: number; status: Status; services: ServiceRow[]; answered: number; failed: number }

/** One request on a fresh connection, one JSON line back (the control socket's protocol). */
export function askControl<T>(path: string, req: { cmd: string }, timeoutMs = 2000): Promise<T> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let text = "";
    const timer = setTimeout(() => { c.destroy(); reject(new Error(`the control socket ${path} did not answer ${req.cmd} within ${timeoutMs} ms`)); }, timeoutMs);
    c.setEncoding("utf8");
    c.on("data", (d: string) => { text += d; });
    c.on("end", () => {
      clearTimeout(timer);
      try {
        const v = JSON.parse(text) as T & { error?: string };
        if (v.error) reject(new Error(`the daemon refused ${req.cmd}: ${v.error}`)); else resolve(v);
      } catch { reject(new Error(`the control socket answered ${req.cmd} with something that is not JSON: ${text.slice(0, 200)}`)); }
    });
    c.on("error", (e: NodeJS.ErrnoException) => { clearTimeout(timer); reject(new Error(`cannot ask the control socket ${path}: ${e.code ?? e.message}`)); });
    c.end(`${JSON.stringify(req)}\n`);
  });
}

/** An entry as people read it: the key with a NodePort's all-zero address shown as "*" (10.96.0.53:53/UDP, *:30080/TCP). */
export function entryName(key: string): string {
  return key.replace(/^\[::\]|^0\.0\.0\.0/, "*");
}

/** The service's name without the "default/" namespace. */
export const serviceName = (e: ServiceRow) => e.service.replace(/^default\//, "");

/** A column's label under its service's name: port/protocol, "*:port" for a NodePort (53/udp, 80/tcp, *:30080). */
export function entryColumn(e: ServiceRow): string {
  const m = /:(\d+)\/(\w+)$/.exec(e.key);
  const port = m?.[1] ?? "?", proto = (m?.[2] ?? "").toLowerCase();
  return e.kind === "NodePort" ? `*:${port}` : `${port}/${proto}`;
}

const sumValues = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

/** Drops by reason between two samples (all of them when `prev` is undefined), largest first. */
export function dropDelta(cur: Status, prev?: Status): Array<[string, number]> {
  return Object.entries(cur.counters.drops)
    .map(([k, v]): [string, number] => [k, v - (prev?.counters.drops[k] ?? 0)])
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1]);
}

interface Column { head: string; width: number; left?: boolean }

export class SummaryTable {
  private readonly columns: Column[];
  /** Service names over their entries' columns: [name, first column, last column]. */
  private readonly groups: Array<[string, number, number]> = [];

  constructor(services: readonly ServiceRow[]) {
    const col = (head: string, min = 5): Column => ({ head, width: Math.max(head.length, min) });
    this.columns = [{ ...col("sec", 4) }, col("pkts/s", 6), col("flows", 6), col("new/s")];
    for (const e of services) {
      const name = serviceName(e), at = this.columns.length, last = this.groups[this.groups.length - 1];
      if (last && last[0] === name && last[2] === at - 1) last[2] = at; else this.groups.push([name, at, at]);
      this.columns.push(col(entryColumn(e), 6));
    }
    this.columns.push(col("ok/s"), col("failed", 6), col("drops"), col("gen", 3));
    // A service's name must fit over its columns: widen the last one if not.
    for (const [name, a, b] of this.groups) {
      const span = this.columns.slice(a, b + 1).reduce((n, c) => n + c.width + 2, -2);
      if (name.length > span) this.columns[b]!.width += name.length - span;
    }
  }

  private line(cells: string[]): string {
    return cells.map((c, i) => c.padStart(this.columns[i]!.width)).join("  ").trimEnd();
  }

  /** A legend, then the service names over their entries' columns, then the column names. */
  header(): string[] {
    const start = (i: number) => this.columns.slice(0, i).reduce((n, c) => n + c.width + 2, 0);
    let names = "";
    for (const [name, , b] of this.groups) names = names.padEnd(start(b) + this.columns[b]!.width - name.length) + name;
    return [
      "pkts/s: packets of service flows per second (offload mode: the engine's first packets and what the kernel carried)",
      "new/s: new flows per second, in all and per service entry (columns under each service's name)",
      "ok/s, failed: client requests answered per second, failed so far; drops: packets the engine refused",
      "",
      names,
      this.line(this.columns.map((c) => c.head)),
    ];
  }

  /** One row: the rates between prev and cur, the conntrack entries and the generation now. */
  row(cur: Sample, prev: Sample, elapsedSec: number): string {
    const sec = Math.max((cur.atMs - prev.atMs) / 1000, 0.001);
    const rate = (a: number, b: number) => String(Math.round((a - b) / sec));
    const byKey = new Map(prev.services.map((e) => [e.key, e]));
    const drops = dropDelta(cur.status, prev.status);
    const cells = [
      String(Math.round(elapsedSec)),
      rate(servicePackets(cur.status), servicePackets(prev.status)),
      String(cur.status.conntrack.entries),
      rate(cur.status.counters.named.new_flows, prev.status.counters.named.new_flows),
      ...cur.services.map((e) => rate(e.newFlows, byKey.get(e.key)?.newFlows ?? 0)),
      rate(cur.answered, prev.answered),
      String(cur.failed),
      String(drops.reduce((a, [, v]) => a + v, 0)),
      String(cur.status.generation),
    ];
    const why = drops.length ? `  ${drops.map(([k, v]) => `${k} ${v}`).join(", ")}` : "";
    return this.line(cells) + why;
  }
}

export interface ClientTotal { ok: number; failed: number; lastError: string }

/** How a list of backends reads in a narrow column: the port once when they share it. */
function backendList(bs: ServiceRow["backends"]): string {
  const ports = new Set(bs.map((b) => b.port));
  if (ports.size === 1) return `${bs.map((b) => b.addr).join(" ")} :${bs[0]!.port}`;
  return bs.map((b) => `${b.addr}:${b.port}`).join(" ");
}

/** The closing table: per service entry since the start, and what the clients saw of each (by entry name). */
export function finalReport(s: Sample, seconds: number, clients: Map<string, ClientTotal>, backends: Array<[string, number]>): string[] {
  const rows = s.services.map((e) => {
    const entry = entryName(e.key), c = clients.get(entry);
    return [serviceName(e), entry, backendList(e.backends), String(e.newFlows), String(e.packets),
      c ? String(c.ok) : "-", c ? String(c.failed) + (c.lastError ? ` (last: ${c.lastError})` : "") : "-"];
  });
  const head = ["service", "entry", "backends", "flows", "packets", "ok", "failed"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  const drops = dropDelta(s.status);
  const st = s.status;
  const k = st.offload?.on ? st.offload.kernel : undefined;
  const carried = k ? (k["offloaded_in"]?.packets ?? 0) + (k["offloaded_out"]?.packets ?? 0) : 0;
  return [
    `after ${seconds.toFixed(1)} s: ${st.counters.named.packets_in} packets through the engine, ${st.counters.named.new_flows} flows, ` +
      `${st.conntrack.entries} in conntrack now, generation ${st.generation}`,
    ...(st.offload ? [st.offload.on
      ? `datapath: offload, the engine decided every flow and the kernel carried the rest: ${carried} packets of them`
      : `datapath: full-wasm, every packet through the engine (${st.offload.why})`] : []),
    "",
    fmt(head),
    ...rows.map(fmt),
    "",
    `drops: ${drops.length ? drops.map(([k, v]) => `${k} ${v}`).join(", ") : "none"}` +
      (fmtCounts(st.pathDrops) ? `; lost outside the engine: ${fmtCounts(st.pathDrops)}` : ""),
    `clients: ${s.answered} requests answered, ${s.failed} failed`,
    `backends: ${backends.map(([pod, n]) => `${pod} answered ${n}`).join(", ")}`,
  ];
}

export const totalDrops = (st: Status) => sumValues(st.counters.drops);
