// The config from a local file, reloaded when it changes. The directory is watched, not the file:
// editors and kubectl-style writers replace a file by renaming a new one over it (and ConfigMap
// mounts swap a `..data` symlink), which a watch on the old inode would never see.

import { existsSync, watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { errnoWords } from "../io/errno.js";
import { loadConfigText, loadConfigTextAsync } from "./parse.js";
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
  /** The text (or read error) last reported: an event that changes nothing is not reported again. */
  private last: string | undefined;
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
        let text: string | undefined, problem: Problem | undefined;
        try {
          text = await readFile(this.path, "utf8");
        } catch (e) {
          problem = readProblem(e as NodeJS.ErrnoException);
        }
        const seen = text ?? `\0${problem?.message ?? ""}`;
        if (this.closed || seen === this.last) continue;
        this.last = seen;
        if (text === undefined) {
          this.listener?.({ kind: "rejected", problems: [problem as Problem] });
        } else {
          const r = await loadConfigTextAsync(text, this.path, this.cache);
          if (this.closed) continue;
          this.listener?.("config" in r ? { kind: "config", config: r.config, ...(r.changes && { changes: r.changes }) } : { kind: "rejected", problems: r.problems });
        }
      } while (this.again && !this.closed);
    } finally {
      this.reading = false;
    }
  }
}
