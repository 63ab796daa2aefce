// The allocation store, laid out like the reference host-local plugin's, plus an index by owner:
//   <dataDir>/<network>/<address>          "<containerID>\n<ifname>", one file per allocated address
//   <dataDir>/<network>/last_reserved_ip.N the last address handed out from range N (round robin)
//   <dataDir>/<network>/lock               held (O_EXCL, holder's PID inside) only by GC and indexing
//   <dataDir>/<network>/.owners/<key>/record   the same text; each of the owner's address files is
//                                              a hard link to it
//   <dataDir>/<network>/.owners/<key>/<address> empty: the owner claims (or is claiming) it
//   <dataDir>/<network>/.owners/indexed    every record made before the index is in it
//   <dataDir>/<network>/.owners/<key>.lock held (like lock) while the owner's records are released
// <key> is a hash of (containerID, ifname). The index makes an ADD or DEL cost a few files whatever
// the number of pods: an ADD finds an address it already holds, a DEL the addresses to release, in
// the owner's own directory, and neither lists nor reads the other pods' records.
//
// Claiming is lock-free and crash safe: the owner's record is written completely first, then
// link(2)ed to the address's name. link fails with EEXIST when the address is taken, so two
// claimants can never both win, and a reader never sees a half-written record. There are no temp
// files: a process killed at any point leaves its owner directory (the next ADD or DEL of that
// attachment, or GC, finishes it) and at most an address record that is complete and indexed.
import * as fs from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { parseAddr, type Family } from "./cidr.js";

export interface Owner {
  containerId: string;
  ifname: string;
}

export interface Allocation extends Owner {
  /** The address as the file is named, e.g. "10.244.1.2". */
  ip: string;
  family: Family;
  value: bigint;
}

/** Temp files of wasp before the owner index (GC still removes those of dead processes). */
const TMP_PREFIX = ".tmp-";
const LOCK = "lock";
const OWNERS = ".owners";
const INDEXED = "indexed";
const RECORD = "record";
/** How a waiter treats the lock: a holder older than staleMs is taken for dead (its PID reused), and
 *  the waiter looks again after a random pause of up to pollMaxMs. */
interface LockWait { staleMs: number; pollMaxMs: number }
/** A release holds the lock for a few file operations. */
const HELD_BRIEFLY: LockWait = { staleMs: 15_000, pollMaxMs: 10 };
/** Indexing a store of many records may hold it for seconds: its waiters (every other call of a
 *  busy node) look rarely, so as not to slow it down. */
const HELD_FOR_INDEXING: LockWait = { staleMs: 120_000, pollMaxMs: 200 };
/** An owner directory without a valid record younger than this may be an ADD under way: GC keeps it. */
const YOUNG_MS = 60_000;
/** Records read at once when every record must be read (GC, indexing): a few open files, not one per pod. */
const READ_PARALLEL = 8;

export class StoreError extends Error {
  constructor(message: string, readonly retryable = false) {
    super(message);
  }
}

export function sameOwner(a: Owner, b: Owner): boolean {
  return a.containerId === b.containerId && a.ifname === b.ifname;
}

/** The record's text; host-local writes "\r\n" between the fields, we write "\n" and read both. */
export function formatRecord(o: Owner): string {
  return `${o.containerId}\n${o.ifname}`;
}

export function parseRecord(text: string): Owner | undefined {
  const [containerId, ifname] = text.split(/\r?\n/);
  if (!containerId || ifname === undefined) return undefined;
  return { containerId: containerId.trim(), ifname: ifname.trim() };
}

/** The owner's directory name under .owners: 128 bits of SHA-256, so any containerID fits a file name. */
export function ownerKey(o: Owner): string {
  return createHash("sha256").update(`${o.containerId}\0${o.ifname}`).digest("hex").slice(0, 32);
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const code = (e: unknown) => (e as NodeJS.ErrnoException).code;
/** Undefined when the file is not there. */
const ifExists = <T>(p: Promise<T>) => p.catch((e: unknown) => { if (code(e) === "ENOENT") return undefined; throw e; });

/** Maps `fn` over `items`, at most `parallel` at once. */
async function mapLimited<T, R>(items: readonly T[], parallel: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => { for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]!); };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
  return out;
}

