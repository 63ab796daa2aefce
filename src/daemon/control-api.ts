// The control socket's requests ({"cmd": ...}) and their JSON answers. The daemon hands over a narrow
// context: read-only getters for what it runs, nothing that can change it.
import type { Config } from "../config/index.js";
import type { Engine, EngineOptions } from "../engine/engine.js";
import type { Model } from "../model/index.js";

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
}

export type ControlRequest = { cmd?: unknown } & Record<string, unknown>;

const KINDS = ["ClusterIP", "NodePort", "ExternalIP", "LoadBalancer"];
/** Bytes per service in the core's stats area: u64 packets, u64 bytes, u64 new flows. */
const STATS_STRIDE = 24;

export const COMMANDS = ["status", "services"] as const;

export function makeControlApi(ctx: ControlContext): (req: ControlRequest) => unknown {
  return (req) => {
    switch (req.cmd) {
      case "status": return status(ctx);
      case "services": return { generation: ctx.engine().exports.generation(), services: services(ctx) };
      default:
        return { error: `unknown cmd ${JSON.stringify(req.cmd)}; expected one of ${COMMANDS.map((c) => `"${c}"`).join(", ")}` };
    }
  };
}

function status(ctx: ControlContext): unknown {
  const engine = ctx.engine(), config = ctx.config();
  return {
    mode: config.mode, device: ctx.device, ioUring: ctx.ioUring, address: ctx.gateway(), node: config.node.name,
    generation: engine.exports.generation(), uptimeSec: Math.round((Date.now() - ctx.startedMs) / 1000),
    services: ctx.model().services.size, conntrack: { entries: engine.exports.ctCount(), capacity: engine.exports.ctCapacity() },
    counters: engine.counters(), tunWriteDropped: ctx.tunWriteDropped(),
  };
}

function services(ctx: ControlContext): unknown[] {
  const engine = ctx.engine(), v = engine.view(), base = engine.exports.serviceStatsAddr();
  return [...ctx.model().services.values()].map((e) => {
    const p = base + e.id * STATS_STRIDE;
    return {
      key: e.key, service: e.service, port: e.portName, kind: KINDS[e.kind],
      id: e.id, backends: e.backends.map((b, i) => ({ addr: b.addr, port: b.port, eligible: i < e.eligible })),
      packets: Number(v.getBigUint64(p, true)), bytes: Number(v.getBigUint64(p + 8, true)), newFlows: Number(v.getBigUint64(p + 16, true)),
    };
  });
}
