// The commands that ask the daemon and print its answer: status, services, backends, conntrack,
// routes, nodes, counters.
import { readFallbacks } from "../cni/fallback.js";
import { CT_STATE_NAMES } from "../engine/abi.js";
import { parseIp } from "../model/addr.js";
import { CliError, EXIT, request } from "./client.js";
import { fmtBytes, fmtCounts, fmtDuration, pairs, plural, printJson, table } from "./format.js";

const out = (s: string) => process.stdout.write(s);

export interface Counters { verdicts: Record<string, number>; drops: Record<string, number>; named: Record<string, number> }
export interface Status {
  mode: string; device: string; ioUring: boolean; address: string; node: string; generation: number; uptimeSec: number;
  services: number; conntrack: { entries: number; capacity: number; ceiling?: number }; counters: Counters; pathDrops: Record<string, number>;
  /** The engine's memory, and what its tables could not take (a memory ceiling). */
  tables?: { memoryBytes: number; limitBytes?: number; full: boolean; why?: string };
  /** Absent on a single node. */
  tunnelGso?: { device: string } | { off: string };
  offload: { on: boolean; why: string };
  /** The daemon's CNI socket and what it did with the calls it got. */
  cni?: { socket: string; answered: number; declined: number; lastDeclined?: { at: string; command: string; reason: string } };
  /** Config changes the daemon turned down, and the last one (the tables of `generation` stayed). */
  reloadsRejected?: { count: number; last?: { generation: number; at: string; problems: string[] } };
}
export interface ServiceRow {
  key: string; service: string; port: string; kind: string; id: number; select: string; affinitySec: number;
  backends: Array<{ addr: string; port: number; eligible: boolean }>; packets: number; bytes: number; newFlows: number;
}

export async function status(socket: string, json: boolean): Promise<void> {
  const s = await request<Status>(socket, { cmd: "status" });
  if (json) { printJson(s); return; }
  const c = s.counters, dropped = Object.values(c.drops).reduce((a, b) => a + b, 0);
  out(pairs([
    ["node", s.node], ["mode", `${s.mode} (device ${s.device}, ${s.address}${s.ioUring ? ", io_uring" : ""})`],
    ["datapath", s.offload.on ? `offload: the engine decides each new flow, the kernel's conntrack carries it (${s.offload.why})`
      : `full-wasm: every packet of a service flow through the engine (${s.offload.why})`],
    ...(s.offload.on ? [["flows offloaded", `${(c.named.offloaded ?? 0).toLocaleString("en-US")}${c.named.offload_failed ? `, ${c.named.offload_failed.toLocaleString("en-US")} refused by the kernel (last errno ${c.named.offload_last_errno})` : ""}`] as [string, string]] : []),
    ["generation", s.generation], ["uptime", fmtDuration(s.uptimeSec)], ["services", s.services],
    ["conntrack", `${s.conntrack.entries.toLocaleString("en-US")} / ${plural(s.conntrack.capacity, "flow")}${s.conntrack.ceiling ? ` (grows to ${s.conntrack.ceiling.toLocaleString("en-US")})` : ""}`],
    ...(s.tables ? [["tables", `${fmtBytes(s.tables.memoryBytes)}${s.tables.limitBytes ? ` of ${fmtBytes(s.tables.limitBytes)}` : ""}${s.tables.full ? `; FULL: ${s.tables.why ?? ""}` : ", everything loaded"}`] as [string, string]] : []),
    ["packets in", `${c.named.packets_in?.toLocaleString("en-US")} (${fmtBytes(c.named.bytes_in ?? 0)})`],
    ["verdicts", ["tun", "overlay", "host", "drop"].map((v) => `${v} ${(c.verdicts[v] ?? 0).toLocaleString("en-US")}`).join(", ")],
    ["dropped or answered", `${dropped.toLocaleString("en-US")}${dropped ? " (by reason: wasp counters)" : ""}`],
    ["new flows", c.named.new_flows ?? 0], ["lost outside the engine", fmtCounts(s.pathDrops) || "0"],
    ...(s.tunnelGso ? [["overlay TSO", "device" in s.tunnelGso ? `sent whole (UDP-tunnel GSO through ${s.tunnelGso.device})`
      : `cut by the engine: ${s.tunnelGso.off}`] as [string, string]] : []),
    ...(s.cni ? [["cni socket", cniLine(s.cni)] as [string, string]] : []),
    ...(s.reloadsRejected?.last ? [["reloads rejected", `${s.reloadsRejected.count.toLocaleString("en-US")}; the last at ${s.reloadsRejected.last.at}, generation ${s.reloadsRejected.last.generation} kept: ${s.reloadsRejected.last.problems.join("; ")}`] as [string, string]] : []),
  ]));
}

/** The CNI socket's line in status: calls answered, declined (each a Node start-up for the runtime),
 *  and the calls that missed the daemon altogether, recorded beside its socket by wasp-node. */
