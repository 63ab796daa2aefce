// The control socket's requests ({"cmd": ...}) and their JSON answers. The daemon hands over a narrow
// context: read-only getters for what it runs, nothing that can change it. `trace` runs a crafted
// packet through a twin engine loaded with a snapshot of the current tables, never the live one.
import type { Config } from "../config/index.js";
import { Drop, Note, SlotFlag, Verdict, DROP_NAMES, VERDICT_NAMES } from "../engine/abi.js";
import { Engine, type EngineOptions } from "../engine/engine.js";
import { encodeModel } from "../engine/ops.js";
import { cidrContains, formatIp, localVtepMac, parseCidr, parseIp, readAddr16, RouteKind, u32ToIpv4, type Model } from "../model/index.js";
import { nowSec } from "./datapath.js";
import { ENGINE_MAC, firstAddress, firstAddress6, TAP_MAC } from "./node-net.js";

export interface ControlContext {
  engine(): Engine;
  /** The options the daemon's engine was made with (trace builds a twin from them). */
  engineOptions(): EngineOptions;
  model(): Model;
  config(): Config;
  readonly device: string;
  readonly ioUring: boolean;
  gateway(): string;
  readonly startedMs: number;
  tunWriteDropped(): number;
  /** The overlay's UDP-tunnel GSO: the TAP it goes through, or why it is off; undefined while
   *  there is no underlay (a single node). */
  tunnelGso(): { device: string } | { off: string } | undefined;
}

export type ControlRequest = { cmd?: unknown } & Record<string, unknown>;

const KINDS = ["ClusterIP", "NodePort", "ExternalIP", "LoadBalancer"];
/** Bytes per service in the core's stats area: u64 packets, u64 bytes, u64 new flows. */
const STATS_STRIDE = 24;

export const COMMANDS = ["status", "services", "conntrack", "routes", "nodes", "counters", "trace", "config"] as const;

export function makeControlApi(ctx: ControlContext): (req: ControlRequest) => unknown {
  return (req) => {
    switch (req.cmd) {
      case "status": return status(ctx);
      case "services": return { generation: ctx.engine().exports.generation(), services: services(ctx) };
      case "conntrack": return conntrack(ctx, req);
      case "routes": return { generation: ctx.engine().exports.generation(), routes: routes(ctx) };
      case "nodes": return nodes(ctx);
      case "counters": return { ...ctx.engine().counters(), tunWriteDropped: ctx.tunWriteDropped() };
      case "trace": return trace(ctx, req);
      case "config": return { generation: ctx.engine().exports.generation(), config: ctx.config() };
      default:
        return { error: `unknown cmd ${JSON.stringify(req.cmd)}; expected one of ${COMMANDS.map((c) => `"${c}"`).join(", ")}` };
    }
  };
}

/**
 * Packets per batch. One UDP GRO datagram from another node is up to ~45 segments, each taking a
 * slot: with 64 slots a batch held one and a half of them and the rest waited in native memory for
 * the next turn; 256 hold five (overlay TCP measured 6.5 -> 7.0 Gbit/s). Slot buffers are touched
 * only as deep as a batch fills them, so an idle node's RSS does not grow with this.
 */
export const DAEMON_MAX_BATCH = 256;

/** The engine options a config gives: the daemon starts its engine with them, replay and trace their twins. */
export function engineOptionsFor(config: Config): EngineOptions {
  return {
    conntrackCapacity: config.conntrack.capacity,
    maxBatch: DAEMON_MAX_BATCH,
    ...(config.tables ? { maxServices: config.tables.services, maxBackends: config.tables.backends } : {}),
    mode: config.mode,
    tapPeerMac: TAP_MAC,
    engineMac: ENGINE_MAC,
    underlayIp: config.node.underlayIP,
    underlayMtu: config.node.underlayMTU,
    vni: config.vxlan.vni,
    vxlanPort: config.vxlan.port,
    vtepMac: localVtepMac(config.node),
    masqAddr4: firstAddress(config.node.podCIDR),
    ...(config.node.podCIDRv6 ? { masqAddr6: firstAddress6(config.node.podCIDRv6) } : {}),
    serviceCidr4: config.serviceCIDR,
    clusterCidr4: config.clusterCIDR,
    ...(config.serviceCIDRv6 ? { serviceCidr6: config.serviceCIDRv6 } : {}),
    ...(config.clusterCIDRv6 ? { clusterCidr6: config.clusterCIDRv6 } : {}),
  };
}

