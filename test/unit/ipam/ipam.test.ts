import assert from "node:assert/strict";
import { execFile, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  allocate, formatAddr, freeCount, ownerKey, parseAddr, parseCidr, PoolExhaustedError, poolFromCidr, Store,
} from "../../../src/ipam/index.js";

const run = promisify(execFile);
const owner = (id: string, ifname = "eth0") => ({ containerId: id, ifname });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("ipam: CIDR parsing", () => {
  it("rejects a prefix longer than the address (10.244.1.0/33) and host bits set (10.244.1.1/24)", () => {
    assert.equal(parseCidr("10.244.1.0/33"), undefined);
    assert.equal(parseCidr("10.244.1.1/24"), undefined);
    assert.equal(parseCidr("10.244.1.0"), undefined);
    assert.equal(parseCidr("300.1.1.0/24"), undefined);
    assert.equal(parseCidr("10.244.1.0/24")?.text, "10.244.1.0/24");
  });
  it("writes IPv6 addresses in RFC 5952 form (longest zero run compressed, lower case)", () => {
    const f = (s: string) => formatAddr(6, parseAddr(s)!.value);
    assert.equal(f("2001:DB8:0:0:0:0:2:1"), "2001:db8::2:1"); // RFC 5952 §4.2.1
    assert.equal(f("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1"); // §4.2.2: one 0 group stays
    assert.equal(f("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1"); // §4.2.3: longest run
    assert.equal(f("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1"); // §4.2.3: first of equal runs
    assert.equal(f("fd00::"), "fd00::");
  });
});

describe("ipam: pool exclusions", () => {
  it("a /24 excludes the network address, the first address (wasp0) and the broadcast: .2-.254, 253 addresses", () => {
    const p = poolFromCidr("10.244.1.0/24")!;
    assert.equal(formatAddr(4, p.first), "10.244.1.2");
    assert.equal(formatAddr(4, p.last), "10.244.1.254");
    assert.equal(p.size, 253n);
    assert.equal(p.gateway, "10.244.1.1");
  });
  it("a /30 holds exactly one pod address and a /31 none", () => {
    assert.equal(poolFromCidr("10.244.1.0/30")!.size, 1n);
    assert.equal(poolFromCidr("10.244.1.0/31")!.size, 0n);
  });
  it("an IPv6 /120 runs from ::2 to ::ff (no broadcast in IPv6)", () => {
    const p = poolFromCidr("fd00:10:244:1::/120")!;
    assert.equal(formatAddr(6, p.first), "fd00:10:244:1::2");
    assert.equal(formatAddr(6, p.last), "fd00:10:244:1::ff");
    assert.equal(p.size, 254n);
  });
});

describe("ipam: allocation store", () => {
  let dataDir: string;
  beforeEach(() => { dataDir = fs.mkdtempSync(join(tmpdir(), "wasp-ipam-")); });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  /** The store's files in host-local's layout (the owner index, .owners, apart). */
  const files = (net = "net") => fs.readdirSync(join(dataDir, net)).filter((f) => f !== ".owners").sort();
  const ownerDirs = (net = "net") => fs.readdirSync(join(dataDir, net, ".owners")).filter((f) => f !== "indexed").sort();

  it("hands out addresses in order from the first usable one, never .0, .1 or .255", async () => {
    const store = await Store.open(dataDir, "net");
    const pool = poolFromCidr("10.244.1.0/24")!;
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await allocate(store, pool, owner(`c${i}`), 0)).ip);
    assert.deepEqual(got, ["10.244.1.2", "10.244.1.3", "10.244.1.4"]);
  });

  it("lays files out like host-local: <address> holds '<containerID>\\n<ifname>', last_reserved_ip.0 the last one", async () => {
    const store = await Store.open(dataDir, "net");
    await allocate(store, poolFromCidr("10.244.1.0/24")!, owner("abc", "net1"), 0);
    assert.deepEqual(files(), ["10.244.1.2", "last_reserved_ip.0"]);
    assert.equal(fs.readFileSync(join(dataDir, "net", "10.244.1.2"), "utf8"), "abc\nnet1");
    assert.equal(fs.readFileSync(join(dataDir, "net", "last_reserved_ip.0"), "utf8"), "10.244.1.2");
  });

  it("continues after the last reserved address instead of reusing the one just released (round robin)", async () => {
    const store = await Store.open(dataDir, "net");
    const pool = poolFromCidr("10.244.1.0/24")!;
    await allocate(store, pool, owner("a"), 0);
    await allocate(store, pool, owner("b"), 0);
    await store.release(owner("a"));
    assert.equal((await allocate(store, pool, owner("c"), 0)).ip, "10.244.1.4");
  });

  it("wraps around at the end of the pool to the first free address", async () => {
    const store = await Store.open(dataDir, "net");
    const pool = poolFromCidr("10.244.1.0/29")!; // .2-.6
    for (let i = 0; i < 5; i++) await allocate(store, pool, owner(`c${i}`), 0);
    await store.release(owner("c1")); // .3
    assert.equal((await allocate(store, pool, owner("d"), 0)).ip, "10.244.1.3");
  });

  it("an exhausted /30 fails with PoolExhaustedError and leaves no new file", async () => {
    const store = await Store.open(dataDir, "net");
    const pool = poolFromCidr("10.244.1.0/30")!;
    assert.equal((await allocate(store, pool, owner("a"), 0)).ip, "10.244.1.2");
    const before = files();
    await assert.rejects(allocate(store, pool, owner("b"), 0), (e) => e instanceof PoolExhaustedError && /no free address in 10.244.1.0\/30/.test(e.message));
    assert.deepEqual(files(), before);
    assert.equal(await freeCount(store, pool), 0n);
  });

  it("gives a retried ADD of the same (containerID, ifname) its address back", async () => {
    const store = await Store.open(dataDir, "net");
    const pool = poolFromCidr("10.244.1.0/24")!;
    const a = await allocate(store, pool, owner("a"), 0);
    const b = await allocate(store, pool, owner("a"), 0);
    assert.equal(b.ip, a.ip);
    assert.equal(b.reused, true);
    assert.notEqual((await allocate(store, pool, owner("a", "net1"), 0)).ip, a.ip);
  });

  it("release is idempotent: the second release finds nothing and succeeds", async () => {
    const store = await Store.open(dataDir, "net");
    await allocate(store, poolFromCidr("10.244.1.0/24")!, owner("a"), 0);
    assert.deepEqual(await store.release(owner("a")), ["10.244.1.2"]);
    assert.deepEqual(await store.release(owner("a")), []);
    assert.deepEqual(await store.release(owner("never")), []);
    assert.deepEqual(files(), ["last_reserved_ip.0"]);
    assert.deepEqual(ownerDirs(), [], "the owner's index entry goes with its last address");
  });

  it("breaks a lock older than 15 s even when its PID is alive again (PID reuse after a crash)", async () => {
    const store = await Store.open(dataDir, "net");
    await allocate(store, poolFromCidr("10.244.1.0/24")!, owner("x"), 0);
    const lock = join(dataDir, "net", ".owners", `${ownerKey(owner("x"))}.lock`);
    fs.writeFileSync(lock, String(process.pid));
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(lock, old, old);
    assert.deepEqual(await store.release(owner("x")), ["10.244.1.2"]);
  });

  it("a release that finds no record does not wait for a held lock (DEL of nothing is instant)", async () => {
    const store = await Store.open(dataDir, "net");
    fs.writeFileSync(join(dataDir, "net", "lock"), String(process.pid));
    assert.deepEqual(await store.release(owner("none")), []);
  });

  it("DELs of different pods never wait for each other: a release goes on while the store's lock and another owner's are held, and waits only for its own owner's", async () => {
    const store = await Store.open(dataDir, "net");
    const pool = poolFromCidr("10.244.1.0/24")!;
    const a = await allocate(store, pool, owner("a"), 0), b = await allocate(store, pool, owner("b"), 0);
    // held by this live process, as by a slow release (or GC) in another one
    fs.writeFileSync(join(dataDir, "net", "lock"), String(process.pid));
    fs.writeFileSync(join(dataDir, "net", ".owners", `${ownerKey(owner("a"))}.lock`), String(process.pid));
    const t0 = Date.now();
    assert.deepEqual(await store.release(owner("b")), [b.ip]);
    assert.ok(Date.now() - t0 < 1000, `b's release took ${Date.now() - t0} ms`);
    await assert.rejects(store.withLock(async () => 1, 150, undefined, join(dataDir, "net", ".owners", `${ownerKey(owner("a"))}.lock`)), /held by PID/, "a's own lock does hold a's release");
    fs.rmSync(join(dataDir, "net", ".owners", `${ownerKey(owner("a"))}.lock`));
    assert.deepEqual(await store.release(owner("a")), [a.ip]);
  });

  it("reads host-local's records ('<id>\\r\\n<ifname>') as the same owner", async () => {
    const store = await Store.open(dataDir, "net");
    fs.writeFileSync(join(dataDir, "net", "10.244.1.9"), "hl-id\r\neth0");
    assert.deepEqual(await store.release(owner("hl-id")), ["10.244.1.9"]);
  });

  it("a store written by host-local (records, no index) is indexed by its first call, also when an earlier indexing was cut short", async () => {
    fs.mkdirSync(join(dataDir, "net"));
    fs.writeFileSync(join(dataDir, "net", "10.244.1.7"), "hl-a\r\neth0");
    fs.writeFileSync(join(dataDir, "net", "10.244.1.8"), "hl-b\r\neth0");
    // an indexing killed after it had begun: one owner directory with a record cut short
    fs.mkdirSync(join(dataDir, "net", ".owners", ownerKey(owner("hl-a"))), { recursive: true });
    fs.writeFileSync(join(dataDir, "net", ".owners", ownerKey(owner("hl-a")), "record"), "hl-");
    const store = await Store.open(dataDir, "net");
    const pool = poolFromCidr("10.244.1.0/24")!;
    assert.deepEqual(await allocate(store, pool, owner("hl-a"), 0), { ip: "10.244.1.7", reused: true }, "a retried ADD of host-local's attachment gets its address back");
    assert.deepEqual(await (await Store.open(dataDir, "net")).release(owner("hl-b")), ["10.244.1.8"], "a DEL without prevResult finds host-local's record");
    assert.deepEqual(files(), ["10.244.1.7"], "the other record stays");
  });

  it("a DEL's prevResult addresses are released when their record names the attachment, and only then", async () => {
    const store = await Store.open(dataDir, "net");
    await allocate(store, poolFromCidr("10.244.1.0/24")!, owner("a"), 0); // the store has its index now
    fs.writeFileSync(join(dataDir, "net", "10.244.1.50"), "old\neth0"); // written by an older wasp
    assert.deepEqual(await store.release(owner("other"), ["10.244.1.50"]), [], "not the record's owner");
    assert.deepEqual(await store.release(owner("old"), ["10.244.1.50", "10.244.1.2"]), ["10.244.1.50"]);
    assert.deepEqual(files(), ["10.244.1.2", "last_reserved_ip.0"]);
  });

  it("gc releases records of attachments not kept, unreadable records, temp files and owner locks of dead processes", async () => {
    const store = await Store.open(dataDir, "net");
    const pool = poolFromCidr("10.244.1.0/24")!;
    await allocate(store, pool, owner("keep"), 0);
    await allocate(store, pool, owner("drop"), 0);
    const dead = spawnSync("true").pid!; // exited: its PID is free
    fs.writeFileSync(join(dataDir, "net", "10.244.1.77"), ""); // a record with no owner
    fs.writeFileSync(join(dataDir, "net", `.tmp-${dead}-00000000`), "x\neth0");
    fs.writeFileSync(join(dataDir, "net", `.tmp-${process.pid}-00000000`), "x\neth0"); // a live process's
    fs.writeFileSync(join(dataDir, "net", ".owners", "0123.lock"), String(dead)); // a killed release's
    fs.writeFileSync(join(dataDir, "net", ".owners", "4567.lock"), String(process.pid));
    const released = await store.gc((o) => o.containerId === "keep");
    assert.deepEqual(released.map((a) => a.ip).sort(), ["10.244.1.3", "10.244.1.77"]);
    assert.deepEqual(files(), [`.tmp-${process.pid}-00000000`, "10.244.1.2", "last_reserved_ip.0"]);
    assert.deepEqual(ownerDirs(), ["4567.lock", ownerKey(owner("keep"))].sort(), "the live process's lock and the kept owner's index stay");
  });

  it("breaks a lock left by a killed process (its PID is gone) instead of waiting", async () => {
    const store = await Store.open(dataDir, "net");
    await allocate(store, poolFromCidr("10.244.1.0/24")!, owner("x"), 0);
    const dead = spawnSync("true").pid!;
    const lock = join(dataDir, "net", ".owners", `${ownerKey(owner("x"))}.lock`);
    fs.writeFileSync(lock, String(dead));
    const t0 = Date.now();
    assert.deepEqual(await store.release(owner("x")), ["10.244.1.2"]);
    assert.ok(Date.now() - t0 < 1000, `the dead holder's lock broken at once, not waited out: ${Date.now() - t0} ms`);
    assert.equal(fs.existsSync(lock), false);
  });

  it("waits for a lock held by a live process and reports a retryable error after the timeout", async () => {
    const store = await Store.open(dataDir, "net");
    fs.writeFileSync(join(dataDir, "net", "lock"), String(process.pid));
    await assert.rejects(store.withLock(async () => 1, 150), (e: Error & { retryable?: boolean }) => e.retryable === true && /held by PID/.test(e.message));
  });

  /** N other pods' records, written as host-local writes them, and the last address handed out. */
  function prefill(n: number, net = "net"): void {
    fs.mkdirSync(join(dataDir, net), { recursive: true });
    for (let i = 0; i < n; i++) fs.writeFileSync(join(dataDir, net, `10.244.${2 + (i >> 8)}.${i & 255}`), `other-${i}\neth0`);
    fs.writeFileSync(join(dataDir, net, "last_reserved_ip.0"), `10.244.${2 + ((n - 1) >> 8)}.${(n - 1) & 255}`);
  }

  /** One ADD's allocation and one DEL's release in a process of its own, traced by strace: the
   *  files it opens in the store (paths) and whether it lists the store's directory. */
  async function tracedAddDel(net: string, owner: string, traced = true): Promise<{ opens: string[]; listsStore: boolean; ip: string }> {
    const worker = new URL("../../helpers/ipam-cost-worker.ts", import.meta.url).pathname;
    const trace = join(dataDir, `${owner}.strace`);
    const cmd = [process.execPath, "--import", "tsx", worker, dataDir, net, "10.244.0.0/16", owner];
    const out = traced
      ? await run("strace", ["-f", "-qq", "--seccomp-bpf", "-e", "trace=open,openat,openat2", "-o", trace, ...cmd])
      : await run(cmd[0]!, cmd.slice(1));
    const store = join(dataDir, net);
    const lines = traced ? fs.readFileSync(trace, "utf8").split("\n").filter((l) => l.includes(`"${store}`)) : [];
    return {
      opens: lines.map((l) => /"([^"]*)"/.exec(l)![1]!.slice(store.length)),
      listsStore: lines.some((l) => l.includes(`"${store}"`) && l.includes("O_DIRECTORY")),
      ip: (JSON.parse(out.stdout) as { ip: string }).ip,
    };
  }

  it("an ADD and a DEL open as many store files beside 3,000 other pods as beside 10 (a handful), and never list the store (strace)", async function () {
    this.timeout(60_000);
    const cost: Record<number, Awaited<ReturnType<typeof tracedAddDel>>> = {};
    for (const n of [10, 3000]) {
      const net = `net${n}`;
      prefill(n, net);
      await tracedAddDel(net, "warm-up", false); // a store written by host-local is indexed once, by its first call
      cost[n] = await tracedAddDel(net, "probe");
      assert.ok(fs.existsSync(join(dataDir, net, "10.244.2.0")), "the other pods' records are untouched");
    }
    assert.ok(!cost[10]!.listsStore && !cost[3000]!.listsStore, `no ADD or DEL lists the store's directory: ${JSON.stringify(cost)}`);
    assert.equal(cost[3000]!.opens.length, cost[10]!.opens.length, `opens beside 3,000 records: ${cost[3000]!.opens.join(" ")}; beside 10: ${cost[10]!.opens.join(" ")}`);
    assert.ok(cost[3000]!.opens.length <= 12, `an ADD and a DEL open ${cost[3000]!.opens.length} files: ${cost[3000]!.opens.join(" ")}`);
  });

  it("processes killed (SIGKILL) at random moments while allocating and releasing leave no temp file once the next call has run", async function () {
    this.timeout(120_000);
    const worker = new URL("../../helpers/ipam-churn-worker.ts", import.meta.url).pathname;
    const killed = Array.from({ length: 8 }, async (_, round) => {
      const child = spawn(process.execPath, ["--import", "tsx", worker, dataDir, "net", "10.244.0.0/16", `k${round}`], { stdio: ["ignore", "pipe", "inherit"] });
      await new Promise<void>((resolve) => child.stdout!.on("data", (d: Buffer) => { if (d.toString().includes("ready")) resolve(); }));
      await sleep(5 + Math.random() * 150);
      child.kill("SIGKILL"); // by its PID: the worker this test started
      await new Promise((r) => child.once("exit", r));
    });
    await Promise.all(killed);
    // the next calls, as a runtime's next ADD and DEL would be
    const store = await Store.open(dataDir, "net");
    await allocate(store, poolFromCidr("10.244.0.0/16")!, owner("next"), 0);
    await allocate(store, poolFromCidr("10.244.0.0/16")!, owner("gone"), 0);
    await store.release(owner("gone"));
    const left = fs.readdirSync(join(dataDir, "net")).filter((f) => f !== "last_reserved_ip.0" && f !== ".owners" && !parseAddr(f));
    assert.deepEqual(left, [], "only address records, last_reserved_ip.0 and the owner index are left");
    for (const f of fs.readdirSync(join(dataDir, "net")).filter((f) => parseAddr(f))) {
      assert.match(fs.readFileSync(join(dataDir, "net", f), "utf8"), /^k\d+-\d+\neth0$|^next\neth0$/, `record ${f} is complete`);
    }
  });

  it("12 processes allocating 4 addresses each at once never get the same address twice", async function () {
    this.timeout(60_000);
    const worker = new URL("../../helpers/ipam-alloc-worker.ts", import.meta.url).pathname;
    const outs = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        run(process.execPath, ["--import", "tsx", worker, dataDir, "net", "10.244.1.0/26", `p${i}`, "4"])),
    );
    const all = outs.flatMap((o) => JSON.parse(o.stdout) as string[]);
    assert.equal(all.length, 48);
    assert.equal(new Set(all).size, 48);
    assert.equal(files().filter((f) => /^\d/.test(f)).length, 48);
    assert.deepEqual(files().filter((f) => f.startsWith(".tmp-")), []);
  });
});
