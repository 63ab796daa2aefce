// The control socket's requests ({"cmd": ...}) and their JSON answers. The daemon hands over a narrow
// context: read-only getters for what it runs, nothing that can change it. `trace` runs a crafted
// packet through a twin engine loaded with a snapshot of the current tables, never the live one.
import type { Config } from "../config/index.js";
import { CT_STATE_NAMES, FlowFlag } from "../engine/abi.js";
import type { KernelFlow } from "../netlink/conntrack.js";
import type { Engine, EngineOptions } from "../engine/engine.js";
import type { Rejections } from "./metrics.js";
import { formatIp, localVtepMac, RouteKind, u32ToIpv4, type Model } from "../model/index.js";
import { cniCalls } from "./cni-socket.js";
import { nowSec } from "./datapath.js";
import type { PathDrops } from "./path-drops.js";
import { KINDS, PROTO_NAMES, trace } from "./trace.js";

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
  /** Packets lost outside the engine, by place (path-drops.ts). */
  pathDrops(): PathDrops;
  /** The overlay's UDP-tunnel GSO: the TAP it goes through, or why it is off; undefined while
   *  there is no underlay (a single node). */
  tunnelGso(): { device: string } | { off: string } | undefined;
  /** Offload mode: on or off, and why; the kernel's counters of offloaded flows when on. */
  offload(): Promise<{ on: boolean; why: string; kernel?: Record<string, { packets: number; bytes: number }> | undefined }>;
  /** Offload mode: the kernel's conntrack entries the engine made (a dump, off the JS thread). */
  kernelFlows?(): Promise<KernelFlow[]>;
  /** The config changes turned down, and the last one. */
  rejections?(): Rejections;
}

export type ControlRequest = { cmd?: unknown } & Record<string, unknown>;


export const COMMANDS = ["status", "services", "conntrack", "routes", "nodes", "counters", "trace", "config"] as const;

export function makeControlApi(ctx: ControlContext): (req: ControlRequest) => unknown {
  return (req) => {
    switch (req.cmd) {
      case "status": return status(ctx);
      case "services": return { generation: ctx.engine().generation(), services: services(ctx) };
      case "conntrack": return conntrack(ctx, req);
      case "routes": return { generation: ctx.engine().generation(), routes: routes(ctx) };
      case "nodes": return nodes(ctx);
      case "counters": return { ...ctx.engine().counters(), pathDrops: ctx.pathDrops() };
      case "trace": return trace(ctx, req);
      case "config": return { generation: ctx.engine().generation(), config: ctx.config() };
      default:
        return { error: `unknown cmd ${JSON.stringify(req.cmd)}; expected one of ${COMMANDS.map((c) => `"${c}"`).join(", ")}` };
    }
  };
}

async function status(ctx: ControlContext): Promise<unknown> {
  // the kernel's counters first (a child process, off the event loop), then the engine's, as of now
  const offload = await ctx.offload();
  const engine = ctx.engine(), config = ctx.config();
  return {
    pid: process.pid, mode: config.mode, device: ctx.device, ioUring: ctx.ioUring, address: ctx.gateway(), node: config.node.name,
    generation: engine.generation(), uptimeSec: Math.round((Date.now() - ctx.startedMs) / 1000),
    services: ctx.model().services.size, conntrack: { entries: engine.flowCount(), capacity: engine.flowCapacity(), ceiling: engine.flowCeiling() },
    counters: engine.counters(), pathDrops: ctx.pathDrops(), tunnelGso: ctx.tunnelGso(),
    offload,
    // the engine's memory, and whether its tables hold all they were given (a memory ceiling)
    tables: engine.tablesState(),
    ...(cniCalls.socket ? { cni: cniCalls } : {}),
    ...(ctx.rejections ? { reloadsRejected: ctx.rejections() } : {}),
  };
}

