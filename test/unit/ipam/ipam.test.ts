import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  allocate, formatAddr, freeCount, parseAddr, parseCidr, PoolExhaustedError, poolFromCidr, Store,
} from "../../../src/ipam/index.js";

const run = promisify(execFile);
const owner = (id: string, ifname = "eth0") => ({ containerId: id, ifname });

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

  const files = (net = "net") => fs.readdirSync(join(dataDir, net)).sort();

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
  });

  it("breaks a lock older than 15 s even when its PID is alive again (PID reuse after a crash)", async () => {
    const store = await Store.open(dataDir, "net");
    await allocate(store, poolFromCidr("10.244.1.0/24")!, owner("x"), 0);
    const lock = join(dataDir, "net", "lock");
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

  it("reads host-local's records ('<id>\\r\\n<ifname>') as the same owner", async () => {
    const store = await Store.open(dataDir, "net");
    fs.writeFileSync(join(dataDir, "net", "10.244.1.9"), "hl-id\r\neth0");
    assert.deepEqual(await store.release(owner("hl-id")), ["10.244.1.9"]);
  });

  it("gc releases records of attachments not kept, unreadable records, and temp files of dead processes", async () => {
    const store = await Store.open(dataDir, "net");
    const pool = poolFromCidr("10.244.1.0/24")!;
    await allocate(store, pool, owner("keep"), 0);
    await allocate(store, pool, owner("drop"), 0);
    const dead = spawnSync("true").pid!; // exited: its PID is free
    fs.writeFileSync(join(dataDir, "net", "10.244.1.77"), ""); // a record with no owner
    fs.writeFileSync(join(dataDir, "net", `.tmp-${dead}-00000000`), "x\neth0");
    fs.writeFileSync(join(dataDir, "net", `.tmp-${process.pid}-00000000`), "x\neth0"); // a live process's
    const released = await store.gc((o) => o.containerId === "keep");
    assert.deepEqual(released.map((a) => a.ip).sort(), ["10.244.1.3", "10.244.1.77"]);
    assert.deepEqual(files(), [`.tmp-${process.pid}-00000000`, "10.244.1.2", "last_reserved_ip.0"]);
  });

  it("breaks a lock left by a killed process (its PID is gone) instead of waiting", async () => {
    const store = await Store.open(dataDir, "net");
    await allocate(store, poolFromCidr("10.244.1.0/24")!, owner("x"), 0);
    const dead = spawnSync("true").pid!;
    fs.writeFileSync(join(dataDir, "net", "lock"), String(dead));
    const t0 = Date.now();
    assert.deepEqual(await store.release(owner("x")), ["10.244.1.2"]);
    assert.ok(Date.now() - t0 < 1000, `the dead holder's lock broken at once, not waited out: ${Date.now() - t0} ms`);
    assert.equal(fs.existsSync(join(dataDir, "net", "lock")), false);
  });

  it("waits for a lock held by a live process and reports a retryable error after the timeout", async () => {
    const store = await Store.open(dataDir, "net");
    fs.writeFileSync(join(dataDir, "net", "lock"), String(process.pid));
    await assert.rejects(store.withLock(async () => 1, 150), (e: Error & { retryable?: boolean }) => e.retryable === true && /held by PID/.test(e.message));
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