/** In-process queue in front of each lock file: calls of one process (the daemon serves CNI calls
 *  in-process) wait their turn on a promise instead of polling the file. */
const localQueues = new Map<string, Promise<unknown>>();

export class Store {
  private indexed = false;

  private constructor(readonly dir: string) {}

  /** Opens (creating when needed) the store of one network under dataDir. */
  static async open(dataDir: string, network: string): Promise<Store> {
    const dir = join(dataDir, network);
    try {
      await fs.mkdir(dir, { recursive: true, mode: 0o755 });
    } catch (e) {
      throw new StoreError(`cannot create the IPAM directory ${dir}: ${(e as Error).message}`);
    }
    return new Store(dir);
  }

  /** Every allocation record; a record that cannot be read or parsed has no owner. Reads them all. */
  async list(): Promise<Array<Allocation & { valid: boolean }>> {
    const names = await this.takenNames();
    const out = await mapLimited(names, READ_PARALLEL, async (name) => {
      const a = parseAddr(name)!;
      const text = await ifExists(fs.readFile(join(this.dir, name), "utf8"));
      if (text === undefined) return undefined; // released meanwhile
      const o = parseRecord(text);
      return { ip: name, family: a.family, value: a.value, containerId: o?.containerId ?? "", ifname: o?.ifname ?? "", valid: !!o };
    });
    return out.filter((x): x is NonNullable<typeof x> => x !== undefined);
  }

  /** Addresses in use, by file name only (no reads). */
  async takenNames(): Promise<string[]> {
    return (await fs.readdir(this.dir)).filter((n) => parseAddr(n) !== undefined);
  }

  /** The owner of one address's record; undefined when it is free or the record unreadable. */
  async recordOf(ip: string): Promise<Owner | undefined> {
    const text = await ifExists(fs.readFile(join(this.dir, ip), "utf8"));
    return text === undefined ? undefined : parseRecord(text);
  }

  /** The addresses `owner` holds (its own directory, each checked against its record). */
  async heldBy(owner: Owner): Promise<string[]> {
    await this.ensureIndex();
    const od = this.ownerDir(owner);
    const names = (await ifExists(fs.readdir(od))) ?? [];
    const held: string[] = [];
    for (const ip of names) if (parseAddr(ip) && await this.isOwners(ip, owner, od)) held.push(ip);
    return held;
  }

  /** Atomically claims `ip` for `owner`; false when someone holds it already. */
  async claim(ip: string, owner: Owner): Promise<boolean> {
    await this.ensureIndex();
    const od = this.ownerDir(owner);
    await this.writeOwnerRecord(od, owner);
    // The mark first: a claim killed right after the link is still found by the owner's DEL.
    await fs.writeFile(join(od, ip), "", { mode: 0o644 });
    try {
      await fs.link(join(od, RECORD), join(this.dir, ip));
      return true;
    } catch (e) {
      if (code(e) === "EEXIST" && await this.isOwners(ip, owner, od)) return true; // ours already
      await fs.rm(join(od, ip), { force: true });
      if (code(e) === "EEXIST") return false;
      throw e;
    }
  }

