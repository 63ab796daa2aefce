// The allocation store, laid out like the reference host-local plugin's:
//   <dataDir>/<network>/<address>          "<containerID>\n<ifname>", one file per allocated address
//   <dataDir>/<network>/last_reserved_ip.N the last address handed out from range N (round robin)
//   <dataDir>/<network>/lock               held (O_EXCL, holder's PID inside) only while releasing
//
// Claiming is lock-free and crash safe: the record is written completely into a private temp file,
// then link(2)ed to the address's name. link fails with EEXIST when the address is taken, so two
// claimants can never both win, and a reader never sees a half-written record. A process killed
// at any point leaves at most a temp file named after its PID, which gc() removes.
import * as fs from "node:fs/promises";
import { randomBytes } from "node:crypto";
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

const TMP_PREFIX = ".tmp-";
const LOCK = "lock";
const STALE_LOCK_MS = 15_000;

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

export class Store {
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

  /** Every allocation record; a record that cannot be read or parsed has no owner. */
  async list(): Promise<Array<Allocation & { valid: boolean }>> {
    const names = await fs.readdir(this.dir);
    const out = await Promise.all(
      names.map(async (name) => {
        const a = parseAddr(name);
        if (!a) return undefined;
        let text = "";
        try {
          text = await fs.readFile(join(this.dir, name), "utf8");
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined; // released meanwhile
          throw e;
        }
        const o = parseRecord(text);
        return { ip: name, family: a.family, value: a.value, containerId: o?.containerId ?? "", ifname: o?.ifname ?? "", valid: !!o };
      }),
    );
    return out.filter((x): x is NonNullable<typeof x> => x !== undefined);
  }

  /** Addresses in use, by file name only (no reads). */
  async takenNames(): Promise<string[]> {
    return (await fs.readdir(this.dir)).filter((n) => parseAddr(n) !== undefined);
  }

  /** Atomically claims `ip` for `owner`; false when someone holds it already. */
  async claim(ip: string, owner: Owner): Promise<boolean> {
    const tmp = join(this.dir, `${TMP_PREFIX}${process.pid}-${randomBytes(4).toString("hex")}`);
    await fs.writeFile(tmp, formatRecord(owner), { flag: "wx", mode: 0o644 });
    try {
      await fs.link(tmp, join(this.dir, ip));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw e;
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  async lastReserved(range: number): Promise<string | undefined> {
    try {
      return (await fs.readFile(join(this.dir, `last_reserved_ip.${range}`), "utf8")).trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /** A hint only (racing writers may move it back a little), so a rename is all it needs. */
  async setLastReserved(range: number, ip: string): Promise<void> {
    const tmp = join(this.dir, `${TMP_PREFIX}${process.pid}-${randomBytes(4).toString("hex")}`);
    await fs.writeFile(tmp, ip, { flag: "wx", mode: 0o644 });
    await fs.rename(tmp, join(this.dir, `last_reserved_ip.${range}`));
  }

  /**
   * Runs fn holding the store's lock. Claims do not take it; releases do, so that the
   * read-then-unlink of a release never races another release or GC of the same file (between
   * the read and the unlink nobody else may unlink, so nobody can re-claim the address either).
   */
  async withLock<T>(fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
    const path = join(this.dir, LOCK);
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.writeFile(path, String(process.pid), { flag: "wx", mode: 0o644 });
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      // The holder may have been killed: a lock whose PID is gone is stale and is broken. A holder
      // keeps it for milliseconds, so one older than STALE_LOCK_MS is stale too (its PID reused).
      let holder = "", ageMs = 0;
      try {
        holder = (await fs.readFile(path, "utf8")).trim();
        ageMs = Date.now() - (await fs.stat(path)).mtimeMs;
      } catch { /* released meanwhile */ }
      if (holder !== "" && (!pidAlive(Number(holder)) || ageMs > STALE_LOCK_MS)) {
        const again = await fs.readFile(path, "utf8").catch(() => "");
        if (again.trim() === holder) await fs.rm(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new StoreError(`the IPAM lock ${path} is held by PID ${holder || "?"} for more than ${timeoutMs} ms`, true);
      }
      await sleep(1 + Math.random() * Math.min(10, 1 + attempt));
    }
    try {
      return await fn();
    } finally {
      await fs.rm(path, { force: true });
    }
  }

  /** Removes the records of `owner`; idempotent. Returns the addresses released. */
  async release(owner: Owner): Promise<string[]> {
    // Find the candidates without the lock (a DEL of nothing never waits), then hold it only for
    // the re-read and unlink of those few files: under load the lock is held for microseconds.
    const candidates = (await this.list()).filter((a) => sameOwner(a, owner)).map((a) => a.ip);
    if (!candidates.length) return [];
    return this.withLock(async () => {
      const released: string[] = [];
      for (const ip of candidates) {
        const path = join(this.dir, ip);
        const o = parseRecord(await fs.readFile(path, "utf8").catch(() => ""));
        if (!o || !sameOwner(o, owner)) continue; // released (and maybe re-claimed) meanwhile
        await fs.rm(path, { force: true });
        released.push(ip);
      }
      return released;
    });
  }

  /**
   * Releases every record whose owner `keep` rejects (and unreadable records), and removes the temp
   * files of processes that are gone. Returns the records released.
   */
  async gc(keep: (o: Owner) => boolean): Promise<Allocation[]> {
    return this.withLock(async () => {
      const released: Allocation[] = [];
      for (const a of await this.list()) {
        if (a.valid && keep(a)) continue;
        await fs.rm(join(this.dir, a.ip), { force: true });
        released.push(a);
      }
      for (const name of await fs.readdir(this.dir)) {
        if (!name.startsWith(TMP_PREFIX)) continue;
        const pid = Number(name.slice(TMP_PREFIX.length).split("-")[0]);
        if (!pidAlive(pid)) await fs.rm(join(this.dir, name), { force: true });
      }
      return released;
    });
  }
}
