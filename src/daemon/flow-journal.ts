// The engine's flows outlive its process. In full-wasm mode the only NAT state of an established
// connection is the engine's flow record: a daemon that dies (kill -9) or is replaced by the next
// version would forget which backend each connection has and how to reverse-NAT its replies, and a
// backend's reply arriving first after the restart would reach its client untranslated (the client
// answers with a reset). So the flows are written beside the control socket once a second and when
// the daemon stops, and the next daemon puts them back before it reads a packet. A flow created in
// the last second before a crash is not in the file; its next packet meets consistent backend
// selection instead (assembly/pipeline/backend.ts). Offload mode does not need this: the kernel's
// conntrack keeps its flows.
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Engine } from "../engine/index.js";
import { CT_REC_SIZE } from "../engine/abi.js";
import type { Model } from "../model/model.js";

const MAGIC = 0x46505357; // "WSPF"
const VERSION = 1;
/** magic, version, record size, the engine clock the records were read at (u32 each), wall clock
 *  ms (f64), length of the service map's JSON (u32). */
const HEADER = 28;

/** Beside the daemon's control socket: one per node. */
export function journalPath(socketPath: string): string {
  return join(dirname(socketPath), "flows");
}

export interface Restored { restored: number; expired: number; refused: number; ageMs: number }

export class FlowJournal {
  private timer: NodeJS.Timeout | undefined;

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
  }

  /** The flows as the engine has them now, with the keys of their service entries (the next
   *  process may number its entries differently); written whole, then renamed into place. */
  write(): void {
    try {
      const { records, services } = this.engine().flowRecords();
      const keys = serviceKeys(this.model());
      const used: Record<number, string> = {};
      for (const service of services) {
        const key = keys.get(service);
        if (key !== undefined) used[service] = key;
      }
      const map = Buffer.from(JSON.stringify(used));
      const header = Buffer.alloc(HEADER);
      header.writeUInt32LE(MAGIC, 0); header.writeUInt32LE(VERSION, 4); header.writeUInt32LE(CT_REC_SIZE, 8);
      header.writeUInt32LE(this.nowSec() >>> 0, 12); header.writeDoubleLE(Date.now(), 16); header.writeUInt32LE(map.length, 24);
      const tmp = `${this.path}.tmp`;
      writeFileSync(tmp, Buffer.concat([header, map, records]));
      renameSync(tmp, this.path);
    } catch (e) {
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
    const mapEnd = HEADER + bytes.readUInt32LE(24);
    const old = JSON.parse(bytes.subarray(HEADER, mapEnd).toString()) as Record<string, string>;
    const model = this.model();
    const records = new Uint8Array(bytes.buffer, bytes.byteOffset + mapEnd, bytes.length - mapEnd);
    const counts = this.engine().restoreFlows(records, recordedSec, Math.floor(ageMs / 1000), this.nowSec(), (service) => {
      const key = old[service];
      const entry = key === undefined ? undefined : model.services.get(key);
      return entry ? entry.id + 1 : 0;
    });
    return { ...counts, ageMs };
  }
}

/** A flow record's service field (the entry's id + 1, 0 for none) → the entry's key. */
function serviceKeys(model: Model): Map<number, string> {
  const m = new Map<number, string>();
  for (const [key, e] of model.services) m.set(e.id + 1, key);
  return m;
}