function status(ctx: ControlContext): unknown {
  const engine = ctx.engine(), config = ctx.config();
  return {
    pid: process.pid, mode: config.mode, device: ctx.device, ioUring: ctx.ioUring, address: ctx.gateway(), node: config.node.name,
    generation: engine.exports.generation(), uptimeSec: Math.round((Date.now() - ctx.startedMs) / 1000),
    services: ctx.model().services.size, conntrack: { entries: engine.exports.ctCount(), capacity: engine.exports.ctCapacity() },
    counters: engine.counters(), tunWriteDropped: ctx.tunWriteDropped(), tunnelGso: ctx.tunnelGso(),
  };
}

function services(ctx: ControlContext): unknown[] {
  const engine = ctx.engine(), v = engine.view(), base = engine.exports.serviceStatsAddr();
  return [...ctx.model().services.values()].map((e) => {
    const p = base + e.id * STATS_STRIDE;
    return {
      key: e.key, service: e.service, port: e.portName, kind: KINDS[e.kind],
      id: e.id, backends: e.backends.map((b, i) => ({ addr: b.addr, port: b.port, eligible: i < e.eligible })),
      select: e.select === 1 ? "maglev" : "random", affinitySec: e.affinitySec,
      packets: Number(v.getBigUint64(p, true)), bytes: Number(v.getBigUint64(p + 8, true)), newFlows: Number(v.getBigUint64(p + 16, true)),
    };
  });
}

function routes(ctx: ControlContext): unknown[] {
  return [...ctx.model().routes.values()].map((r) => ({
    prefix: r.key, kind: r.kind === RouteKind.Local ? "local" : "remote", node: r.nodeName,
    via: r.kind === RouteKind.Local ? ctx.device : `vxlan ${u32ToIpv4(r.underlay)}`, vtepMac: r.kind === RouteKind.Local ? "" : r.vtepMac,
  }));
}

function nodes(ctx: ControlContext): unknown {
  const c = ctx.config();
  const routesOf = (name: string) => [...ctx.model().routes.values()].filter((r) => r.nodeName === name).map((r) => r.key);
  return {
    nodes: [
      { name: c.node.name, self: true, underlayIP: c.node.underlayIP, podCIDR: c.node.podCIDR, vtepMac: localVtepMac(c.node), routes: routesOf(c.node.name) },
      ...c.nodes.map((n) => ({
        name: n.name, self: false, underlayIP: n.underlayIP, podCIDR: n.podCIDR, vtepMac: localVtepMac(n), routes: routesOf(n.name),
      })),
    ],
    vxlan: c.vxlan,
  };
}

// ── conntrack ───────────────────────────────────────────────────────────────────────────────
// Flow record layout: assembly/table/conntrack.ts (128 bytes).
const CT = { F_SRC: 0, F_DST: 16, R_SRC: 32, F_SPORT: 48, F_DPORT: 50, R_SPORT: 52, R_DPORT: 54, PROTO: 56, STATE: 57, CLS: 58, FLAGS: 59, LAST: 60, R_DST: 64, SERVICE: 80, CREATED: 96 };
const CT_STATES: Record<number, string> = {
  1: "SYN_SENT", 2: "SYN_RECV", 3: "ESTABLISHED", 4: "FIN_WAIT", 5: "TIME_WAIT", 6: "CLOSE", 10: "UNREPLIED", 11: "REPLIED", 20: "ICMP", 30: "OTHER",
};
/** Seconds per timeout class (the TIMEOUTS table of assembly/table/conntrack.ts). */
const CT_TIMEOUTS = [120, 432000, 120, 120, 10, 30, 120, 30];
const PROTO_NAMES: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };
const CT_FILTER_KEYS = ["proto", "src", "dst", "sport", "dport", "backend", "service", "state", "addr", "port"] as const;
const MAX_FLOWS = 10_000;

