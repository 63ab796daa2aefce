// The engine's tables grow with the cluster (issue 16, "Tables grow with the cluster"), as an operator
// meets it, in both datapath modes: 30,000 services of 2 backends and 40 of 1,000 (100,000 backends)
// apply through the file source and through the API source (the fake apiserver) with no sizing
// option, and the last service serves; with a memory ceiling (tables.memoryMiB) that the load passes,
// the daemon serves what fits, says so in `wasp status`, its metrics and its log, keeps applying the
// changes that fit, and says so again once everything fits. Needs root.
import { strict as assert } from "node:assert";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { inNs, spawnInNs, stop } from "../helpers/netns.js";
import { Cli } from "../helpers/cli.js";
import { control, NODE_IP, POD_CIDR, Topology, waitFor, type DaemonProc, type Pod } from "../helpers/topology.js";
import { endpointSlice, node, service, startFakeApiProcess } from "../helpers/fake-apiserver.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const TSX = join(ROOT, "node_modules/tsx/dist/loader.mjs");

const SMALL = 30000, BIG = 40, BIG_BACKENDS = 1000;
const ip4 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
const SVC_BASE = (10 << 24) | (96 << 16), FILLER_BASE = (10 << 24) | (244 << 16) | (128 << 8);
/** Service i's cluster IP (10.96.0.10 on), and the backends of the services no one calls. */
const vipOf = (i: number) => ip4(SVC_BASE + 10 + i);
const filler = (n: number) => ip4(FILLER_BASE + (n % 30000));

interface Svc { name: string; vip: string; backends: string[] }
/** 30,000 services of 2 backends, the target (the real pods) last of them, then 40 of 1,000. */
function scaleServices(target: [string, string]): Svc[] {
  const out: Svc[] = [];
  for (let i = 0; i < SMALL - 1; i++) out.push({ name: `svc-${i}`, vip: vipOf(i), backends: [filler(2 * i), filler(2 * i + 1)] });
  out.push({ name: "target", vip: vipOf(SMALL - 1), backends: target });
  for (let j = 0; j < BIG; j++) out.push({ name: `big-${j}`, vip: vipOf(SMALL + j), backends: Array.from({ length: BIG_BACKENDS }, (_, k) => filler(j * BIG_BACKENDS + k)) });
  return out;
}
const backendCount = (s: Svc[]) => s.reduce((a, x) => a + x.backends.length, 0);

function fileConfig(services: Svc[], extra: Record<string, unknown> = {}): unknown {
  return {
    mode: "tun", node: { name: "node-a", underlayIP: NODE_IP, podCIDR: POD_CIDR }, serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16", ...extra,
    services: services.map((s) => ({ name: s.name, clusterIP: s.vip, ports: [{ port: 80, targetPort: 8080 }], backends: s.backends.map((ip) => ({ ip })) })),
  };
}

interface Status { services: number; generation: number; tables: { full: boolean; why?: string; waiting: { services: number }; memoryBytes: number; limitBytes?: number } }
const status = (t: Topology) => control(t.socketPath, { cmd: "status" }) as Promise<Status>;
async function until(t: Topology, what: string, ok: (s: Status) => boolean, timeoutMs = 90_000): Promise<Status> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(t).catch(() => undefined);
    if (s && ok(s)) return s;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A client pod and two backend pods serving TCP 8080. */
async function clientAndBackends(t: Topology): Promise<[Pod, Pod, Pod]> {
  const pods: [Pod, Pod, Pod] = [await t.addPod("client"), await t.addPod("b1"), await t.addPod("b2")];
  for (const b of pods.slice(1)) await t.serve(b.ns, [8080]);
  return pods;
}

/** The target's backend a TCP connection from the client reached. */
async function reached(t: Topology, client: Pod, vip: string): Promise<string> {
  const o = await t.request(client.ns, { host: vip, port: 80, timeoutMs: 3000 });
  assert.ok(o.ok, `a connection to ${vip}:80 is served (${o.error ?? ""})`);
  return o.seen?.local ?? "";
}

