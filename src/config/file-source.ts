// The config from a local file, reloaded when it changes. The directory is watched, not the file:
// editors and kubectl-style writers replace a file by renaming a new one over it (and ConfigMap
// mounts swap a `..data` symlink), which a watch on the old inode would never see.

import { existsSync, watch, type FSWatcher } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { errnoWords } from "../io/errno.js";
import { loadConfigBytesAsync, loadConfigText } from "./parse.js";
import { ServiceCache } from "./validate.js";
import type { Config, ConfigChanges, Problem } from "./schema.js";

/** What a config source reports: a valid new config to apply, or a rejected one (the running config stays). */
export type ConfigEvent = { kind: "config"; config: Config; changes?: ConfigChanges } | { kind: "rejected"; problems: Problem[] };

/** A source of configs (this file now, the Kubernetes API later). */
export interface ConfigSource {
  /** Reports the current config at once, then every change, until close(). */
  start(listener: (event: ConfigEvent) => void): void;
  close(): void;
}

function readProblem(err: NodeJS.ErrnoException): Problem {
  const code = err.code ?? "EIO";
  return { path: "", message: `cannot be read: ${errnoWords(code)} (${code})` };
}

/** Reads and validates a config file once. */
export async function loadConfigFile(path: string): Promise<{ config: Config } | { problems: Problem[] }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    return { problems: [readProblem(e as NodeJS.ErrnoException)] };
  }
  return loadConfigText(text, path);
}

/** The whole file, read into `spare` when it fits (its bytes are a view of it), else into a new buffer
 *  with room to grow. A reused buffer saves the page faults of fresh memory on every reload: about
 *  15 ms for a 7 MB file on this busy 2-core machine. Each buffer is allocUnsafeSlow: it owns its
 *  memory, so that `whole` gives back all of it. */
async function readWhole(path: string, spare: Buffer | undefined): Promise<Buffer> {
  const file = await open(path, "r");
  try {
    const size = (await file.stat()).size;
    let buf = spare && spare.length > size ? spare : Buffer.allocUnsafeSlow(size + 1 + (size >> 4));
    let n = 0;
    for (;;) {
      if (n === buf.length) { const more = Buffer.allocUnsafeSlow(2 * n + 4096); buf.copy(more, 0, 0, n); buf = more; }
      const { bytesRead } = await file.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) return buf.subarray(0, n);
      n += bytesRead;
    }
  } finally {
    await file.close();
  }
}

/** The buffer `bytes` is a view of, all of it. */
const whole = (bytes: Buffer) => Buffer.from(bytes.buffer, 0, bytes.buffer.byteLength);

export interface FileSourceOptions {
  /** Quiet time after the last change before reading: a write often comes as several events. */
  debounceMs?: number;
  /** Longest wait after the first change not yet read: a file rewritten more often than the quiet
   *  time is still read this often, so a change takes effect even while writes continue. */
  maxWaitMs?: number;
}

export class FileConfigSource implements ConfigSource {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private listener: ((event: ConfigEvent) => void) | undefined;
  /** The bytes (or read error) last reported: an event that changes nothing is not reported again. */
  private last: Buffer | string | undefined;
  /** A read buffer no one holds (not `last`, not the cache's text), for the next read. */
  private spare: Buffer | undefined;
  private reading = false;
  private again = false;
  private closed = false;
  private readonly debounceMs: number;
  private readonly maxWaitMs: number;
  /** When the first change the next read is for arrived (performance.now()); undefined when none waits. */
  private firstChangeMs: number | undefined;
  private readonly cache = new ServiceCache();

  constructor(readonly path: string, options: FileSourceOptions = {}) {
    this.debounceMs = options.debounceMs ?? 75;
    this.maxWaitMs = options.maxWaitMs ?? 250;
  }

  /** Throws when the file's directory cannot be watched (it does not exist, say). */
  start(listener: (event: ConfigEvent) => void): void {
    this.listener = listener;
    // Any event in the directory triggers a read: the name in the event is the renamed temp file or
    // the swapped symlink as often as it is our file, and comparing the text makes extra reads harmless.
    try {
      // A file renamed into place is whole: it is read at once; other events wait for quiet.
      const name = basename(this.path);
      this.watcher = watch(dirname(this.path), { persistent: false }, (ev, file) => this.schedule(ev === "rename" && file === name));
    } catch (e) {
      const err = e as NodeJS.ErrnoException, code = err.code ?? "EIO";
      throw new Error(`cannot watch ${dirname(this.path)} for changes to ${this.path}: ${errnoWords(code)} (${code})`);
    }
    this.watcher.on("error", () => this.schedule());
    void this.check();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.watcher?.close();
  }

  private schedule(rename = false): void {
    if (this.closed) return;
    const now = performance.now();
    this.firstChangeMs ??= now;
    clearTimeout(this.timer);
    // a file renamed into place is read at once; other changes wait for quiet, but never longer
    // than maxWaitMs after the first change not yet read
    if (rename && existsSync(this.path)) { this.firstChangeMs = undefined; void this.check(); return; }
    const waitMs = Math.max(0, Math.min(this.debounceMs, this.firstChangeMs + this.maxWaitMs - now));
    this.timer = setTimeout(() => { this.firstChangeMs = undefined; void this.check(); }, waitMs);
  }

  private async check(): Promise<void> {
    if (this.reading) { this.again = true; return; }
    this.reading = true;
    try {
      do {
        this.again = false;
        let bytes: Buffer | undefined, problem: Problem | undefined;
        try {
          bytes = await readWhole(this.path, this.spare);
        } catch (e) {
          problem = readProblem(e as NodeJS.ErrnoException);
        }
        if (bytes && bytes.buffer === this.spare?.buffer) this.spare = undefined;
        const seen = bytes ?? `\0${problem?.message ?? ""}`, last = this.last;
        if (this.closed || (typeof seen === "string" ? seen === last : typeof last !== "string" && last !== undefined && seen.equals(last))) {
          if (bytes) this.spare = whole(bytes);
          continue;
        }
        this.last = seen;
        if (bytes === undefined) {
          this.listener?.({ kind: "rejected", problems: [problem as Problem] });
        } else {
          const r = await loadConfigBytesAsync(bytes, this.path, this.cache);
          if (this.closed) continue;
          this.listener?.("config" in r ? { kind: "config", config: r.config, ...(r.changes && { changes: r.changes }) } : { kind: "rejected", problems: r.problems });
        }
        if (typeof last !== "string" && last !== undefined && !this.cache.keeps(last)) this.spare = whole(last);
      } while (this.again && !this.closed);
    } finally {
      this.reading = false;
    }
  }
}