export interface Flow {
  proto: string; src: string; sport: number; dst: string; dport: number;
  backend: string; backendPort: number; replyDst: string; replyDport: number;
  state: string; dnat: boolean; snat: boolean; replied: boolean; service: string; ageSec: number; expiresInSec: number;
}

function conntrack(ctx: ControlContext, req: ControlRequest): unknown {
  const filters = req.filter === undefined ? {} : req.filter;
  if (typeof filters !== "object" || filters === null || Array.isArray(filters)) return { error: "filter must be an object like {\"proto\":\"tcp\"}" };
  const f = filters as Record<string, unknown>;
  for (const k of Object.keys(f)) {
    if (!(CT_FILTER_KEYS as readonly string[]).includes(k)) return { error: `unknown conntrack filter ${JSON.stringify(k)}; known: ${CT_FILTER_KEYS.join(", ")}` };
  }
  const limit = typeof req.limit === "number" && req.limit > 0 ? Math.min(req.limit, MAX_FLOWS) : 1000;
  const engine = ctx.engine(), ex = engine.exports, mem = new Uint8Array(engine.memory), v = engine.view();
  const ids = new Map([...ctx.model().services.values()].map((e) => [e.id + 1, `${e.service}:${e.portName} (${e.key})`]));
  const now = nowSec();
  const flows: Flow[] = [];
  let matched = 0;
  const cap = ex.ctCapacity();
  for (let i = 0; i < cap; i++) {
    const r = ex.ctRecord(i);
    if (r === 0) continue;
    const addr = (off: number) => formatIp(readAddr16(mem, r + off));
    const fl = v.getUint8(r + CT.FLAGS), last = v.getUint32(r + CT.LAST, true), cls = v.getUint8(r + CT.CLS);
    const flow: Flow = {
      proto: PROTO_NAMES[v.getUint8(r + CT.PROTO)] ?? String(v.getUint8(r + CT.PROTO)),
      src: addr(CT.F_SRC), sport: v.getUint16(r + CT.F_SPORT, true), dst: addr(CT.F_DST), dport: v.getUint16(r + CT.F_DPORT, true),
      backend: addr(CT.R_SRC), backendPort: v.getUint16(r + CT.R_SPORT, true), replyDst: addr(CT.R_DST), replyDport: v.getUint16(r + CT.R_DPORT, true),
      state: CT_STATES[v.getUint8(r + CT.STATE)] ?? String(v.getUint8(r + CT.STATE)),
      dnat: (fl & 1) !== 0, snat: (fl & 2) !== 0, replied: (fl & 4) !== 0,
      service: ids.get(v.getUint32(r + CT.SERVICE, true)) ?? "",
      ageSec: Math.max(0, now - v.getUint32(r + CT.CREATED, true)),
      expiresInSec: Math.max(0, last + (CT_TIMEOUTS[cls] ?? 0) - now),
    };
    if (!flowMatches(flow, f)) continue;
    matched++;
    if (flows.length < limit) flows.push(flow);
  }
  return { entries: ex.ctCount(), capacity: cap, matched, shown: flows.length, flows };
}

function flowMatches(fl: Flow, f: Record<string, unknown>): boolean {
  const s = (k: string) => (f[k] === undefined ? undefined : String(f[k]).toLowerCase());
  const eq = (k: string, ...vals: Array<string | number>) => s(k) === undefined || vals.some((x) => String(x).toLowerCase() === s(k));
  return eq("proto", fl.proto) && eq("src", fl.src) && eq("dst", fl.dst) && eq("sport", fl.sport) && eq("dport", fl.dport)
    && eq("backend", fl.backend) && eq("state", fl.state) && eq("addr", fl.src, fl.dst, fl.backend, fl.replyDst)
    && eq("port", fl.sport, fl.dport, fl.backendPort, fl.replyDport)
    && (s("service") === undefined || fl.service.toLowerCase().includes(s("service")!));
}