  async lastReserved(range: number): Promise<string | undefined> {
    try {
      return (await fs.readFile(join(this.dir, `last_reserved_ip.${range}`), "utf8")).trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /** A hint only (racing writers may move it back a little, a killed one leave it empty), so it is
   *  written in place, as host-local writes it. */
  async setLastReserved(range: number, ip: string): Promise<void> {
    await fs.writeFile(join(this.dir, `last_reserved_ip.${range}`), ip, { mode: 0o644 });
  }

  /**
   * Runs fn holding a lock: the store's (GC, indexing), or one owner's (path). Claims take none;
   * a release takes its owner's, and GC the store's and then each released owner's, so that the
   * check-then-unlink of a release never races another release or GC of the same file (between
   * the check and the unlink nobody else may unlink, so nobody can re-claim the address either).
   * Only the owner and GC unlink an owner's records: DELs of different pods never wait for each
   * other, however many run at once.
   */
  async withLock<T>(fn: () => Promise<T>, timeoutMs = 30_000, wait: LockWait = HELD_BRIEFLY, path = join(this.dir, LOCK)): Promise<T> {
    const before = localQueues.get(path) ?? Promise.resolve();
    const mine = before.then(() => this.withFileLock(path, fn, timeoutMs, wait));
    const tail = mine.catch(() => undefined);
    localQueues.set(path, tail);
    try {
      return await mine;
    } finally {
      if (localQueues.get(path) === tail) localQueues.delete(path);
    }
  }

  private async withFileLock<T>(path: string, fn: () => Promise<T>, timeoutMs: number, wait: LockWait): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.writeFile(path, String(process.pid), { flag: "wx", mode: 0o644 });
        break;
      } catch (e) {
        if (code(e) !== "EEXIST") throw e;
      }
      // The holder may have been killed: a lock whose PID is gone is stale and is broken. A holder
      // keeps it briefly, so one older than wait.staleMs is stale too (its PID reused).
      let holder = "", ageMs = 0;
      try {
        holder = (await fs.readFile(path, "utf8")).trim();
        ageMs = Date.now() - (await fs.stat(path)).mtimeMs;
      } catch { /* released meanwhile */ }
      if (holder !== "" && (!pidAlive(Number(holder)) || ageMs > wait.staleMs)) {
        const again = await fs.readFile(path, "utf8").catch(() => "");
        if (again.trim() === holder) await fs.rm(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new StoreError(`the IPAM lock ${path} is held by PID ${holder || "?"} for more than ${timeoutMs} ms`, true);
      }
      await sleep(1 + Math.random() * Math.min(wait.pollMaxMs, 2 ** Math.min(attempt, 16)));
    }
    try {
      return await fn();
    } finally {
      await fs.rm(path, { force: true });
    }
  }

  /**
   * Removes the records of `owner`; idempotent. Returns the addresses released. `hints` are
   * addresses the caller believes the owner holds (a DEL's prevResult): they are released too when
   * their record names the owner, which covers records written before the store had its index.
   */
  async release(owner: Owner, hints: readonly string[] = []): Promise<string[]> {
    return this.releaseCandidates(owner, await this.candidates(owner, hints));
  }

  /** What release(owner, hints) will look at; reads only the owner's directory and takes no lock,
   *  so a DEL finds it while the kernel still removes the pod's veth. */
  async candidates(owner: Owner, hints: readonly string[] = []): Promise<string[]> {
    await this.ensureIndex();
    const names = (await ifExists(fs.readdir(this.ownerDir(owner)))) ?? [];
    return [...new Set([...names.filter((n) => parseAddr(n)), ...hints.filter((h) => parseAddr(h))])];
  }

  /** The second half of release: each candidate whose record names `owner` is released. */
  async releaseCandidates(owner: Owner, candidates: readonly string[]): Promise<string[]> {
    // A DEL of nothing never takes the lock.
    if (!candidates.length) return [];
    const od = this.ownerDir(owner);
    return this.withOwnerLock(owner, async () => {
      const released: string[] = [];
      for (const ip of candidates) {
        if (!await this.isOwners(ip, owner, od)) continue; // released (and maybe re-claimed) meanwhile
        await fs.rm(join(this.dir, ip), { force: true });
        released.push(ip);
      }
      await fs.rm(od, { recursive: true, force: true });
      return released;
    });
  }

