// `wasp trace --from POD_OR_IP --to IP:PORT`: the daemon runs a crafted packet through a twin engine
// loaded with its current tables and answers with the stage records; printed here stage by stage.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { canonicalIp } from "../model/index.js";
import { CliError, EXIT, request } from "./client.js";
import { printJson, table } from "./format.js";

/** "10.96.0.10:80", "[fd00::a]:80"; the port may be absent for icmp. */
export function parseTarget(text: string, proto: string): { addr: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text) ?? (canonicalIp(text) ? [text, text, undefined] : null);
  const addr = m ? canonicalIp(m[1]!) : undefined;
  if (!m || !addr) throw new CliError(`--to ${JSON.stringify(text)} is not IP:PORT (e.g. 10.96.0.10:80 or [fd00::a]:80)`, EXIT.USAGE);
  const port = m[2] === undefined ? 0 : Number(m[2]);
  if (proto !== "icmp" && (port < 1 || port > 65535)) throw new CliError(`--to ${JSON.stringify(text)} needs a port 1-65535 for ${proto}`, EXIT.USAGE);
  return { addr, port };
}

/** An address, or the address of the pod whose container ID is (or starts with) `name` in the IPAM store. */
export function resolveSource(name: string, ipamDir: string): { addr: string; pod?: string } {
  const ip = canonicalIp(name);
  if (ip) return { addr: ip };
  const found: Array<{ addr: string; pod: string }> = [];
  let nets: string[] = [];
  try { nets = readdirSync(ipamDir); } catch (e) {
    throw new CliError(`--from ${JSON.stringify(name)} is not an IP address, and the IPAM store ${ipamDir} cannot be read (${(e as NodeJS.ErrnoException).code}) to find it as a pod; give the pod's IP or --ipam-dir DIR`, EXIT.FAILED);
  }
  for (const net of nets) {
    let files: string[] = [];
    try { files = readdirSync(join(ipamDir, net)); } catch { continue; }
    for (const f of files) {
      const addr = canonicalIp(f);
      if (!addr) continue;
      let text = "";
      try { text = readFileSync(join(ipamDir, net, f), "utf8"); } catch { continue; }
      const cid = text.split(/\r?\n/)[0]?.trim() ?? "";
      if (cid === name || cid.startsWith(name)) found.push({ addr, pod: cid });
    }
  }
  if (found.length === 1) return found[0]!;
  if (found.length > 1) throw new CliError(`--from ${JSON.stringify(name)} matches ${found.length} pods (${found.map((f) => f.pod).join(", ")}); give more of the container ID or the IP`, EXIT.USAGE);
  throw new CliError(`--from ${JSON.stringify(name)} is neither an IP address nor a pod (container ID) in the IPAM store ${ipamDir}; give the pod's IP`, EXIT.FAILED);
}

interface TraceAnswer {
  generation: number;
  packet: { proto: string; src: string; sport: number; dst: string; dport: number };
  stages: Array<{ stage: string; detail: string }>;
  verdict: string; reason: string; notes: string[]; service: string;
  output?: { src: string; sport: number; dst: string; dport: number; nextHop?: string; len: number };
  arrives?: string;
  offloadedTo?: { addr: string; port: number };
}

const hp = (a: string, p: number) => (p ? `${a.includes(":") ? `[${a}]` : a}:${p}` : a);

/** One line saying what happens to the packet, for people. */
export function summarize(t: TraceAnswer): string {
  const o = t.output;
  if (t.verdict === "drop") return `dropped: ${t.reason}`;
  if (t.reason === "no_backend") return `refused: the service has no ready backend, the engine answers ${t.packet.proto === "tcp" ? "a TCP RST" : "ICMP port unreachable"}`;
  if (t.reason === "no_service") return `refused: nothing serves this port on the service address, the engine answers ${t.packet.proto === "tcp" ? "a TCP RST" : "ICMP port unreachable"}`;
  if (t.offloadedTo) return `offloaded: the kernel carries this flow to ${hp(t.offloadedTo.addr, t.offloadedTo.port)} (its conntrack entry, made by the engine); the packet goes back unchanged`;
  if (t.notes.includes("reply_made")) return `answered by the engine itself (${t.reason === "none" ? "echo reply" : t.reason}) back to ${o ? o.dst : "the sender"}`;
  const where = t.verdict === "tun" ? "delivered through wasp0" : t.verdict === "overlay" ? `sent over VXLAN to node ${o?.nextHop}` : "handed to the host's routing";
  return `${where} as ${o ? `${hp(o.src, o.sport)} -> ${hp(o.dst, o.dport)}` : "?"}`;
}

export async function trace(o: Record<string, any>): Promise<void> {
  const proto = String(o.proto);
  const src = resolveSource(String(o.from), String(o.ipamDir));
  const to = parseTarget(String(o.to), proto);
  const sport = Number(o.sport);
  if (!/^\d+$/.test(String(o.sport)) || sport < 1 || sport > 65535) throw new CliError(`--sport is ${JSON.stringify(o.sport)}; a port is 1-65535`, EXIT.USAGE);
  const t = await request<TraceAnswer>(String(o.socket), { cmd: "trace", src: src.addr, dst: to.addr, dport: to.port, proto, sport });
  if (o.json) { printJson({ ...t, ...(src.pod ? { pod: src.pod } : {}), result: summarize(t) }); return; }
  const p = t.packet;
  process.stdout.write(`trace ${p.proto} ${hp(p.src, p.sport)}${src.pod ? ` (pod ${src.pod})` : ""} -> ${hp(p.dst, p.dport)}, arriving ${t.arrives ?? "from wasp0"}, tables of generation ${t.generation}\n\n`);
  const rows = t.stages.map((s, i) => [String(i + 1), s.stage, s.detail]);
  rows.push([String(rows.length + 1), "verdict", `${t.verdict}${t.reason !== "none" ? ` (${t.reason})` : ""}${t.notes.length ? `; notes: ${t.notes.join(", ")}` : ""}`]);
  process.stdout.write(table(["#", "STAGE", "WHAT HAPPENED"], rows));
  process.stdout.write(`\nresult: ${summarize(t)}\n`);
}