// ── trace ───────────────────────────────────────────────────────────────────────────────────
// Stage numbers of assembly/pipeline/trace.ts; each record: u32 stage, u32 a, u32 b, u32 slot.
const T = { PARSE: 1, DECAP: 2, CONNTRACK: 3, SERVICE: 4, BACKEND: 5, NAT: 6, ROUTE: 7 } as const;
const STAGE_NAMES: Record<number, string> = { 1: "parse", 2: "decap", 3: "conntrack", 4: "service", 5: "backend", 6: "nat", 7: "route" };
const TRACE_SPORT = 40000;

export interface TraceStage { stage: string; detail: string; a: number; b: number }
export interface TraceAnswer {
  generation: number;
  packet: { proto: string; src: string; sport: number; dst: string; dport: number };
  stages: TraceStage[];
  verdict: string;
  reason: string;
  notes: string[];
  service: string;
  output?: { src: string; sport: number; dst: string; dport: number; nextHop?: string; len: number };
  /** Where the crafted packet enters: wasp0, or VXLAN from the node whose pod CIDR holds the source. */
  arrives?: string;
}

function trace(ctx: ControlContext, req: ControlRequest): unknown {
  const src = String(req.src ?? ""), dst = String(req.dst ?? ""), proto = String(req.proto ?? "tcp").toLowerCase();
  const dport = Number(req.dport ?? 0), sport = req.sport === undefined ? TRACE_SPORT : Number(req.sport);
  const s = parseIp(src), d = parseIp(dst);
  if (!s) return { error: `trace: src ${JSON.stringify(src)} is not an IP address` };
  if (!d) return { error: `trace: dst ${JSON.stringify(dst)} is not an IP address` };
  if (s.family !== d.family) return { error: `trace: src ${src} and dst ${dst} are of different families` };
  if (!["tcp", "udp", "icmp"].includes(proto)) return { error: `trace: proto ${JSON.stringify(proto)}; expected tcp, udp or icmp` };
  if (proto !== "icmp" && (!Number.isInteger(dport) || dport < 1 || dport > 65535)) return { error: `trace: port ${req.dport} is not 1-65535` };
  if (!Number.isInteger(sport) || sport < 1 || sport > 65535) return { error: `trace: source port ${req.sport} is not 1-65535` };
  const opts = ctx.engineOptions();
  // A twin: the same options and tables, its own (empty) conntrack; the live engine is not touched.
  const twin = new Engine({ ...opts, conntrackCapacity: 1024 });
  const model = ctx.model();
  const bytes = encodeModel(model, new Uint8Array(twin.memory, twin.stage, twin.stageCapacity), 0);
  const r = twin.exports.commit(bytes);
  if (r !== 0) return { error: `trace: the twin engine refused the current tables (commit result ${r})` };
  const packet = craft(formatIp(s), formatIp(d), proto, sport, dport, s.family === 6);
  const tap = opts.mode === "tap";
  // A pod of another node reaches this one through VXLAN from that node's underlay address.
  const remote = [...model.routes.values()].find((rt) => rt.kind === RouteKind.Remote && cidrContains(parseCidr(rt.key)!, s));
  if (remote) {
    const vxlan = new Uint8Array(8 + 14 + packet.length);
    const vni = ctx.config().vxlan.vni, mac = (m: string) => m.split(":").map((x) => parseInt(x, 16));
    vxlan.set([0x08, 0, 0, 0, (vni >> 16) & 255, (vni >> 8) & 255, vni & 255, 0]);  // RFC 7348 §5: I flag, VNI
    vxlan.set(mac(localVtepMac(ctx.config().node)), 8); vxlan.set(mac(remote.vtepMac), 14);
    vxlan.set(s.family === 6 ? [0x86, 0xdd] : [0x08, 0x00], 20);
    vxlan.set(packet, 22);
    twin.putPacket(0, vxlan, SlotFlag.TRACE | SlotFlag.FROM_OVERLAY, remote.underlay);
  } else {
    twin.putPacket(0, tap ? withEthernet(packet, s.family === 6) : packet, SlotFlag.TRACE | (tap ? SlotFlag.ETHERNET : 0));
  }
  twin.process(1, nowSec());
  const answer = describeTrace(twin, model, tap, ctx.engine().exports.generation(), { proto, src: formatIp(s), sport, dst: formatIp(d), dport: proto === "icmp" ? 0 : dport });
  answer.arrives = remote ? `over VXLAN from node ${remote.nodeName} (${u32ToIpv4(remote.underlay)})` : `from ${ctx.device}`;
  return answer;
}

