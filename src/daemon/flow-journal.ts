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
// keys are looked up only for entries no flow named before.
import { close, closeSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Engine } from "../engine/index.js";
import { CT_FLAGS, CT_REC_SIZE, CT_SERVICE, FlowFlag } from "../engine/abi.js";
import type { Model, ServiceEntry } from "../model/model.js";

const MAGIC = 0x46505357; // "WSPF"
/** 2: the table's records as they lie, free ones among them; the service keys as lines. */
const VERSION = 2;
/** magic, version, record size, the engine clock the records were read at (u32 each), wall clock
 *  ms (f64), length of the service keys (u32). Then the keys, a line `[field, key]` (JSON) for
 *  each service field the records hold (the entry's id + 1); then the records. */
const HEADER = 28;

/** Beside the daemon's control socket: one per node. */
export function journalPath(socketPath: string): string {
  return join(dirname(socketPath), "flows");
}

export interface Restored { restored: number; expired: number; refused: number; ageMs: number }

export class FlowJournal {
  private timer: NodeJS.Timeout | undefined;
  private readonly names = new ServiceNames();
  /** What the file holds: the records of this engine at this count of changes. */
  private written: { engine: Engine; changes: number } | undefined;
  /** The file last written, kept open: the rename that replaces it then does not free its pages
   *  (~5 ms at 13 MB), the close after it does so on libuv's thread pool. */
  private held: number | undefined;

  constructor(private readonly path: string, private readonly engine: () => Engine, private readonly model: () => Model,
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
    if (this.held !== undefined) close(this.held, () => {});
    this.held = undefined;
  }

  /** The flows as the engine has them now, with the keys of their service entries (the next
   *  process may number its entries differently); written whole, then renamed into place. Nothing
   *  is written when no record changed since the last write: the file's clock is that of its records. */
  write(): void {
    const engine = this.engine(), changes = engine.flowChanges();
    if (this.written?.engine === engine && this.written.changes === changes) return;
    const tmp = `${this.path}.tmp`;
    let fd: number | undefined;
    try {
      fd = openSync(tmp, "w");
      // from here to the last write nothing runs the engine: the views stay valid
      const records = engine.flowRecordViews();
      const keys = this.names.lines(this.model().services, records);
      const header = Buffer.alloc(HEADER);
      header.writeUInt32LE(MAGIC, 0); header.writeUInt32LE(VERSION, 4); header.writeUInt32LE(CT_REC_SIZE, 8);
      header.writeUInt32LE(this.nowSec() >>> 0, 12); header.writeDoubleLE(Date.now(), 16);
      header.writeUInt32LE(keys.reduce((n, b) => n + b.length, 0), 24);
      for (const part of [header, ...keys, ...records]) writeAll(fd, part);
      renameSync(tmp, this.path);
      const replaced = this.held;
      this.held = fd;
      fd = undefined;
      if (replaced !== undefined) close(replaced, () => {});
      this.written = { engine, changes };
    } catch (e) {
      if (fd !== undefined) closeSync(fd);
      this.onError(e as Error);
    }
  }

  /** Puts the flows of the last journal back into the engine (before it reads a packet); a file
   *  that is not a journal of this layout is set aside with an error, none at all restores nothing. */
  restore(): Restored | undefined {
    let bytes: Buffer;
    try { bytes = readFileSync(this.path); } catch { return undefined; }
    if (bytes.length < HEADER || bytes.readUInt32LE(0) !== MAGIC || bytes.readUInt32LE(4) !== VERSION || bytes.readUInt32LE(8) !== CT_REC_SIZE) {
      rmSync(this.path, { force: true });
      throw new Error(`${this.path} is not a flow journal of this version (${bytes.length} bytes): removed, no flows restored`);
    }
    const recordedSec = bytes.readUInt32LE(12), ageMs = Math.max(0, Date.now() - bytes.readDoubleLE(16));
    const keysEnd = HEADER + bytes.readUInt32LE(24);
    const old = new Map<number, string>();
    for (const line of bytes.subarray(HEADER, keysEnd).toString().split("\n")) {
      if (line === "") continue;
      const [field, key] = JSON.parse(line) as [number, string];
      old.set(field, key);
    }
    const model = this.model();
    const records = new Uint8Array(bytes.buffer, bytes.byteOffset + keysEnd, bytes.length - keysEnd);
    const counts = this.engine().restoreFlows(records, recordedSec, Math.floor(ageMs / 1000), this.nowSec(), (service) => {
      const key = old.get(service);
      const entry = key === undefined ? undefined : model.services.get(key);
      return entry ? entry.id + 1 : 0;
    });
    return { ...counts, ageMs };
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at, bytes.length - at);
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
