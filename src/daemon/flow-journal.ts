// The engine's flows outlive its process. In full-wasm mode the only NAT state of an established
// connection is the engine's flow record: a daemon that dies (kill -9) or is replaced by the next
// version would forget which backend each connection has and how to reverse-NAT its replies, and a
// backend's reply arriving first after the restart would reach its client untranslated (the client
// answers with a reset). So the flows are written beside the control socket once a second and when
// the daemon stops, and the next daemon puts them back before it reads a packet. A flow created in
// the last second before a crash is not in the file; its next packet meets consistent backend
// selection instead (assembly/pipeline/backend.ts). Offload mode does not need this: the kernel's
// conntrack keeps its flows.
//
// Its cost follows what changed (at 100,000 flows the table is ~13 MB, and the event loop that
// writes it also moves every packet): nothing is written while the engine's count of record changes
// stays; otherwise the records go from the engine's memory straight to the file, and the service
// keys are looked up only for entries no flow named before. Two files take turns, each overwritten
// in place (a new file and a rename cost twice as much, with 20-35 ms outliers: its pages are fresh
// and the replaced file's are freed); a file being written is marked incomplete until its last
// byte is in, so a daemon killed meanwhile leaves the other one, a second older, to restore.
import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, rmSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Engine } from "../engine/index.js";
import { CT_FLAGS, CT_REC_SIZE, CT_SERVICE, FlowFlag } from "../engine/abi.js";
import type { Model, ServiceEntry } from "../model/model.js";

// A journal file, little-endian:
//   0 u32 magic     MAGIC once complete; 0 while being written
//   4 u32 version   8 u32 record size (CT_REC_SIZE)
//  12 u32 the engine clock (s) the records were read at      16 f64 wall clock (ms) then
//  24 u32 keys     bytes of service keys  28 u32 records: bytes of records
//  32 u32 turn     the later of the two files has the larger  36 u32 0
//  40 ...          the keys: a line `[field, key]` (JSON) for each service field the records name
//                  (the entry's id + 1); then the records, free ones among them (no FlowFlag.USED)
// The file may be longer (written in place): what follows the records is not the journal's.
const MAGIC = 0x46505357; // "WSPF"
/** 2: two files in turn; the table's records as they lie; the service keys as lines. */
const VERSION = 2;
const HEADER = 40;

/** Beside the daemon's control socket, one pair per node: the two files the journal writes in turn. */
export function journalFiles(socketPath: string): [string, string] {
  const base = join(dirname(socketPath), "flows");
  return [base, `${base}.1`];
}

export interface Restored { restored: number; expired: number; refused: number; ageMs: number }

/** What a file holds: nothing (missing, or its writer was cut off), a journal, or something else. */
type Found = { kind: "none" } | { kind: "foreign"; bytes: number } | { kind: "journal"; turn: number };

function inspect(head: Buffer, length: number): Found {
  // the magic is written last: a file without it was cut off (or is empty)
  if (length < 4 || head.readUInt32LE(0) === 0) return { kind: "none" };
  if (length < 12 || head.readUInt32LE(0) !== MAGIC || head.readUInt32LE(4) !== VERSION || head.readUInt32LE(8) !== CT_REC_SIZE) return { kind: "foreign", bytes: length };
  if (length < HEADER || HEADER + head.readUInt32LE(24) + head.readUInt32LE(28) > length) return { kind: "none" };
  return { kind: "journal", turn: head.readUInt32LE(32) };
}

export class FlowJournal {
  private timer: NodeJS.Timeout | undefined;
  private readonly names = new ServiceNames();
  /** What the last file written holds: the records of this engine at this count of changes. */
  private written: { engine: Engine; changes: number } | undefined;
  /** Each file's descriptor (opened at its first write, then kept) and length. */
  private readonly fds: (number | undefined)[] = [undefined, undefined];
  private readonly lengths = [0, 0];
  /** The file to write next and its turn; undefined until the first write reads both. */
  private next: { file: number; turn: number } | undefined;

