// `wasp replay IN.pcap [--config FILE] [--out OUT.pcap]`: the production engine (same wasm, same
// options and tables as the daemon derives from the config), offline and unprivileged: every record
// of the capture goes through process() in capture order, with the capture's clock; what came out
// is written to OUT.pcap and the verdicts are summed up.
import { readFileSync, writeFileSync } from "node:fs";
import { defaultConfig, formatProblems, loadConfigFile, type Config } from "../config/index.js";
import { ENGINE_MAC, engineOptionsFor, TAP_MAC } from "../engine/options.js";
import { DROP_NAMES, Note, SlotFlag, VERDICT_NAMES, Verdict } from "../engine/abi.js";
import { Engine } from "../engine/engine.js";
import { macBytes, parseIpv4 } from "../model/addr.js";
import { buildModel } from "../model/index.js";
import { withEthernet } from "../packet/craft.js";
import { CliError, EXIT } from "./client.js";
import { fmtInt, printJson, table } from "./format.js";
import { ipPayload, LINKTYPE_ETHERNET, LINKTYPE_RAW, pcapBytes, readPcap, type PcapRecord } from "./pcap.js";

export interface ReplaySummary {
  file: string;
  config: string;
  mode: string;
  records: number;
  replayed: number;
  skipped: number;
  fromOverlay: number;
  verdicts: Record<string, number>;
  drops: Record<string, number>;
  newFlows: number;
  repliesMade: number;
  services: Record<string, number>;
  out?: { file: string; packets: number };
}

async function loadConfig(path: string | undefined): Promise<Config> {
  if (!path) return defaultConfig();
  const r = await loadConfigFile(path);
  if ("problems" in r) throw new CliError(`invalid config (${r.problems.length} problems):\n  ${formatProblems(path, r.problems).join("\n  ")}`, EXIT.FAILED);
  return r.config;
}

