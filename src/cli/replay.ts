// `wasp replay IN [--config FILE] [--out OUT.pcapng] [--filter EXPR] [--packets RANGE] [--from ROLE]
// [--interface ID=ROLE] [--conntrack FLOWS.json] [--list] [--json]`: the production engine (same
// wasm, same options and tables as the daemon derives from the config), offline and unprivileged.
// The chosen records of the capture (replay-input.ts) go through process() in capture order, on the
// capture's clock; each gets a record (verdict, reason, service entry, the tuple before and after,
// whether the engine made the packet, the output packets it became), the verdicts are summed up, and
// what came out is written to OUT as pcapng with a comment per packet.
import { readFileSync, writeFileSync } from "node:fs";
import { defaultConfig, formatProblems, loadConfigFile, type Config } from "../config/index.js";
import { ENGINE_MAC, engineOptionsFor, TAP_MAC } from "../engine/options.js";
import { DROP_NAMES, Note, VERDICT_NAMES, Verdict } from "../engine/abi.js";
import { Engine } from "../engine/engine.js";
import { macBytes, parseIpv4 } from "../model/addr.js";
import { buildModel } from "../model/index.js";
import { withEthernet } from "../packet/craft.js";
import { parseFilter, parseRange, matchIp } from "./capture-filter.js";
import { CliError, EXIT } from "./client.js";
import { fmtInt, plural, printJson, table } from "./format.js";
import { describeFields, ipFields, vxlanInner, type IpFields } from "./packet-fields.js";
import { LINKTYPE_ETHERNET, LINKTYPE_RAW, readCapture, type CaptureRecord } from "./pcap.js";
import { pcapngBytes, type PcapngPacket } from "./pcapng.js";
import { engineInput, parseInterfaceRules, parseRole, recordLink, roleOf, type EngineInput, type Role, type SkipReason } from "./replay-input.js";
import { seedFlows, type SeedResult } from "./replay-seed.js";

export interface ReplayOptions {
  /** tcpdump-style expression over the records' IP headers (capture-filter.ts). */
  filter?: string;
  /** Frame numbers to replay: "1-100,200". */
  packets?: string;
  /** The role of every interface no --interface rule names (default auto). */
  from?: string;
  interfaces?: string[];
  /** `wasp conntrack --json` of the node: its flows go in before the first packet. */
  conntrack?: string;
  /** Bytes of the virtio header before each LINKTYPE_USER0 frame: 12 (virtio_net_hdr_v1) or 10. */
  vnetHdrLen?: number;
  /** Build the per-packet records (--json, --list). */
  records?: boolean;
}

/** The addresses and ports of a packet, as the listing shows them. */
export interface Tuple { proto: string; src: string; sport?: number; dst: string; dport?: number; text: string }

export interface PacketRecord {
  /** Frame number in the capture (from 1, as tshark's frame.number). */
  frame: number;
  /** Seconds since the epoch, to the microsecond. */
  time: number;
  interface: string;
  /** The side it came in on: pod (from wasp0) or underlay (VXLAN from another node). */
  from: "pod" | "underlay";
  verdict: string;
  /** The drop reason, or why the engine answered it itself; absent when neither. */
  reason?: string;
  /** The service entry the packet matched or whose flow it belongs to. */
  service?: string;
  /** The engine's notes for it: dnat, reverse_nat, snat, new_flow, ct_hit, encap, decap, ... */
  notes: string[];
  /** The engine made the output packet itself: tcp_rst, icmp_unreachable, echo_reply, ... */
  made?: string;
  /** A GSO super-packet's virtio header: its type and segment size. */
  gso?: { type: string; size: number };
  before?: Tuple;
  after?: Tuple;
  /** Encapsulated for another node: its underlay address and the VNI. */
  via?: { node: string; vni: number };
  /** Frame numbers in --out of what it became (GSO segments next to each other); a dropped packet's own copy. */
  out: number[];
}

