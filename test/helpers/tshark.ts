// Decodes packets with tshark (Wireshark's dissectors, checksum validation on) so tests judge the
// core's output by an independent implementation of the RFCs.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePcap, LINKTYPE_RAW } from "./pcap.js";

/** One dissected packet: every field name (ip.src, tcp.checksum.status, ...) to its values in the
 *  order tshark shows them (the outer header first, then quoted or inner headers). */
export class Dissected {
  constructor(readonly fields: Map<string, string[]>) {}
  /** The first (outermost) value of a field; undefined when absent. */
  get(name: string): string | undefined { return this.fields.get(name)?.[0]; }
  all(name: string): string[] { return this.fields.get(name) ?? []; }
  has(name: string): boolean { return this.fields.has(name); }
  /** Expert-info messages (malformed packets, bad checksums...). */
  expert(): string[] { return this.all("_ws.expert.message"); }
}

// Wireshark's proto_checksum_enum_e: 0 bad, 1 good, 2 unverified, 3 not present, 4 illegal.
export const CHECKSUM_GOOD = "1";
export const CHECKSUM_BAD = "0";
export const CHECKSUM_NOT_PRESENT = "3";

function flatten(o: unknown, into: Map<string, string[]>, key = ""): void {
  if (o === null || o === undefined) return;
  if (Array.isArray(o)) { for (const v of o) flatten(v, into, key); return; }
  if (typeof o === "object") {
    for (const [k, v] of Object.entries(o as Record<string, unknown>)) {
      // tshark nests a field's subtree under "<field>_tree"; the children carry their own names
      flatten(v, into, k.endsWith("_tree") ? k.slice(0, -5) : k);
    }
    return;
  }
  const list = into.get(key);
  if (list) list.push(String(o)); else into.set(key, [String(o)]);
}

/** Runs tshark over `packets` written as a pcap with `linktype`; returns one Dissected per packet. */
export function dissect(packets: readonly Uint8Array[], linktype = LINKTYPE_RAW, extra: string[] = []): Dissected[] {
  const dir = mkdtempSync(join(tmpdir(), "wasp-tshark-"));
  try {
    const file = join(dir, "p.pcap");
    writePcap(file, packets, linktype);
    const out = execFileSync("tshark", [
      "-r", file, "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
      "-d", "udp.port==8472,vxlan", "--no-duplicate-keys", ...extra, "-T", "json",
    ], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 256 << 20 });
    const list = JSON.parse(out) as { _source: { layers: unknown } }[];
    return list.map((p) => { const m = new Map<string, string[]>(); flatten(p._source.layers, m); return new Dissected(m); });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function dissectOne(packet: Uint8Array, linktype = LINKTYPE_RAW): Dissected {
  const d = dissect([packet], linktype)[0];
  if (!d) throw new Error("tshark decoded no packet");
  return d;
}