export async function runReplay(file: string, configPath: string | undefined, outPath: string | undefined): Promise<ReplaySummary> {
  let bytes: Uint8Array;
  try { bytes = readFileSync(file); } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT.FAILED);
  }
  const cap = readPcap(bytes, file);
  const config = await loadConfig(configPath);
  const engine = new Engine(engineOptionsFor(config));
  const model = buildModel(config);
  try {
    engine.loadModel(model);
  } catch (e) {
    throw new CliError(`${(e as Error).message}: the tables of ${configPath ?? "the embedded config"}`, EXIT.FAILED);
  }
  const tap = config.mode === "tap";
  const underlay = parseIpv4(config.node.underlayIP), vxlanPort = config.vxlan.port;
  const byId = new Map([...model.services.values()].map((e) => [e.id + 1, `${e.service}:${e.portName}`]));

  const sum: ReplaySummary = {
    file, config: configPath ?? "(embedded default)", mode: config.mode, records: cap.records.length, replayed: 0, skipped: 0, fromOverlay: 0,
    verdicts: {}, drops: {}, newFlows: 0, repliesMade: 0, services: {},
  };
  const outRecs: PcapRecord[] = [];
  const first = cap.records[0]?.sec ?? 0;
  type Input = { rec: PcapRecord; bytes: Uint8Array; flags: number; peer: number };
  let batch: Input[] = [];
  const flush = () => {
    if (!batch.length) return;
    batch.forEach((b, i) => engine.putPacket(i, b.bytes, b.flags, b.peer));
    // the capture's clock, on the daemon's scale (never 0): conntrack timeouts pass as they did live
    engine.process(batch.length, 1000 + Math.max(0, batch[0]!.rec.sec - first));
    batch.forEach((b, i) => {
      const s = engine.slot(i);
      const vn = VERDICT_NAMES[s.verdict] ?? String(s.verdict);
      sum.verdicts[vn] = (sum.verdicts[vn] ?? 0) + 1;
      if (s.reason) { const dn = DROP_NAMES[s.reason] ?? String(s.reason); sum.drops[dn] = (sum.drops[dn] ?? 0) + 1; }
      if (s.note & Note.NEW_FLOW) {
        sum.newFlows++;
        const name = byId.get(s.service) ?? `entry ${s.service - 1}`;
        sum.services[name] = (sum.services[name] ?? 0) + 1;
      }
      if (s.note & Note.REPLY_MADE) sum.repliesMade++;
      if (s.verdict !== Verdict.Drop) outRecs.push({ sec: b.rec.sec, usec: b.rec.usec, data: engine.output(i) });
    });
    // the other segments of GSO super-packets sent to another node
    const last = batch[batch.length - 1]!.rec;
    for (const data of engine.extraOutputs()) outRecs.push({ sec: last.sec, usec: last.usec, data });
    batch = [];
  };
  for (const rec of cap.records) {
    let input: Input | undefined;
    if (tap && cap.linktype === LINKTYPE_ETHERNET) {
      input = { rec, bytes: rec.data, flags: SlotFlag.ETHERNET, peer: 0 };
    } else {
      const ip = ipPayload(cap.linktype, rec.data);
      if (ip) {
        const vx = vxlanPayload(ip, underlay, vxlanPort);
        if (vx) { input = { rec, bytes: vx.payload, flags: SlotFlag.FROM_OVERLAY, peer: vx.peer }; sum.fromOverlay++; }
        else input = { rec, bytes: tap ? fromTap(ip) : ip, flags: tap ? SlotFlag.ETHERNET : 0, peer: 0 };
      }
    }
    if (!input) { sum.skipped++; continue; }
    if (input.bytes.length > 65536) { sum.skipped++; continue; }
    if (batch.length && (batch.length >= engine.maxBatch || batch[0]!.rec.sec !== rec.sec)) flush();
    batch.push(input);
    sum.replayed++;
  }
  flush();
  if (outPath) {
    try { writeFileSync(outPath, pcapBytes(outRecs, tap ? LINKTYPE_ETHERNET : LINKTYPE_RAW)); } catch (e) {
      throw new CliError(`cannot write ${outPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT.FAILED);
    }
    sum.out = { file: outPath, packets: outRecs.length };
  }
  return sum;
}

/** A VXLAN datagram to this node (IPv4, UDP to the VXLAN port): its UDP payload and the sender. */
function vxlanPayload(ip: Uint8Array, underlay: number, port: number): { payload: Uint8Array; peer: number } | undefined {
  if (ip[0]! >> 4 !== 4 || ip[9] !== 17 || ip.length < 28) return undefined;
  const hl = (ip[0]! & 15) * 4, dst = ((ip[16]! << 24) | (ip[17]! << 16) | (ip[18]! << 8) | ip[19]!) >>> 0;
  if (dst !== underlay || ((ip[hl + 2]! << 8) | ip[hl + 3]!) !== port) return undefined;
  const peer = ((ip[12]! << 24) | (ip[13]! << 16) | (ip[14]! << 8) | ip[15]!) >>> 0;
  return { payload: ip.subarray(hl + 8), peer };
}

/** A routed packet as the TAP hands it to the engine: from wasp0 (TAP_MAC) to the engine's MAC. */
function fromTap(p: Uint8Array): Uint8Array {
  return withEthernet(p, macBytes(ENGINE_MAC), macBytes(TAP_MAC));
}

export async function replay(file: string, o: Record<string, any>): Promise<void> {
  const s = await runReplay(file, o.config, o.out);
  if (o.json) { printJson(s); return; }
  const w = (t: string) => process.stdout.write(t);
  w(`replayed ${fmtInt(s.replayed)} of ${fmtInt(s.records)} records from ${s.file} (${s.mode} mode, tables of ${s.config})`
    + `${s.skipped ? `; ${fmtInt(s.skipped)} skipped (not IP)` : ""}${s.fromOverlay ? `; ${fmtInt(s.fromOverlay)} VXLAN from other nodes` : ""}\n\n`);
  w(table(["VERDICT", "PACKETS"], Object.entries(s.verdicts).map(([k, n]) => [k, n])));
  if (Object.keys(s.drops).length) { w("\n"); w(table(["DROP OR ANSWER REASON", "PACKETS"], Object.entries(s.drops).map(([k, n]) => [k, n]))); }
  if (Object.keys(s.services).length) { w("\n"); w(table(["SERVICE", "NEW FLOWS"], Object.entries(s.services).map(([k, n]) => [k, n]))); }
  w(`\nnew flows ${fmtInt(s.newFlows)}, answered by the engine ${fmtInt(s.repliesMade)}${s.out ? `; ${fmtInt(s.out.packets)} packets written to ${s.out.file}` : ""}\n`);
}