export interface ReplaySummary {
  file: string;
  format: "pcap" | "pcapng";
  config: string;
  mode: string;
  records: number;
  replayed: number;
  skipped: number;
  /** Why the records that did not go in stayed out. */
  skippedBy: Partial<Record<SkipReason, number>>;
  fromOverlay: number;
  verdicts: Record<string, number>;
  drops: Record<string, number>;
  newFlows: number;
  repliesMade: number;
  services: Record<string, number>;
  seeded?: SeedResult;
  out?: { file: string; packets: number; dropped: number };
  packets?: PacketRecord[];
}

async function loadConfig(path: string | undefined): Promise<Config> {
  if (!path) return defaultConfig();
  const r = await loadConfigFile(path);
  if ("problems" in r) throw new CliError(`invalid config (${plural(r.problems.length, "problem")}):\n  ${formatProblems(path, r.problems).join("\n  ")}`, EXIT.FAILED);
  return r.config;
}

const noteNames = Object.entries(Note).map(([k, bit]) => [bit, k.toLowerCase()] as const);
const notesOf = (note: number) => noteNames.filter(([bit]) => note & bit).map(([, n]) => n);

// virtio_net_hdr gso_type (include/uapi/linux/virtio_net.h)
const GSO_TYPES: Readonly<Record<number, string>> = { 1: "tcpv4", 3: "udp", 4: "tcpv6", 5: "udp_l4" };

function gsoOf(vnet: Uint8Array | undefined): { type: string; size: number } | undefined {
  if (!vnet || (vnet[1]! & 0x7f) === 0) return undefined;
  return { type: `${GSO_TYPES[vnet[1]! & 0x7f] ?? `type ${vnet[1]! & 0x7f}`}${vnet[1]! & 0x80 ? "+ecn" : ""}`, size: vnet[4]! | (vnet[5]! << 8) };
}

function tupleOf(f: IpFields | undefined): Tuple | undefined {
  if (!f) return undefined;
  const proto = f.proto === 1 ? "icmp" : f.proto === 58 ? "icmp6" : f.proto === 6 ? "tcp" : f.proto === 17 ? "udp" : String(f.proto);
  return f.sport !== undefined
    ? { proto, src: f.src, sport: f.sport, dst: f.dst, dport: f.dport!, text: describeFields(f) }
    : { proto, src: f.src, dst: f.dst, text: describeFields(f) };
}

/** What the engine made itself, read from its answer (RFC 793 RST, RFC 792 / 4443 ICMP). */
function madeOf(f: IpFields | undefined, note: number): string | undefined {
  if (note & Note.ARP_ANSWERED) return "arp_reply";
  if (!(note & Note.REPLY_MADE) || !f) return undefined;
  if (f.proto === 6) return "tcp_rst";
  if (f.proto === 1) return f.icmpType === 0 ? "echo_reply" : f.icmpType === 3 ? (f.icmpCode === 4 ? "icmp_frag_needed" : "icmp_unreachable") : f.icmpType === 11 ? "icmp_time_exceeded" : `icmp_type_${f.icmpType}`;
  if (f.proto === 58) return f.icmpType === 129 ? "echo_reply" : f.icmpType === 1 ? "icmp6_unreachable" : f.icmpType === 2 ? "icmp6_packet_too_big" : f.icmpType === 3 ? "icmp6_time_exceeded" : `icmp6_type_${f.icmpType}`;
  return "answer";
}

/** The per-packet comment in --out: what happened to input #frame. */
function comment(p: PacketRecord, what: "output" | "dropped", k: number, n: number): string {
  const parts = [`wasp: #${p.frame}`, what === "dropped" ? `drop: ${p.reason}` : `verdict ${p.verdict}${p.reason ? ` (${p.reason})` : ""}`];
  if (p.made) parts.push(`made by the engine: ${p.made}`);
  if (p.service) parts.push(`service ${p.service}`);
  const notes = p.notes.filter((x) => x !== "ct_hit" && x !== "ttl_decremented" && x !== "reply_made");
  if (notes.length) parts.push(notes.join(" "));
  if (n > 1) parts.push(`segment ${k + 1} of ${n}${p.gso ? ` (GSO ${p.gso.type}, size ${p.gso.size})` : ""}`);
  return parts.join("; ");
}