function cniLine(c: NonNullable<Status["cni"]>): string {
  const missed = readFallbacks(c.socket).filter((f) => f.socket === c.socket && !/declined/.test(f.why)).length;
  return `${c.socket}: ${plural(c.answered, "call")} answered, ${fmtInt0(c.declined)} declined`
    + `${c.lastDeclined ? ` (last: ${c.lastDeclined.command} at ${c.lastDeclined.at}: ${c.lastDeclined.reason})` : ""}`
    + `${missed ? `, ${plural(missed, "call")} found no daemon here and ran in wasp-node (wasp doctor)` : ""}`;
}

const fmtInt0 = (n: number) => n.toLocaleString("en-US");

export async function services(socket: string, json: boolean): Promise<void> {
  const a = await request<{ generation: number; services: ServiceRow[] }>(socket, { cmd: "services" });
  if (json) { printJson(a); return; }
  out(table(["SERVICE", "PORT", "ENTRY", "KIND", "BACKENDS", "PACKETS", "BYTES", "NEW FLOWS"], a.services.map((e) => [
    e.service, e.port, e.key, e.kind, `${e.backends.filter((b) => b.eligible).length}/${e.backends.length}`, e.packets, fmtBytes(e.bytes), e.newFlows,
  ])));
  out(`generation ${a.generation}, ${plural(a.services.length, "service entry", "service entries")}\n`);
}

/** Entries of `name`: an entry key, namespace/name, or a bare name (any namespace). */
export function matchService(rows: readonly ServiceRow[], name: string): ServiceRow[] {
  const byKey = rows.filter((e) => e.key.toLowerCase() === name.toLowerCase());
  if (byKey.length) return byKey;
  return rows.filter((e) => e.service === name || e.service.split("/").pop() === name);
}

export async function backends(socket: string, json: boolean, name: string): Promise<void> {
  const a = await request<{ generation: number; services: ServiceRow[] }>(socket, { cmd: "services" });
  const rows = matchService(a.services, name);
  if (!rows.length) {
    const known = [...new Set(a.services.map((e) => e.service))].sort().join(", ") || "none";
    throw new CliError(`no service ${JSON.stringify(name)}; the daemon serves: ${known}. Give namespace/name, name or VIP:port/PROTOCOL`, EXIT.FAILED);
  }
  const list = rows.flatMap((e) => e.backends.map((b, i) => ({
    service: e.service, entry: e.key, index: i, addr: b.addr, port: b.port,
    state: b.eligible ? "ready" : "terminating", select: e.select,
  })));
  if (json) { printJson({ generation: a.generation, service: name, backends: list }); return; }
  out(table(["SERVICE", "ENTRY", "#", "BACKEND", "STATE", "CHOSEN BY"], list.map((b) => [
    b.service, b.entry, b.index, `${b.addr.includes(":") ? `[${b.addr}]` : b.addr}:${b.port}`, b.state, b.select,
  ])));
  const empty = rows.filter((e) => !e.backends.some((b) => b.eligible));
  for (const e of empty) out(`${e.key} has no ready backend: TCP gets a RST, UDP an ICMP port unreachable\n`);
}

const FILTER_KEYS = ["proto", "src", "dst", "sport", "dport", "backend", "service", "state", "addr", "port"];
const PROTOS = ["tcp", "udp", "icmp", "icmpv6"];

/** Why a filter value can never match (a port that is not one, an address that is not one), or undefined. */
function badValue(k: string, v: string): string | undefined {
  if (k === "sport" || k === "dport" || k === "port") return /^\d+$/.test(v) && Number(v) <= 65535 ? undefined : "a port is a number 0-65535";
  if (k === "src" || k === "dst" || k === "backend" || k === "addr") return parseIp(v) ? undefined : "expected an IPv4 or IPv6 address";
  if (k === "proto") return PROTOS.includes(v.toLowerCase()) ? undefined : `a protocol is one of ${PROTOS.join(", ")}`;
  if (k === "state") {
    // the engine's states, and the kernel's TCP states of offloaded flows
    const states = [...Object.values(CT_STATE_NAMES), "CLOSE_WAIT", "LAST_ACK", "SYN_SENT2"];
    return states.includes(v.toUpperCase()) ? undefined : `a state is one of ${states.join(", ")}`;
  }
  return undefined;
}

export function parseFilters(list: readonly string[]): Record<string, string> {
  const f: Record<string, string> = {};
  for (const item of list) {
    for (const part of item.split(",").filter(Boolean)) {
      const eq = part.indexOf("=");
      const k = part.slice(0, eq).trim(), v = part.slice(eq + 1).trim();
      if (eq <= 0 || !v) throw new CliError(`--filter ${JSON.stringify(part)} is not key=value (e.g. --filter proto=tcp --filter dst=10.96.0.10)`, EXIT.USAGE);
      if (!FILTER_KEYS.includes(k)) throw new CliError(`--filter key ${JSON.stringify(k)} is unknown; keys: ${FILTER_KEYS.join(", ")}`, EXIT.USAGE);
      const bad = badValue(k, v);
      if (bad) throw new CliError(`--filter ${k}=${JSON.stringify(v)}: ${bad}`, EXIT.USAGE);
      f[k] = v;
    }
  }
  return f;
}