for (const datapath of ["offload", "wasm"] as const) {
  const args = ["--offload", datapath === "offload" ? "on" : "off"];

  describe(`wasp daemon (${datapath}): 30,000 services and 100,000 backends from a config file, no sizing option (integration, needs root)`, function () {
    this.timeout(300_000);
    let t: Topology, daemon: DaemonProc, client: Pod, b1: Pod, b2: Pod;
    before(async () => {
      t = new Topology();
      t.daemonArgs = args;
      [client, b1, b2] = await clientAndBackends(t);
      t.writeConfig(fileConfig([]));
      daemon = await t.startDaemon();
    });
    after(async () => { await t?.destroy(); });

    it("the whole set applies as one reload and the last service reaches its backends", async () => {
      const services = scaleServices([b1.ip, b2.ip]);
      assert.equal(backendCount(services), 100_000);
      t.writeConfig(fileConfig(services));
      const s = await until(t, "30,040 service entries", (x) => x.services === services.length);
      assert.equal(s.tables.full, false, s.tables.why);
      const seen = new Set<string>();
      for (let i = 0; i < 12 && seen.size < 2; i++) seen.add(await reached(t, client, vipOf(SMALL - 1)));
      assert.deepEqual([...seen].sort(), [b1.ip, b2.ip].sort(), "the target's two backends answer");
      assert.ok(!daemon.lines().some((l) => /reload rejected|Full/.test(String(l.msg))), "no reload was refused");
    });
  });

  describe(`wasp daemon --kubeconfig (${datapath}): 30,000 Services and 100,000 endpoints from the API, no sizing option (integration, needs root)`, function () {
    this.timeout(600_000);
    let t: Topology, client: Pod, b1: Pod, b2: Pod;
    let apiChild: ChildProcess | undefined, daemon: ChildProcess | undefined;
    let log = "";
    before(async () => {
      t = new Topology();
      [client, b1, b2] = await clientAndBackends(t);
      const kcPath = join(t.work, "kubeconfig");
      const api = await startFakeApiProcess(t.node, "tables-token", kcPath);
      apiChild = api.child;
      await api.apply("Node", node("node-a", NODE_IP, POD_CIDR));
      // every object in before the daemon lists them; 250 services' requests at a time, answered in order
      const services = scaleServices([b1.ip, b2.ip]);
      for (let i = 0; i < services.length; i += 250) {
        await Promise.all(services.slice(i, i + 250).flatMap((s) => [
          api.apply("Service", service({ name: s.name, clusterIP: s.vip, ports: [{ port: 80, targetPort: 8080 }] })),
          api.apply("EndpointSlice", endpointSlice(`${s.name}-x`, s.name, s.backends.map((ip) => ({ ip })), [{ port: 8080 }])),
        ]));
      }
      daemon = spawnInNs(t.node, process.execPath, [
        "--import", `file://${TSX}`, join(ROOT, "src/main.ts"), "daemon", "--kubeconfig", kcPath, "--hostname-override", "node-a",
        "--service-cidr", "10.96.0.0/16", "--cluster-cidr", "10.244.0.0/16", "--min-sync-period", "100ms",
        "--socket", t.socketPath, "--metrics-port", "0", ...args,
      ]);
      daemon.stdout?.on("data", (d: Buffer) => { log += d.toString(); });
      daemon.stderr?.on("data", (d: Buffer) => { log += d.toString(); });
      let gone = false;
      daemon.once("exit", () => { gone = true; });
      await waitFor(() => gone || log.includes('"msg":"serving"'), "the daemon to serve", 240_000);
      if (gone) throw new Error(`the daemon exited at start:\n${log.slice(-3000)}`);
    });
    after(async () => {
      if (daemon) await stop(daemon);
      if (apiChild) await stop(apiChild);
      await t?.destroy();
    });

    it("every Service applies and the last one reaches its endpoints", async () => {
      const s = await until(t, "30,040 service entries", (x) => x.services === SMALL + BIG, 240_000);
      assert.equal(s.tables.full, false, s.tables.why);
      const seen = new Set<string>();
      for (let i = 0; i < 12 && seen.size < 2; i++) seen.add(await reached(t, client, vipOf(SMALL - 1)));
      assert.deepEqual([...seen].sort(), [b1.ip, b2.ip].sort(), "the target's two endpoints answer");
      assert.ok(!/reload rejected|ServicesFull|BackendsFull/.test(log), "no change was refused");
    });
  });

  describe(`wasp daemon (${datapath}): past a memory ceiling (tables.memoryMiB 48) it serves what fits, says so, and keeps applying what fits (integration, needs root)`, function () {
    this.timeout(300_000);
    let t: Topology, daemon: DaemonProc, cli: Cli, client: Pod, b1: Pod, b2: Pod;
    const N = 20000;
    // the target first, so that it is among what fits
    const services = (target: string) => [{ name: "target", vip: vipOf(0), backends: [target] },
      ...Array.from({ length: N - 1 }, (_, i) => ({ name: `svc-${i + 1}`, vip: vipOf(i + 1), backends: [filler(2 * i), filler(2 * i + 1)] }))];
    before(async () => {
      cli = await Cli.build();
      t = new Topology();
      t.daemonArgs = args;
      [client, b1, b2] = await clientAndBackends(t);
      t.writeConfig(fileConfig([], { tables: { memoryMiB: 48 } }));
      daemon = await t.startDaemon();
    });
    after(async () => { await t?.destroy(); cli?.remove(); });

    it("a load past the ceiling: what fits serves, status, metrics and the log say the rest waits", async () => {
      t.writeConfig(fileConfig(services(b1.ip), { tables: { memoryMiB: 48 } }));
      const s = await until(t, "a full table", (x) => x.tables.full && x.services === N);
      assert.ok(s.tables.waiting.services > 0 && s.tables.waiting.services < N, `some entries wait (${s.tables.waiting.services})`);
      assert.ok(s.tables.memoryBytes <= 48 * 2 ** 20, `memory ${s.tables.memoryBytes} stays under the ceiling`);
      assert.equal(await reached(t, client, vipOf(0)), b1.ip, "the target, which fits, is served");
      const text = await cli.run(["status", "--socket", t.socketPath]);
      assert.match(text.stdout, /^tables:\s+.*of 48\.0 MiB; FULL: \d+ entries wait for room/m, `wasp status says the tables are full:\n${text.stdout}`);
      const port = t.metricsPort(daemon);
      const m = inNs(t.node, process.execPath, "-e", `fetch("http://127.0.0.1:${port}/metrics").then((r) => r.text()).then((x) => process.stdout.write(x))`);
      assert.match(m, /^wasp_tables_full 1$/m, "the metric says full");
      assert.match(m, new RegExp(`^wasp_tables_waiting_entries\\{table="services"\\} ${s.tables.waiting.services}$`, "m"), "the metric counts what waits");
      assert.match(m, /^wasp_engine_memory_limit_bytes 50331648$/m);
      const warn = daemon.lines().find((l) => /the engine's tables are full/.test(String(l.msg)));
      assert.ok(warn && warn.level === 40, "the log warns that the tables are full");
    });

    it("a later change that fits applies (the target moves to another backend) while the rest still waits", async () => {
      const before = (await status(t)).generation;
      t.writeConfig(fileConfig(services(b2.ip), { tables: { memoryMiB: 48 } }));
      await until(t, "the change", (x) => x.generation > before);
      assert.equal(await reached(t, client, vipOf(0)), b2.ip, "the change to the target is in force");
      assert.equal((await status(t)).tables.full, true);
    });

    it("once deletes make room, everything is in again and the log says so", async () => {
      t.writeConfig(fileConfig(services(b2.ip).slice(0, 2000), { tables: { memoryMiB: 48 } }));
      const s = await until(t, "room for everything", (x) => !x.tables.full && x.services === 2000);
      assert.equal(s.tables.waiting.services, 0);
      await waitFor(() => daemon.lines().some((l) => /hold everything they were given again/.test(String(l.msg))), "the log line");
      assert.equal(await reached(t, client, vipOf(0)), b2.ip);
    });
  });
}