  /**
   * Releases every record whose owner `keep` rejects (and unreadable records), removes the owner
   * directories of the owners released, and the temp files of processes that are gone. Returns the
   * records released.
   */
  async gc(keep: (o: Owner) => boolean): Promise<Allocation[]> {
    await this.ensureIndex();
    return this.withLock(async () => {
      const released: Allocation[] = [];
      for (const a of await this.list()) {
        if (a.valid && keep(a)) continue;
        // An unreadable record names nobody, so only GC unlinks it; a valid one its owner may be
        // releasing right now.
        const unlink = async () => {
          if (a.valid && !await this.isOwners(a.ip, a, this.ownerDir(a))) return false; // released meanwhile
          await fs.rm(join(this.dir, a.ip), { force: true });
          return true;
        };
        if (await (a.valid ? this.withOwnerLock(a, unlink) : unlink())) released.push(a);
      }
      const owners = join(this.dir, OWNERS);
      const all = (await ifExists(fs.readdir(owners))) ?? [];
      // owner locks left by a killed release
      for (const lock of all.filter((k) => k.endsWith(".lock"))) {
        const holder = Number((await ifExists(fs.readFile(join(owners, lock), "utf8")))?.trim());
        if (!pidAlive(holder)) await fs.rm(join(owners, lock), { force: true });
      }
      const keys = all.filter((k) => k !== INDEXED && !k.endsWith(".lock"));
      await mapLimited(keys, READ_PARALLEL, async (key) => {
        const od = join(owners, key);
        const o = parseRecord((await ifExists(fs.readFile(join(od, RECORD), "utf8"))) ?? "");
        if (o && keep(o)) return;
        const st = await ifExists(fs.stat(od));
        if (!o && st && Date.now() - st.mtimeMs < YOUNG_MS) return; // an ADD writing its record
        await fs.rm(od, { recursive: true, force: true });
      });
      for (const name of await fs.readdir(this.dir)) {
        if (!name.startsWith(TMP_PREFIX)) continue;
        const pid = Number(name.slice(TMP_PREFIX.length).split("-")[0]);
        if (!pidAlive(pid)) await fs.rm(join(this.dir, name), { force: true });
      }
      return released;
    });
  }

  private ownerDir(o: Owner): string {
    return join(this.dir, OWNERS, ownerKey(o));
  }

  /** Beside the owner's directory, not in it: a release removes the directory while holding it. */
  private withOwnerLock<T>(o: Owner, fn: () => Promise<T>): Promise<T> {
    return this.withLock(fn, 30_000, HELD_BRIEFLY, join(this.dir, OWNERS, `${ownerKey(o)}.lock`));
  }

  /** Does the record of `ip` name `owner`? A hard link of the owner's record answers by stat alone. */
  private async isOwners(ip: string, owner: Owner, od: string): Promise<boolean> {
    const [rec, mine] = await Promise.all([ifExists(fs.stat(join(this.dir, ip))), ifExists(fs.stat(join(od, RECORD)))]);
    if (!rec) return false;
    if (mine && rec.ino === mine.ino && rec.dev === mine.dev) return true;
    const o = await this.recordOf(ip); // host-local's, or written before the index
    return !!o && sameOwner(o, owner);
  }

  /** The owner's record, written once: completely, before anything links to it. */
  private async writeOwnerRecord(od: string, owner: Owner): Promise<void> {
    const path = join(od, RECORD), text = formatRecord(owner);
    const have = await ifExists(fs.readFile(path, "utf8"));
    if (have === text) return;
    await fs.mkdir(od, { recursive: true, mode: 0o755 });
    // Absent, or cut short by a kill: nothing links to a record that was never complete. Unlinked
    // first, so that whatever links to an old inode keeps its text.
    if (have !== undefined) await fs.rm(path, { force: true });
    await fs.writeFile(path, text, { mode: 0o644 });
  }

  /**
   * Makes sure the owner index exists: a store written by host-local or an older wasp has records
   * but no index. Its first call indexes every record once, holding the lock while the others
   * wait; indexing only adds what is missing, so a holder killed or taken for stale costs a second
   * indexing, never a wrong index. No call claims or releases before the index is complete.
   */
  private async ensureIndex(): Promise<void> {
    if (this.indexed) return;
    const done = join(this.dir, OWNERS, INDEXED);
    if (await ifExists(fs.stat(done))) { this.indexed = true; return; }
    // A store without records (a new node) has nothing to index, and no lock is needed to say so:
    // records are made only once the index is complete.
    if (!(await this.takenNames()).length) await this.markIndexed(done);
    else await this.withLock(() => this.indexAll(done), 10 * 60_000, HELD_FOR_INDEXING);
    this.indexed = true;
  }

  private async indexAll(done: string): Promise<void> {
    if (await ifExists(fs.stat(done))) return;
    for (const a of await this.list()) {
      if (!a.valid) continue;
      const od = this.ownerDir(a);
      await this.writeOwnerRecord(od, a);
      await fs.writeFile(join(od, a.ip), "", { mode: 0o644 });
    }
    await this.markIndexed(done);
  }

  private async markIndexed(done: string): Promise<void> {
    await fs.mkdir(join(this.dir, OWNERS), { recursive: true, mode: 0o755 });
    await fs.writeFile(done, "", { mode: 0o644 });
  }
}