export async function runReplay(file: string, configPath: string | undefined, outPath: string | undefined, o: ReplayOptions = {}): Promise<ReplaySummary> {
  const filter = o.filter !== undefined ? parseFilter(o.filter) : undefined;
  const inRange = o.packets !== undefined ? parseRange(o.packets) : undefined;
  const rules = parseInterfaceRules(o.interfaces ?? []);
  const fallback: Role = o.from !== undefined ? parseRole(o.from) : "auto";
  const vnetHdrLen = o.vnetHdrLen ?? 12;
  if (vnetHdrLen !== 10 && vnetHdrLen !== 12) throw new CliError(`--vnet-hdr-len is ${vnetHdrLen}; a virtio_net_hdr is 10 bytes, 12 with num_buffers (virtio_net_hdr_v1)`, EXIT.USAGE);
  let bytes: Uint8Array;
  try { bytes = readFileSync(file); } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT.FAILED);
  }
  const cap = readCapture(bytes, file);
  const config = await loadConfig(configPath);
  const engine = new Engine(engineOptionsFor(config));
  const model = buildModel(config);
  try {
    engine.loadModel(model);
  } catch (e) {
    throw new CliError(`${(e as Error).message}: the tables of ${configPath ?? "the embedded config"}`, EXIT.FAILED);
  }
  const tap = config.mode === "tap";
  const ctx = {
    tap, underlay: parseIpv4(config.node.underlayIP), vxlanPort: config.vxlan.port,
    toFrame: (ip: Uint8Array) => withEthernet(ip, macBytes(ENGINE_MAC), macBytes(TAP_MAC)),
  };
  const byId = new Map([...model.services.values()].map((e) => [e.id + 1, `${e.service}:${e.portName}`]));

  const sum: ReplaySummary = {
    file, format: cap.format, config: configPath ?? "(embedded default)", mode: config.mode, records: cap.records.length, replayed: 0, skipped: 0,
    skippedBy: {}, fromOverlay: 0, verdicts: {}, drops: {}, newFlows: 0, repliesMade: 0, services: {},
  };
  // the capture's clock, on the daemon's scale (never 0): conntrack timeouts pass as they did live
  const first = cap.records[0]?.sec ?? 0;
  const clock = (rec: CaptureRecord) => 1000 + Math.max(0, rec.sec - first);
  if (o.conntrack) sum.seeded = seedFlows(engine, model, o.conntrack, cap.records[0] ? clock(cap.records[0]) : 1000);

  const outIfaces = [{ linktype: tap ? LINKTYPE_ETHERNET : LINKTYPE_RAW, name: "wasp0 (written by the engine)" }, { linktype: LINKTYPE_RAW, name: "underlay (VXLAN sent by the engine)" }];
  const dropIface = new Map<number, number>(); // input link type → its interface in --out
  const outPkts: PcapngPacket[] = [];
  const records: PacketRecord[] = [];
  type Pending = { frame: number; rec: CaptureRecord; input: EngineInput };
  let batch: Pending[] = [];

  const flush = () => {
    if (!batch.length) return;
    batch.forEach((b, i) => engine.putPacket(i, b.input.bytes, b.input.flags, b.input.peer));
    engine.process(batch.length, clock(batch[0]!.rec));
    // a batch holds at most one packet the core may cut into segments (see below): they are its
    const extras = engine.extraOutputs();
    batch.forEach((b, i) => {
      const s = engine.slot(i);
      const verdict = VERDICT_NAMES[s.verdict] ?? String(s.verdict);
      sum.verdicts[verdict] = (sum.verdicts[verdict] ?? 0) + 1;
      const reason = s.reason ? DROP_NAMES[s.reason] ?? String(s.reason) : undefined;
      if (reason) sum.drops[reason] = (sum.drops[reason] ?? 0) + 1;
      const service = s.service ? byId.get(s.service) ?? `entry ${s.service - 1}` : undefined;
      if (s.note & Note.NEW_FLOW) {
        sum.newFlows++;
        sum.services[service!] = (sum.services[service!] ?? 0) + 1;
      }
      if (s.note & Note.REPLY_MADE) sum.repliesMade++;
      const outputs = s.verdict === Verdict.Drop || s.verdict === Verdict.None ? [] : [engine.output(i), ...(b.input.vnet && gsoOf(b.input.vnet) ? extras : [])];
      const p = describe(b, verdict, reason, service, s.note, outputs);
      const iface = s.verdict === Verdict.Overlay ? 1 : 0;
      outputs.forEach((data, k) => {
        p.out.push(outPkts.length + 1);
        outPkts.push({ iface, sec: b.rec.sec, usec: b.rec.usec, data, direction: s.verdict === Verdict.Overlay ? "out" : "in", comment: comment(p, "output", k, outputs.length) });
      });
      if (!outputs.length) {
        let di = dropIface.get(b.rec.linktype);
        if (di === undefined) { di = outIfaces.length; dropIface.set(b.rec.linktype, di); outIfaces.push({ linktype: b.rec.linktype, name: "input dropped by the engine" }); }
        p.out.push(outPkts.length + 1);
        outPkts.push({ iface: di, sec: b.rec.sec, usec: b.rec.usec, data: b.rec.data, comment: comment(p, "dropped", 0, 1) });
      }
      if (o.records) records.push(p);
    });
    batch = [];
  };

  const describe = (b: Pending, verdict: string, reason: string | undefined, service: string | undefined, note: number, outputs: Uint8Array[]): PacketRecord => {
    const iface = cap.interfaces[b.rec.iface];
    const inIp = b.input.role === "underlay" ? vxlanInner(b.input.ip, ipFields(b.input.ip)!, config.vxlan.port)?.ip : b.input.ip;
    const gso = gsoOf(b.input.vnet);
    const before = tupleOf(inIp && inIp[0]! >> 4 >= 4 ? ipFields(inIp) : undefined);
    let after: Tuple | undefined, made: string | undefined, via: PacketRecord["via"];
    const o0 = outputs[0];
    if (o0) {
      let ip = tap && verdict !== "overlay" ? o0.subarray(14) : o0;
      let f = ipFields(ip);
      if (verdict === "overlay" && f) {
        const inner = vxlanInner(ip, f, config.vxlan.port);
        if (inner) { via = { node: f.dst, vni: inner.vni }; ip = inner.ip; f = ipFields(ip); }
      }
      after = tupleOf(f);
      made = madeOf(f, note);
    }
    const p: PacketRecord = {
      frame: b.frame, time: b.rec.sec + b.rec.usec / 1e6, interface: iface?.name ?? String(b.rec.iface), from: b.input.role, verdict,
      ...(reason ? { reason } : {}), ...(service ? { service } : {}), ...(made ? { made } : {}), notes: notesOf(note), ...(gso ? { gso } : {}),
      ...(before ? { before } : {}), ...(after ? { after } : {}), ...(via ? { via } : {}), out: [],
    };
    return p;
  };

  cap.records.forEach((rec, idx) => {
    const frame = idx + 1;
    const skip = (why: SkipReason) => { sum.skipped++; sum.skippedBy[why] = (sum.skippedBy[why] ?? 0) + 1; };
    if (inRange && !inRange(frame)) { skip("range"); return; }
    const link = recordLink(rec, vnetHdrLen);
    if (filter && !matchIp(filter, link.ip)) { skip("filter"); return; }
    const input = engineInput(link, rec.direction ?? link.direction, roleOf(cap, rec, link, rules, fallback), ctx);
    if (typeof input === "string") { skip(input); return; }
    if (input.bytes.length > 65536 + 12) { skip("too_big"); return; }
    if (input.role === "underlay") sum.fromOverlay++;
    // A GSO super-packet may be cut into segments, which the core lists after the batch's slots
    // without naming their slot: it goes through in a batch of its own, so they are its segments.
    const cut = gsoOf(input.vnet) !== undefined;
    if (batch.length && (cut || batch.length >= engine.maxBatch || batch[0]!.rec.sec !== rec.sec || gsoOf(batch[0]!.input.vnet))) flush();
    batch.push({ frame, rec, input });
    sum.replayed++;
  });
  flush();
  if (o.records) sum.packets = records;
  if (outPath) {
    const outputs = outPkts.filter((p) => p.iface < 2).length;
    try { writeFileSync(outPath, pcapngBytes(outIfaces, outPkts)); } catch (e) {
      throw new CliError(`cannot write ${outPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT.FAILED);
    }
    sum.out = { file: outPath, packets: outputs, dropped: outPkts.length - outputs };
  }
  return sum;
}

const SKIP_WORDS: Record<SkipReason, string> = {
  range: "outside --packets", filter: "not matching --filter", interface: "on an interface whose role is skip",
  engine_output: "written by the engine (into wasp0)", not_for_engine: "underlay traffic that is not VXLAN for this node",
  not_ip: "not IP", too_big: "larger than a slot",
};

export async function replay(file: string, o: Record<string, any>): Promise<void> {
  const vnetHdrLen = o.vnetHdrLen !== undefined ? Number(o.vnetHdrLen) : undefined;
  const s = await runReplay(file, o.config, o.out, {
    ...(o.filter !== undefined ? { filter: String(o.filter) } : {}), ...(o.packets !== undefined ? { packets: String(o.packets) } : {}),
    ...(o.from !== undefined ? { from: String(o.from) } : {}), interfaces: o.interface ?? [],
    ...(o.conntrack !== undefined ? { conntrack: String(o.conntrack) } : {}), ...(vnetHdrLen !== undefined ? { vnetHdrLen } : {}),
    records: !!o.json || !!o.list,
  });
  if (o.json) { printJson(s); return; }
  const w = (t: string) => process.stdout.write(t);
  w(`replayed ${fmtInt(s.replayed)} of ${plural(s.records, "record")} from ${s.file} (${s.mode} mode, tables of ${s.config})`
    + `${s.fromOverlay ? `; ${fmtInt(s.fromOverlay)} VXLAN from other nodes` : ""}\n`);
  const skipped = Object.entries(s.skippedBy).map(([k, n]) => `${fmtInt(n)} ${SKIP_WORDS[k as SkipReason]}`);
  if (skipped.length) w(`not replayed: ${skipped.join(", ")}\n`);
  if (s.seeded) {
    w(`flows from ${s.seeded.file}: ${fmtInt(s.seeded.inserted)} of ${fmtInt(s.seeded.flows)} put in the table`
      + `${s.seeded.refused.length ? ` (${s.seeded.refused.length} refused, the first: flow ${s.seeded.refused[0]!.flow}: ${s.seeded.refused[0]!.why})` : ""}`
      + `${s.seeded.kernelFlowsLeft ? `; ${plural(s.seeded.kernelFlowsLeft, "offloaded flow")} of the kernel left out (the replay runs full-wasm)` : ""}\n`);
  }
  w("\n");
  if (s.packets) {
    w(table(["#", "FROM", "VERDICT", "REASON", "SERVICE", "BEFORE", "AFTER", "OUT"], s.packets.map((p) => [
      p.frame, p.from, p.verdict, p.reason ?? (p.made ? "" : "-"), p.service ?? "-", p.before?.text ?? "-",
      `${p.made ? `${p.made}: ` : ""}${p.after?.text ?? "-"}${p.via ? ` via ${p.via.node}` : ""}`, p.out.join(",") || "-",
    ])));
    w("\n");
  }
  w(table(["VERDICT", "PACKETS"], Object.entries(s.verdicts).map(([k, n]) => [k, n])));
  if (Object.keys(s.drops).length) { w("\n"); w(table(["DROP OR ANSWER REASON", "PACKETS"], Object.entries(s.drops).map(([k, n]) => [k, n]))); }
  if (Object.keys(s.services).length) { w("\n"); w(table(["SERVICE", "NEW FLOWS"], Object.entries(s.services).map(([k, n]) => [k, n]))); }
  w(`\nnew flows ${fmtInt(s.newFlows)}, answered by the engine ${fmtInt(s.repliesMade)}`
    + `${s.out ? `; ${plural(s.out.packets, "packet")} written to ${s.out.file}${s.out.dropped ? ` with ${plural(s.out.dropped, "dropped input")}` : ""}` : ""}\n`);
}