  constructor(private readonly files: [string, string], private readonly engine: () => Engine, private readonly model: () => Model,
              private readonly nowSec: () => number, private readonly onError: (err: Error) => void) {}

  /** Writes the flows every intervalMs until stop(). */
  start(intervalMs = 1000): void {
    this.timer = setInterval(() => this.write(), intervalMs);
    this.timer.unref();
  }

  /** Writes the flows a last time (the daemon stops; the next one restores them). */
  stop(): void {
    clearInterval(this.timer);
    this.write();
    for (const [i, fd] of this.fds.entries()) {
      if (fd !== undefined) closeSync(fd);
      this.fds[i] = undefined;
    }
  }

  /** The flows as the engine has them now, with the keys of their service entries (the next
   *  process may number its entries differently), over the older of the two files. Nothing is
   *  written when no record changed since the last write: the file's clock is that of its records. */
  write(): void {
    const engine = this.engine(), changes = engine.flowChanges();
    if (this.written?.engine === engine && this.written.changes === changes) return;
    try {
      const next = this.next ??= this.first();
      const fd = this.fds[next.file] ??= openSync(this.files[next.file]!, "w");
      // from here to the last write nothing runs the engine: the views stay valid
      const records = engine.flowRecordViews();
      const keys = this.names.lines(this.model().services, records);
      const header = Buffer.alloc(HEADER);
      header.writeUInt32LE(VERSION, 4); header.writeUInt32LE(CT_REC_SIZE, 8);
      header.writeUInt32LE(this.nowSec() >>> 0, 12); header.writeDoubleLE(Date.now(), 16);
      header.writeUInt32LE(total(keys), 24); header.writeUInt32LE(total(records), 28); header.writeUInt32LE(next.turn, 32);
      let at = 0;
      for (const part of [header, ...keys, ...records]) at = writeAt(fd, part, at);
      if (at < this.lengths[next.file]!) ftruncateSync(fd, at);
      this.lengths[next.file] = at;
      header.writeUInt32LE(MAGIC, 0);
      writeAt(fd, header.subarray(0, 4), 0);
      this.next = { file: 1 - next.file, turn: next.turn + 1 };
      this.written = { engine, changes };
    } catch (e) {
      this.onError(e as Error);
    }
  }

  /** The first write goes over the file that does not hold the newer journal (a daemon before this
   *  one wrote both), with the next turn. */
  private first(): { file: number; turn: number } {
    const turns = this.files.map((path) => {
      let fd: number | undefined;
      try {
        fd = openSync(path, "r");
        const head = Buffer.alloc(HEADER);
        readSync(fd, head, 0, HEADER, 0);
        const found = inspect(head, fstatSync(fd).size);
        return found.kind === "journal" ? found.turn : -1;
      } catch {
        return -1;
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    });
    const newer = turns[1]! > turns[0]! ? 1 : 0;
    return { file: 1 - newer, turn: Math.max(turns[0]!, turns[1]!, 0) + 1 };
  }

  /** Puts the flows of the newer complete journal back into the engine (before it reads a packet);
   *  a file that is not a journal of this layout is set aside (with an error when it was all there
   *  was), none at all restores nothing. */
  restore(): Restored | undefined {
    let best: Buffer | undefined, bestTurn = -1;
    const foreign: string[] = [];
    for (const path of this.files) {
      let bytes: Buffer;
      try { bytes = readFileSync(path); } catch { continue; }
      const found = inspect(bytes, bytes.length);
      if (found.kind === "foreign") {
        rmSync(path, { force: true });
        foreign.push(`${path} (${found.bytes} bytes)`);
      } else if (found.kind === "journal" && found.turn > bestTurn) {
        best = bytes; bestTurn = found.turn;
      }
    }
    if (!best) {
      if (foreign.length > 0) throw new Error(`${foreign.join(", ")}: not a flow journal of this version: removed, no flows restored`);
      return undefined;
    }
    const bytes = best;
    const recordedSec = bytes.readUInt32LE(12), ageMs = Math.max(0, Date.now() - bytes.readDoubleLE(16));
    const keysEnd = HEADER + bytes.readUInt32LE(24), recordsEnd = keysEnd + bytes.readUInt32LE(28);
    const old = new Map<number, string>();
    for (const line of bytes.subarray(HEADER, keysEnd).toString().split("\n")) {
      if (line === "") continue;
      const [field, key] = JSON.parse(line) as [number, string];
      old.set(field, key);
    }
    const model = this.model();
    const records = new Uint8Array(bytes.buffer, bytes.byteOffset + keysEnd, recordsEnd - keysEnd);
    const counts = this.engine().restoreFlows(records, recordedSec, Math.floor(ageMs / 1000), this.nowSec(), (service) => {
      const key = old.get(service);
      const entry = key === undefined ? undefined : model.services.get(key);
      return entry ? entry.id + 1 : 0;
    });
    return { ...counts, ageMs };
  }
}

const total = (parts: Uint8Array[]) => parts.reduce((n, b) => n + b.length, 0);

/** Writes all of bytes at position `at` of the file; returns the position after them. */
function writeAt(fd: number, bytes: Uint8Array, at: number): number {
  for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done, at + done);
  return at + bytes.length;
}

