// `wasp trace`: a crafted packet (src/packet/craft.ts) run through a twin engine loaded with a
// snapshot of the current tables, never the live one; each stage the core recorded, in words.
import { Drop, Note, SlotFlag, Stage, STAGE_NAMES, TRACE_NO_ROUTE, Verdict, DROP_NAMES, VERDICT_NAMES } from "../engine/abi.js";
import { Engine, type TraceStep } from "../engine/engine.js";
import { ENGINE_MAC, TAP_MAC } from "../engine/options.js";
import { cidrContains, formatIp, localVtepMac, macBytes, parseCidr, parseIp, readAddr16, RouteKind, u32ToIpv4, type Model, type ServiceEntry } from "../model/index.js";
import { craftPacket, withEthernet, withVxlan, type CraftProto } from "../packet/craft.js";
import type { ControlContext, ControlRequest } from "./control-api.js";
import { nowSec } from "./datapath.js";

export const KINDS = ["ClusterIP", "NodePort", "ExternalIP", "LoadBalancer"];
export const PROTO_NAMES: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };

const TRACE_SPORT = 40000;
const TRACE_PAYLOAD = new TextEncoder().encode("wasp trace");

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
  /** Offload mode: the backend the kernel's conntrack entry sends the flow to. */
  offloadedTo?: { addr: string; port: number };
}

export function trace(ctx: ControlContext, req: ControlRequest): unknown {
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
  try {
    twin.loadModel(model);
  } catch (e) {
    return { error: `trace: the twin engine refused the current tables (${(e as Error).message})` };
  }
  const packet = craftPacket({ src: formatIp(s), dst: formatIp(d), proto: proto as CraftProto, sport, dport, payload: TRACE_PAYLOAD });
  const tap = opts.mode === "tap";
  // A pod of another node reaches this one through VXLAN from that node's underlay address.
  const remote = [...model.routes.values()].find((rt) => rt.kind === RouteKind.Remote && cidrContains(parseCidr(rt.key)!, s));
  if (remote) {
    const inner = withEthernet(packet, macBytes(localVtepMac(ctx.config().node)), macBytes(remote.vtepMac));
    twin.putPacket(0, withVxlan(ctx.config().vxlan.vni, inner), SlotFlag.TRACE | SlotFlag.FROM_OVERLAY, remote.underlay);
  } else {
    twin.putPacket(0, tap ? withEthernet(packet, macBytes(ENGINE_MAC), macBytes(TAP_MAC)) : packet, SlotFlag.TRACE | (tap ? SlotFlag.ETHERNET : 0));
  }
  twin.process(1, nowSec());
  const answer = describeTrace(twin, model, tap, ctx.engine().generation(), { proto, src: formatIp(s), sport, dst: formatIp(d), dport: proto === "icmp" ? 0 : dport });
  answer.arrives = remote ? `over VXLAN from node ${remote.nodeName} (${u32ToIpv4(remote.underlay)})` : `from ${ctx.device}`;
  return answer;
}

function describeStep(step: TraceStep, svc: ServiceEntry | undefined): string {
  const { stage, a, b } = step;
  switch (stage) {
    case Stage.Parse: return a === Drop.None ? `${PROTO_NAMES[b] ?? `protocol ${b}`} packet, headers valid` : `malformed: ${DROP_NAMES[a]}`;
    case Stage.Decap: return a === 0 ? `VXLAN from ${u32ToIpv4(b)} decapsulated` : `VXLAN rejected: ${DROP_NAMES[a]}`;
    case Stage.Conntrack: return a ? "existing flow: rewritten as that flow was" : "no flow yet (a new connection; the snapshot's conntrack is empty)";
    case Stage.Service: {
      const name = svc ? `${svc.service}:${svc.portName} ${svc.key} (${KINDS[svc.kind]})` : `entry ${a - 1}`;
      return `matches service ${name}; ${b} eligible backend${b === 1 ? "" : "s"}${svc ? ` of ${svc.backends.length}` : ""}`;
    }
    case Stage.Backend: {
      const be = svc?.backends[a];
      const how = b === 1 ? "Maglev: consistent hash of the 5-tuple" : `random among the ${svc?.eligible ?? "?"} eligible (ready) backends`;
      return `backend #${a}${be ? ` ${be.addr}:${be.port}` : ""}, chosen by ${how}${svc && svc.affinitySec ? ` (ClientIP affinity ${svc.affinitySec} s)` : ""}`;
    }
    case Stage.Nat: return a === 0 ? "forward NAT applied (destination rewritten to the backend)" : "reverse NAT applied (a reply: source rewritten to the service)";
    case Stage.Offload:
      return "offloaded: the flow's NAT binding goes to the kernel's conntrack (DELETE + NEW over ctnetlink); this packet goes back as it came, " +
        "and the kernel NATs it and every later packet of the flow, both ways, without the engine";
    case Stage.Route:
      return a === TRACE_NO_ROUTE ? "no pod route: to the host's own routing"
        : a === RouteKind.Local ? "local pod route: out through wasp0 to the pod" : `remote pod route: VXLAN to node ${u32ToIpv4(b)}`;
    default: return "";
  }
}

function describeTrace(twin: Engine, model: Model, tap: boolean, generation: number, packet: TraceAnswer["packet"]): TraceAnswer {
  const byId = new Map([...model.services.values()].map((e) => [e.id + 1, e]));
  const stages: TraceStage[] = [];
  let svc: ReturnType<typeof byId.get>, backend: { addr: string; port: number } | undefined;
  for (const step of twin.traceSteps()) {
    if (step.stage === Stage.Service) svc = byId.get(step.a);
    if (step.stage === Stage.Backend) backend = svc?.backends[step.a];
    stages.push({ stage: STAGE_NAMES[step.stage] ?? `stage ${step.stage}`, detail: describeStep(step, svc), a: step.a, b: step.b });
  }
  const slot = twin.slot(0);
  const notes = Object.entries(Note).filter(([, bit]) => (slot.note & bit) !== 0).map(([k]) => k.toLowerCase());
  const e = byId.get(slot.service);
  const answer: TraceAnswer = {
    generation, packet, stages, verdict: VERDICT_NAMES[slot.verdict] ?? String(slot.verdict), reason: DROP_NAMES[slot.reason] ?? String(slot.reason),
    notes, service: e ? `${e.service}:${e.portName}` : "",
  };
  if (slot.verdict !== Verdict.Drop) answer.output = outputTuple(twin.output(0), tap && slot.verdict !== Verdict.Overlay, slot.verdict === Verdict.Overlay, slot.peer);
  if ((slot.note & Note.OFFLOADED) !== 0 && backend) answer.offloadedTo = { addr: backend.addr, port: backend.port };
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