function services(ctx: ControlContext): unknown[] {
  const engine = ctx.engine();
  return [...ctx.model().services.values()].map((e) => {
    const st = engine.serviceStats(e.id);
    return {
      key: e.key, service: e.service, port: e.portName, kind: KINDS[e.kind],
      id: e.id, backends: e.backends.map((b, i) => ({ addr: b.addr, port: b.port, eligible: i < e.eligible })),
      select: e.select === 1 ? "maglev" : "random", affinitySec: e.affinitySec,
      packets: st.packets, bytes: st.bytes, newFlows: st.newFlows,
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
const CT_FILTER_KEYS = ["proto", "src", "dst", "sport", "dport", "backend", "service", "state", "addr", "port"] as const;
const MAX_FLOWS = 10_000;

export interface Flow {
  proto: string; src: string; sport: number; dst: string; dport: number;
  backend: string; backendPort: number; replyDst: string; replyDport: number;
  state: string; dnat: boolean; snat: boolean; replied: boolean; service: string; ageSec: number; expiresInSec: number;
  /** Kernel flows (offload mode), with conntrack accounting on: both directions. */
  packets?: number; bytes?: number;
}

function conntrack(ctx: ControlContext, req: ControlRequest): unknown {
  const filters = req.filter === undefined ? {} : req.filter;
  if (typeof filters !== "object" || filters === null || Array.isArray(filters)) return { error: "filter must be an object like {\"proto\":\"tcp\"}" };
  const f = filters as Record<string, unknown>;
  for (const k of Object.keys(f)) {
    if (!(CT_FILTER_KEYS as readonly string[]).includes(k)) return { error: `unknown conntrack filter ${JSON.stringify(k)}; known: ${CT_FILTER_KEYS.join(", ")}` };
  }
  const limit = typeof req.limit === "number" && req.limit > 0 ? Math.min(req.limit, MAX_FLOWS) : 1000;
  const engine = ctx.engine();
  const ids = new Map([...ctx.model().services.values()].map((e) => [e.id + 1, `${e.service}:${e.portName} (${e.key})`]));
  const now = nowSec();
  const flows: Flow[] = [];
  let matched = 0;
  for (const r of engine.flows()) {
    const flow: Flow = {
      proto: PROTO_NAMES[r.proto] ?? String(r.proto),
      src: formatIp(r.src), sport: r.sport, dst: formatIp(r.dst), dport: r.dport,
      backend: formatIp(r.replySrc), backendPort: r.replySport, replyDst: formatIp(r.replyDst), replyDport: r.replyDport,
      state: CT_STATE_NAMES[r.state] ?? String(r.state),
      dnat: (r.flags & FlowFlag.DNAT) !== 0, snat: (r.flags & FlowFlag.SNAT) !== 0, replied: (r.flags & FlowFlag.REPLIED) !== 0,
      service: ids.get(r.service) ?? "",
      ageSec: Math.max(0, now - r.createdSec),
      expiresInSec: Math.max(0, r.expiresSec - now),
    };
    if (!flowMatches(flow, f)) continue;
    matched++;
    if (flows.length < limit) flows.push(flow);
  }
  const answer = { entries: engine.flowCount(), capacity: engine.flowCapacity(), matched, shown: flows.length, flows };
  if (!ctx.kernelFlows) return answer;
  // offload mode: the flows the kernel carries, beside the engine's recent decisions
  const byKey = new Map([...ctx.model().services.values()].map((e) => [`${e.addr}|${e.port}|${e.protocol.toLowerCase()}`, `${e.service}:${e.portName} (${e.key})`]));
  return ctx.kernelFlows().then((list) => {
    const kernel: Flow[] = [];
    let km = 0;
    for (const k of list) {
      const proto = PROTO_NAMES[k.proto] ?? String(k.proto);
      const flow: Flow = {
        proto, src: k.orig.src, sport: k.orig.sport, dst: k.orig.dst, dport: k.orig.dport,
        backend: k.reply.src, backendPort: k.reply.sport, replyDst: k.reply.dst, replyDport: k.reply.dport,
        state: k.state || ((k.status & IPS_SEEN_REPLY) ? "REPLIED" : "UNREPLIED"),
        dnat: (k.status & IPS_DST_NAT) !== 0, snat: (k.status & IPS_SRC_NAT) !== 0, replied: (k.status & IPS_SEEN_REPLY) !== 0,
        service: byKey.get(`${k.orig.dst}|${k.orig.dport}|${proto}`) ?? "", ageSec: -1, expiresInSec: k.timeoutSec,
        packets: k.packets, bytes: k.bytes,
      };
      if (!flowMatches(flow, f)) continue;
      km++;
      if (kernel.length < limit) kernel.push(flow);
    }
    return { ...answer, kernel: { entries: list.length, matched: km, shown: kernel.length, flows: kernel } };
  });
}

// IP_CT_* status bits (linux/netfilter/nf_conntrack_common.h)
const IPS_SEEN_REPLY = 1 << 1, IPS_SRC_NAT = 1 << 4, IPS_DST_NAT = 1 << 5;

function flowMatches(fl: Flow, f: Record<string, unknown>): boolean {
  const s = (k: string) => (f[k] === undefined ? undefined : String(f[k]).toLowerCase());
  const eq = (k: string, ...vals: Array<string | number>) => s(k) === undefined || vals.some((x) => String(x).toLowerCase() === s(k));
  return eq("proto", fl.proto) && eq("src", fl.src) && eq("dst", fl.dst) && eq("sport", fl.sport) && eq("dport", fl.dport)
    && eq("backend", fl.backend) && eq("state", fl.state) && eq("addr", fl.src, fl.dst, fl.backend, fl.replyDst)
    && eq("port", fl.sport, fl.dport, fl.backendPort, fl.replyDport)
    && (s("service") === undefined || fl.service.toLowerCase().includes(s("service")!));
}