const hp = (a: string, p: number) => `${a.includes(":") ? `[${a}]` : a}:${p}`;

export async function conntrack(socket: string, json: boolean, filters: string[], limitText: string): Promise<void> {
  const limit = Number(limitText);
  if (!/^\d+$/.test(limitText) || limit < 1) throw new CliError(`--limit is ${JSON.stringify(limitText)}; give a positive number`, EXIT.USAGE);
  const filter = parseFilters(filters);
  type List = { matched: number; shown: number; flows: any[] };
  const a = await request<List & { entries: number; capacity: number; kernel?: List & { entries: number } }>(socket, { cmd: "conntrack", filter, limit });
  if (json) { printJson(a); return; }
  const rows = (l: List) => table(["PROTO", "CLIENT", "SERVICE ADDRESS", "BACKEND", "REPLY TO", "STATE", "NAT", "SERVICE", "EXPIRES"], l.flows.map((f) => [
    f.proto, hp(f.src, f.sport), hp(f.dst, f.dport), hp(f.backend, f.backendPort), hp(f.replyDst, f.replyDport), f.state,
    [f.dnat ? "dnat" : "", f.snat ? "snat" : ""].filter(Boolean).join("+") || "-", f.service || "-", fmtDuration(f.expiresInSec),
  ]));
  if (a.kernel) {
    out("Carried by the kernel (offloaded: their conntrack entries, mark \"wasp\"):\n");
    out(rows(a.kernel));
    out(`${a.kernel.shown} shown of ${a.kernel.matched} matching; ${plural(a.kernel.entries, "offloaded flow")} in the kernel\n\n`);
    out("Decided by the engine (its own table; an offloaded flow stays there a while):\n");
  }
  out(rows(a));
  out(`${a.shown} shown of ${a.matched} matching; ${plural(a.entries, "flow")} in a table of ${a.capacity.toLocaleString("en-US")}\n`);
}

export async function routes(socket: string, json: boolean): Promise<void> {
  const a = await request<{ generation: number; routes: Array<{ prefix: string; kind: string; node: string; via: string; vtepMac: string }> }>(socket, { cmd: "routes" });
  if (json) { printJson(a); return; }
  out(table(["PREFIX", "KIND", "NODE", "VIA", "VTEP MAC"], a.routes.map((r) => [r.prefix, r.kind, r.node, r.via, r.vtepMac || "-"])));
  out(`generation ${a.generation}, ${plural(a.routes.length, "route")}\n`);
}

export async function nodes(socket: string, json: boolean): Promise<void> {
  const a = await request<{ nodes: Array<{ name: string; self: boolean; underlayIP: string; podCIDR: string; vtepMac: string; routes: string[] }>; vxlan: { vni: number; port: number } }>(socket, { cmd: "nodes" });
  if (json) { printJson(a); return; }
  out(table(["NODE", "", "UNDERLAY", "POD CIDR", "VTEP MAC", "ROUTES"], a.nodes.map((n) => [
    n.name, n.self ? "(this node)" : "", n.underlayIP, n.podCIDR, n.vtepMac, n.routes.join(" ") || "-",
  ])));
  out(`VXLAN VNI ${a.vxlan.vni}, UDP port ${a.vxlan.port}\n`);
}

export async function counters(socket: string, json: boolean, all: boolean): Promise<void> {
  const c = await request<Counters & { pathDrops: Record<string, number> }>(socket, { cmd: "counters" });
  if (json) { printJson(c); return; }
  out(table(["VERDICT", "PACKETS"], Object.entries(c.verdicts).filter(([v]) => v !== "none").map(([v, n]) => [v, n])));
  out("\n");
  const drops = Object.entries(c.drops).filter(([, n]) => all || n > 0);
  out(drops.length ? table(["DROP REASON", "PACKETS"], drops.map(([r, n]) => [r, n])) : "the engine dropped no packet\n");
  out("\n");
  const lost = Object.entries(c.pathDrops).filter(([, n]) => all || n > 0);
  out(lost.length ? table(["LOST OUTSIDE THE ENGINE", "PACKETS"], lost.map(([p, n]) => [p, n])) : "no packet lost outside the engine (kernel queues, socket buffers, writes)\n");
  out("\n");
  out(table(["COUNTER", "VALUE"], [...Object.entries(c.named).filter(([k]) => k !== "generation")]
    .map(([k, n]) => [String(k), Number(n)])));
}