/** The journal's service keys: a line for each service field (the entry's id + 1) the records named
 *  under this version of the model, kept from write to write; a field no flow named before is
 *  looked up, and only a model that changed is checked again. */
class ServiceNames {
  private services: ReadonlyMap<string, ServiceEntry> | undefined;
  /** field → key, for every field named so far under `services` */
  private named = new Map<number, string>();
  /** field → 1 when it was looked up under `services` (named or not): the walk's test */
  private seen = new Uint8Array(0);
  /** every entry's field → key of `services`, built when a field is first missing */
  private all: Map<number, string> | undefined;
  private text: Buffer[] = [];

  /** The lines for the fields of the records' live flows (the keys of `services`). */
  lines(services: ReadonlyMap<string, ServiceEntry>, records: Uint8Array[]): Buffer[] {
    if (services !== this.services) this.follow(services);
    let added = "";
    for (const part of records) {
      const v = new DataView(part.buffer, part.byteOffset, part.byteLength);
      for (let r = 0; r < part.length; r += CT_REC_SIZE) {
        const field = v.getUint32(r + CT_SERVICE, true);
        if (field < this.seen.length && this.seen[field] === 1) continue;
        if ((v.getUint8(r + CT_FLAGS) & FlowFlag.USED) === 0 || field === 0) continue;
        this.see(field);
        this.all ??= fieldKeys(services);
        const key = this.all.get(field);
        if (key === undefined) continue;
        this.named.set(field, key);
        added += JSON.stringify([field, key]) + "\n";
      }
    }
    if (added !== "") this.text.push(Buffer.from(added));
    return this.text;
  }

  /** A new version of the model: the fields whose entries kept their keys stay named. */
  private follow(services: ReadonlyMap<string, ServiceEntry>): void {
    this.services = services;
    this.all = undefined;
    this.seen.fill(0);
    let lines = "";
    for (const [field, key] of this.named) {
      if (services.get(key)?.id === field - 1) { this.see(field); lines += JSON.stringify([field, key]) + "\n"; }
      else this.named.delete(field);
    }
    this.text = lines === "" ? [] : [Buffer.from(lines)];
  }

  private see(field: number): void {
    if (field >= this.seen.length) {
      const grown = new Uint8Array(Math.max(field + 1, this.seen.length * 2, 1024));
      grown.set(this.seen);
      this.seen = grown;
    }
    this.seen[field] = 1;
  }
}

/** A flow record's service field (the entry's id + 1) → the entry's key, over every entry. */
function fieldKeys(services: ReadonlyMap<string, ServiceEntry>): Map<number, string> {
  const m = new Map<number, string>();
  for (const [key, e] of services) m.set(e.id + 1, key);
  return m;
}
