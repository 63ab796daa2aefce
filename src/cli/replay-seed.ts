// replay --conntrack FILE: the flows a live node had, from `wasp conntrack --json` on that node, put
// into the replay's engine before the first packet, so a capture taken mid-flow is replayed as the
// node saw it (each packet of a known connection keeps its backend and its reverse NAT) instead of
// as the engine after a restart would take it (a mid-stream TCP segment gets a backend anew; a reply
// with no flow goes on un-NATed).
import { readFileSync } from "node:fs";
import { CtClass, CtState, CT_STATE_NAMES, FlowFlag, ServiceFlag } from "../engine/abi.js";
import type { Engine } from "../engine/engine.js";
import { parseIp, type Model } from "../model/index.js";
import { CliError, EXIT } from "./client.js";

const PROTO_NUMBERS: Readonly<Record<string, number>> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, icmp6: 58 };
const STATE_BY_NAME = new Map(Object.entries(CT_STATE_NAMES).map(([n, name]) => [name, Number(n) as CtState]));

/** The timeout class a flow of this state is in (assembly/pipeline/flow.ts: nextClass). */
function classOf(proto: number, state: CtState): CtClass {
  if (proto === 17) return state === CtState.UdpReplied ? CtClass.UdpStream : CtClass.Udp;
  if (proto !== 6) return CtClass.Icmp;
  switch (state) {
    case CtState.Established: return CtClass.TcpEstablished;
    case CtState.FinWait: return CtClass.TcpClosing;
    case CtState.TimeWait: return CtClass.TcpTimeWait;
    case CtState.Close: return CtClass.TcpClose;
    default: return CtClass.TcpSyn;
  }
}

export interface SeedResult { file: string; flows: number; inserted: number; refused: Array<{ flow: number; why: string }>; kernelFlowsLeft: number }

/** Inserts the flows of FILE into `engine`, each seen at `nowSec`; service entries are matched by
 *  key in `model` (the replay's tables), so their counters and revalidation work as live. */
export function seedFlows(engine: Engine, model: Model, file: string, nowSec: number): SeedResult {
  let doc: any;
  try { doc = JSON.parse(readFileSync(file, "utf8")); } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new CliError(`cannot read the flows in ${file}: ${err.code ?? err.message}; write them on the node with: wasp conntrack --json --limit 10000 > ${file}`, EXIT.FAILED);
  }
  const flows: unknown[] = Array.isArray(doc?.flows) ? doc.flows : Array.isArray(doc) ? doc : [];
  if (!Array.isArray(doc?.flows) && !Array.isArray(doc)) {
    throw new CliError(`${file} holds no "flows" list; write it on the node with: wasp conntrack --json --limit 10000 > ${file}`, EXIT.FAILED);
  }
  const res: SeedResult = { file, flows: flows.length, inserted: 0, refused: [], kernelFlowsLeft: Array.isArray(doc?.kernel?.flows) ? doc.kernel.flows.length : 0 };
  flows.forEach((raw, i) => {
    const why = insertOne(engine, model, raw as Record<string, unknown>, nowSec);
    if (why) res.refused.push({ flow: i, why }); else res.inserted++;
  });
  return res;
}

function insertOne(engine: Engine, model: Model, f: Record<string, unknown>, nowSec: number): string | undefined {
  const proto = PROTO_NUMBERS[String(f.proto).toLowerCase()];
  if (proto === undefined) return `proto ${JSON.stringify(f.proto)} is not tcp, udp or icmp`;
  const addr = (k: string) => (typeof f[k] === "string" ? parseIp(f[k] as string) : undefined);
  const port = (k: string) => (Number.isInteger(f[k]) && (f[k] as number) >= 0 && (f[k] as number) <= 65535 ? (f[k] as number) : undefined);
  const src = addr("src"), dst = addr("dst"), backend = addr("backend"), replyDst = addr("replyDst");
  const sport = port("sport"), dport = port("dport"), backendPort = port("backendPort"), replyDport = port("replyDport");
  if (!src || !dst || !backend || !replyDst) return "an address (src, dst, backend, replyDst) is missing or malformed";
  if (sport === undefined || dport === undefined || backendPort === undefined || replyDport === undefined) return "a port (sport, dport, backendPort, replyDport) is missing or out of range";
  const state = STATE_BY_NAME.get(String(f.state));
  if (state === undefined) return `state ${JSON.stringify(f.state)} is not one wasp conntrack prints`;
  // "default/web:http (10.96.0.10:80/TCP)": the entry key in parentheses, looked up in these tables
  const key = /\(([^()]+)\)$/.exec(String(f.service ?? ""))?.[1];
  const entry = key ? model.services.get(key) : undefined;
  const flags = (f.dnat ? FlowFlag.DNAT : 0) | (f.snat ? FlowFlag.SNAT : 0) | (f.replied ? FlowFlag.REPLIED : 0)
    | (entry && entry.flags & ServiceFlag.ANY_LOCAL_ADDR ? FlowFlag.ANY_ADDR_SERVICE : 0);
  const ok = engine.insertFlow({
    proto, src, sport, dst, dport, replySrc: backend, replySport: backendPort, replyDst, replyDport,
    state, cls: classOf(proto, state), flags, service: entry ? entry.id + 1 : 0, lastSec: nowSec,
  });
  return ok ? undefined : "the engine refused it: another flow holds one of its tuples";
}