function describeTrace(twin: Engine, model: Model, tap: boolean, generation: number, packet: TraceAnswer["packet"]): TraceAnswer {
  const v = twin.view(), base = twin.exports.traceAddr(), n = v.getUint32(base, true);
  const byId = new Map([...model.services.values()].map((e) => [e.id + 1, e]));
  const stages: TraceStage[] = [];
  let svc: ReturnType<typeof byId.get>;
  for (let i = 0; i < n; i++) {
    const p = base + 4 + i * 16, stage = v.getUint32(p, true), a = v.getUint32(p + 4, true), b = v.getUint32(p + 8, true);
    let detail = "";
    switch (stage) {
      case T.PARSE: detail = a === Drop.None ? `${PROTO_NAMES[b] ?? `protocol ${b}`} packet, headers valid` : `malformed: ${DROP_NAMES[a]}`; break;
      case T.DECAP: detail = a === 0 ? `VXLAN from ${u32ToIpv4(b)} decapsulated` : `VXLAN rejected: ${DROP_NAMES[a]}`; break;
      case T.CONNTRACK: detail = a ? "existing flow: rewritten as that flow was" : "no flow yet (a new connection; the snapshot's conntrack is empty)"; break;
      case T.SERVICE: {
        svc = byId.get(a);
        const name = svc ? `${svc.service}:${svc.portName} ${svc.key} (${KINDS[svc.kind]})` : `entry ${a - 1}`;
        detail = `matches service ${name}; ${b} eligible backend${b === 1 ? "" : "s"}${svc ? ` of ${svc.backends.length}` : ""}`;
        break;
      }
      case T.BACKEND: {
        const be = svc?.backends[a];
        const how = b === 1 ? "Maglev: consistent hash of the 5-tuple" : `random among the ${svc?.eligible ?? "?"} eligible (ready) backends`;
        detail = `backend #${a}${be ? ` ${be.addr}:${be.port}` : ""}, chosen by ${how}${svc && svc.affinitySec ? ` (ClientIP affinity ${svc.affinitySec} s)` : ""}`;
        break;
      }
      case T.NAT: detail = a === 0 ? "forward NAT applied (destination rewritten to the backend)" : "reverse NAT applied (a reply: source rewritten to the service)"; break;
      case T.ROUTE:
        detail = a === 0xff ? "no pod route: to the host's own routing"
          : a === RouteKind.Local ? "local pod route: out through wasp0 to the pod" : `remote pod route: VXLAN to node ${u32ToIpv4(b)}`;
        break;
    }
    stages.push({ stage: STAGE_NAMES[stage] ?? `stage ${stage}`, detail, a, b });
  }
  const slot = twin.slot(0);
  const notes = Object.entries(Note).filter(([, bit]) => (slot.note & bit) !== 0).map(([k]) => k.toLowerCase());
  const e = byId.get(slot.service);
  const answer: TraceAnswer = {
    generation, packet, stages, verdict: VERDICT_NAMES[slot.verdict] ?? String(slot.verdict), reason: DROP_NAMES[slot.reason] ?? String(slot.reason),
    notes, service: e ? `${e.service}:${e.portName}` : "",
  };
  if (slot.verdict !== Verdict.Drop) answer.output = outputTuple(twin.output(0), tap && slot.verdict !== Verdict.Overlay, slot.verdict === Verdict.Overlay, slot.peer);
  return answer;
}

