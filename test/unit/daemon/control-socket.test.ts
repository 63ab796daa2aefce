// The control socket's connection handling (src/daemon/control-socket.ts): a client that connects
// and says nothing is closed after the idle timeout, and a pile of such clients neither grows the
// daemon's open files past the cap nor keeps `wasp status` from being answered.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createConnection, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CONTROL_IDLE_MS, CONTROL_MAX_CONNECTIONS, serveControl } from "../../../src/daemon/control-socket.js";
import { request } from "../../../src/cli/client.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens `n` connections that never send a byte; resolves once each is connected (or refused). */
async function idleClients(path: string, n: number): Promise<Socket[]> {
  const socks: Socket[] = [];
  for (let i = 0; i < n; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => new Promise<void>((resolve) => {
      const c = createConnection(path);
      c.on("error", () => resolve());
      c.on("connect", () => resolve());
      socks.push(c);
    })));
  }
  return socks;
}

/** Number of the connections the server has closed (the client saw its end or a reset). */
function closedCount(socks: Socket[]): number {
  return socks.filter((s) => s.destroyed || s.readableEnded).length;
}

describe("control socket: idle timeout and connection cap", function () {
  this.timeout(60_000);
  let dir: string, server: Server | undefined;
  const socks: Socket[] = [];
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), "wasp-ctl-")); });
  afterEach(async () => {
    for (const s of socks.splice(0)) s.destroy();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("the README states the limits the code has (idle timeout, connection cap)", () => {
    const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8").replace(/\s+/g, " ");
    assert.ok(readme.includes(`A client has ${CONTROL_IDLE_MS / 1000} s to send its request`), `README names the ${CONTROL_IDLE_MS} ms idle timeout`);
    assert.ok(readme.includes(`at most ${CONTROL_MAX_CONNECTIONS} connections are open at once`), `README names the cap of ${CONTROL_MAX_CONNECTIONS}`);
  });

  it("a client that sends its request but never shuts its side is answered and then closed (it holds no connection)", async () => {
    const path = join(dir, "ctl.sock");
    server = await serveControl(path, () => ({ ok: true }), { idleMs: 5000 });
    const c = createConnection(path);
    socks.push(c);
    let text = "";
    c.setEncoding("utf8").on("data", (d: string) => { text += d; });
    const closed = new Promise<void>((r) => c.on("close", () => r()));
    c.write('{"cmd":"status"}\n');
    await Promise.race([closed, sleep(2000)]);
    assert.equal(text, '{"ok":true}\n');
    assert.ok(c.destroyed || c.readableEnded, "the server closed the connection after answering");
    const held = await new Promise<number>((r, j) => server!.getConnections((e, n) => (e ? j(e) : r(n))));
    assert.equal(held, 0, "no connection left open on the server");
  });

  it("closes a connection that sends no request within the idle timeout (200 ms here), and keeps one that does", async () => {
    const path = join(dir, "ctl.sock");
    server = await serveControl(path, () => ({ ok: true }), { idleMs: 200 });
    const [quiet] = await idleClients(path, 1);
    socks.push(quiet!);
    const closed = new Promise<number>((resolve) => { const t0 = Date.now(); quiet!.on("close", () => resolve(Date.now() - t0)); quiet!.resume(); });
    const ms = await Promise.race([closed, sleep(3000).then(() => -1)]);
    assert.ok(ms >= 150 && ms < 2000, `the quiet connection was closed after ${ms} ms (expected ~200 ms; -1: never)`);
    assert.deepEqual(await request(path, { cmd: "status" }), { ok: true }, "a client that asks at once is answered");
  });

  it("a slow handler is not cut off by the idle timeout: the answer still arrives after 600 ms with a 200 ms timeout", async () => {
    const path = join(dir, "ctl.sock");
    server = await serveControl(path, async () => { await sleep(600); return { ok: "late" }; }, { idleMs: 200 });
    assert.deepEqual(await request(path, { cmd: "status" }), { ok: "late" });
  });

  it("with 500 idle connections open, the server holds at most the cap and `status` is answered at once", async () => {
    const path = join(dir, "ctl.sock");
    server = await serveControl(path, () => ({ ok: true }), { maxConnections: 64 });
    socks.push(...await idleClients(path, 500));
    await sleep(200);
    const held = await new Promise<number>((r, j) => server!.getConnections((e, n) => (e ? j(e) : r(n))));
    assert.ok(held <= 64, `the server holds ${held} connections; the cap is 64`);
    const t0 = Date.now();
    assert.deepEqual(await request(path, { cmd: "status" }, 2000), { ok: true });
    assert.ok(Date.now() - t0 < 1000, `status answered in ${Date.now() - t0} ms`);
    assert.ok(closedCount(socks) >= 500 - 64, `${closedCount(socks)} of the 500 idle connections were closed by the server`);
  });

  it("a daemon limited to 256 open files (prlimit) still answers `status` while 1,000 idle clients hold connections", async function () {
    const path = join(dir, "ctl.sock");
    const helper = new URL("../../helpers/control-socket-server.ts", import.meta.url).pathname;
    const child = spawn("prlimit", ["--nofile=256:256", process.execPath, "--import", "tsx", helper, path], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on("data", (d: Buffer) => { if (d.toString().includes("ready")) resolve(); });
        child.on("exit", (c) => reject(new Error(`the control socket helper exited with ${c}`)));
      });
      socks.push(...await idleClients(path, 1000));
      await sleep(300);
      const answer = await request<{ ok: boolean; pid: number }>(path, { cmd: "status" }, 3000).catch((e: Error) => e);
      assert.ok(!(answer instanceof Error), `status was not answered: ${answer instanceof Error ? answer.message : ""}`);
      assert.equal(answer.pid, child.pid, "the answer comes from the limited process");
    } finally {
      child.kill("SIGKILL"); // by its PID: the helper we started
    }
  });
});