/** Source, destination and ports of what left the core (inside the VXLAN packet for Overlay). */
function outputTuple(b: Uint8Array, ethernet: boolean, overlay: boolean, peer: number): TraceAnswer["output"] {
  // TAP mode: an Ethernet header first; VXLAN: outer IPv4, UDP, VXLAN and the inner Ethernet header
  const o = (ethernet ? 14 : 0) + (overlay ? 20 + 8 + 8 + 14 : 0);
  const v6 = (b[o]! >> 4) === 6;
  const hl = v6 ? 40 : (b[o]! & 15) * 4, proto = v6 ? b[o + 6]! : b[o + 9]!;
  const ip = (at: number, len: number) => formatIp(readAddr16(v6 ? b.slice(at, at + 16) : Uint8Array.from([...Array(10).fill(0), 255, 255, ...b.slice(at, at + len)]), 0));
  const src = ip(o + (v6 ? 8 : 12), 4), dst = ip(o + (v6 ? 24 : 16), 4);
  const l4 = o + hl, port = (at: number) => (proto === 6 || proto === 17 ? (b[at]! << 8) | b[at + 1]! : 0);
  return { src, sport: port(l4), dst, dport: port(l4 + 2), len: b.length, ...(overlay ? { nextHop: u32ToIpv4(peer) } : {}) };
}

// ── packet crafting (trace) ─────────────────────────────────────────────────────────────────

function sum16(b: Uint8Array, from: number, to: number, acc = 0): number {
  for (let i = from; i < to; i += 2) acc += (b[i]! << 8) | (i + 1 < to ? b[i + 1]! : 0);
  return acc;
}
function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16);
  return ~acc & 0xffff;
}

/** A TCP SYN, a UDP datagram or an ICMP echo request as a pod sends it (TTL 63: one kernel hop done). */
export function craft(src: string, dst: string, proto: string, sport: number, dport: number, v6: boolean): Uint8Array {
  const payload = new TextEncoder().encode("wasp trace");
  let l4: Uint8Array;
  const pn = proto === "tcp" ? 6 : proto === "udp" ? 17 : v6 ? 58 : 1;
  if (proto === "tcp") {
    l4 = new Uint8Array(20);
    l4.set([sport >> 8, sport & 255, dport >> 8, dport & 255, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff]);
  } else if (proto === "udp") {
    l4 = new Uint8Array(8 + payload.length);
    l4.set([sport >> 8, sport & 255, dport >> 8, dport & 255, l4.length >> 8, l4.length & 255]);
    l4.set(payload, 8);
  } else {
    l4 = new Uint8Array(8 + payload.length);
    l4.set([v6 ? 128 : 8, 0, 0, 0, 0x77, 0x61, 0, 1]);
    l4.set(payload, 8);
  }
  const sb = parseIp(src)!.bytes, db = parseIp(dst)!.bytes;
  const hl = v6 ? 40 : 20, out = new Uint8Array(hl + l4.length);
  if (v6) {
    out.set([0x60, 0, 0, 0, l4.length >> 8, l4.length & 255, pn, 63]);
    out.set(sb, 8); out.set(db, 24);
  } else {
    const tl = out.length;
    out.set([0x45, 0, tl >> 8, tl & 255, 0x12, 0x34, 0x40, 0, 63, pn, 0, 0]);
    out.set(sb.subarray(12), 12); out.set(db.subarray(12), 16);
    const c = fold(sum16(out, 0, 20));
    out[10] = c >> 8; out[11] = c & 255;
  }
  out.set(l4, hl);
  // L4 checksum: over the pseudo-header (not for ICMPv4), RFC 768 / 793 / 4443.
  let acc = 0;
  if (pn !== 1) {
    const ph = v6 ? out.subarray(8, 40) : out.subarray(12, 20);
    acc = sum16(ph, 0, ph.length) + pn + l4.length;
  }
  acc = sum16(out, hl, out.length, acc);
  let c = fold(acc);
  if (pn === 17 && c === 0) c = 0xffff;
  const at = hl + (pn === 6 ? 16 : pn === 17 ? 6 : 2);
  out[at] = c >> 8; out[at + 1] = c & 255;
  return out;
}

function withEthernet(p: Uint8Array, v6: boolean): Uint8Array {
  const mac = (s: string) => s.split(":").map((x) => parseInt(x, 16));
  const f = new Uint8Array(14 + p.length);
  f.set(mac(ENGINE_MAC), 0); f.set(mac(TAP_MAC), 6);
  f[12] = v6 ? 0x86 : 0x08; f[13] = v6 ? 0xdd : 0x00;
  f.set(p, 14);
  return f;
}
