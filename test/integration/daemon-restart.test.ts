// A daemon that dies or is replaced under traffic (kill -9 and a restart; SIGTERM and the start of
// the next version): established connections through Services go on, a numbered UDP stream loses
// nothing, and a new connection while no daemon runs is dropped (never routed elsewhere, never
// reset) and served once the next daemon is up. Figures (UDP lost, time to serve) are printed.
import { strict as assert } from "node:assert";
import type { ChildProcess } from "node:child_process";
import { ip, stop } from "../helpers/netns.js";
import { control, Topology, type DaemonProc, type Pod } from "../helpers/topology.js";
import { startEcho, talk, udpStream, type TalkResult } from "../helpers/long-flows.js";

const ONE = "10.96.0.60", TWO = "10.96.0.61", UDP = "10.96.0.62", FRESH = "10.96.0.63";
const ECHO_TCP = 7000, ECHO_UDP = 7001;

// full-wasm mode keeps its flows across the restart through the flow journal (src/daemon/flow-journal.ts)
for (const datapath of ["offload", "wasm"] as const) {
  describe(`wasp daemon restarts under traffic (${datapath}; integration, needs root)`, function () {
    this.timeout(120_000);
    let t: Topology, client: Pod, b1: Pod, b2: Pod;
    let daemon: DaemonProc;
    const echoes: ChildProcess[] = [];

    before(async () => {
      t = new Topology();
      t.daemonArgs = ["--offload", datapath === "offload" ? "on" : "off"];
      client = await t.addPod("client");
      b1 = await t.addPod("b1");
      b2 = await t.addPod("b2");
      for (const b of [b1, b2]) { echoes.push(await startEcho(b.ns, [ECHO_TCP], ECHO_UDP)); await t.serve(b.ns, [8080]); }
      t.writeConfig({
        node: { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" },
        serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16",
        services: [
          { name: "one", clusterIP: ONE, ports: [{ port: ECHO_TCP, protocol: "TCP" }], backends: [{ ip: b1.ip }] },
          { name: "two", clusterIP: TWO, ports: [{ port: ECHO_TCP, protocol: "TCP" }], backends: [{ ip: b1.ip }, { ip: b2.ip }] },
          { name: "udp", clusterIP: UDP, ports: [{ port: ECHO_UDP, protocol: "UDP" }], backends: [{ ip: b1.ip }, { ip: b2.ip }] },
          { name: "fresh", clusterIP: FRESH, ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b1.ip }, { ip: b2.ip }] },
        ],
      });
      daemon = await t.startDaemon();
    });

    // the echo servers are this file's own: a process left running would keep mocha alive
    after(async () => { for (const c of echoes) await stop(c); await t?.destroy(); });

    /** Kills or stops the daemon while 4 conversations and a UDP stream run, keeps it down for
     *  downMs, starts the next one; returns what the flows saw and how long serving took. */
    async function across(signal: NodeJS.Signals, downMs: number) {
      const talks = [ONE, ONE, TWO, TWO].map((vip) => talk(client.ns, vip, ECHO_TCP, 50, 5000));
      const stream = udpStream(client.ns, UDP, ECHO_UDP, 20, 5000);
      await Promise.all([...talks.map((x) => x.started), stream.started]);
      await new Promise((r) => setTimeout(r, 1000));
      const stopped = Date.now();
      await t.stopProcess(daemon.child, signal);
      // while no daemon runs, a new connection gets no answer at all (dropped, not reset, not elsewhere)
      const meanwhile = await t.request(client.ns, { host: FRESH, port: 80, timeoutMs: Math.max(300, downMs - 200) });
      const started = Date.now();
      daemon = await t.startDaemon();
      const serving = Date.now();
      let served = 0;
      for (let i = 0; i < 200 && !served; i++) {
        const o = await t.request(client.ns, { host: FRESH, port: 80, timeoutMs: 1000 });
        if (o.ok) served = Date.now();
      }
      const [results, udp] = await Promise.all([Promise.all(talks.map((x) => x.done)), stream.done]);
      // the daemon's own count: its start() alone, and from its process's start (module loading
      // included: this bundle has no V8 code cache, dist/wasp-node has)
      const line = daemon.lines().find((l) => l.msg === "serving") ?? {};
      return { meanwhile, results, udp, startToServingMs: serving - started, startToServedMs: served ? served - started : -1, downMs: (served || Date.now()) - stopped,
        startMs: Number(line.startMs), sinceProcessStartMs: Number(line.sinceProcessStartMs) };
    }

    function assertKept(results: TalkResult[]): void {
      results.forEach((r, i) => {
        assert.equal(r.error, "", `conversation ${i} failed: ${JSON.stringify(r)}`);
        assert.ok(r.sent > 50, `conversation ${i} ran (${r.sent} lines)`);
        assert.equal(r.echoed, r.sent, `conversation ${i}: every line came back ${JSON.stringify(r)}`);
      });
    }

    for (const [signal, what] of [["SIGKILL", "kill -9 and a restart"], ["SIGTERM", "SIGTERM and the start of the next version"]] as const) {
      const udpKept = datapath === "offload" ? "the UDP stream loses nothing (the kernel carries it)" : "the UDP stream loses only what was sent while no daemon read";
      it(`${what}: 4 long TCP connections (1 and 2 backends) keep every line, ${udpKept}, a new connection meanwhile is dropped and then served`, async () => {
        const r = await across(signal, 1000);
        console.log(`      ${what}: UDP ${r.udp.lost}/${r.udp.sent} lost (down ${r.downMs} ms); daemon start to serving ${r.startToServingMs} ms (its process ${r.sinceProcessStartMs} ms, its start() ${r.startMs} ms), to a new connection served ${r.startToServedMs} ms; ` +
          `longest TCP gap ${Math.max(...r.results.map((x) => x.maxGapMs))} ms`);
        assertKept(r.results);
        // offload mode: the kernel carries the stream while no daemon runs; full-wasm: what was sent
        // while none read wasp0 is lost (20 ms apart), nothing after
        const allowed = datapath === "offload" ? 0 : Math.ceil(r.downMs / 20) + 5;
        assert.ok(r.udp.lost <= allowed, `UDP datagrams lost: ${JSON.stringify(r.udp)}, at most ${allowed} (down ${r.downMs} ms)`);
        assert.equal(r.udp.wrongSource, 0, "every UDP echo came from the VIP");
        assert.equal(r.meanwhile.ok, false, "no answer while no daemon ran");
        assert.equal(r.meanwhile.error, "timeout", `dropped, not refused or answered elsewhere: ${JSON.stringify(r.meanwhile)}`);
        assert.ok(r.startToServedMs > 0, "served again after the restart");
        if (datapath === "wasm") {
          const restored = daemon.lines().find((l) => String(l.msg).startsWith("restored "));
          assert.ok(restored && Number(restored.restored) >= 5, `the 4 conversations and the stream restored from the flow journal: ${JSON.stringify(restored)}`);
        }
        const s = await control(t.socketPath, { cmd: "status" });
        assert.equal(s.offload.on, datapath === "offload", "the mode it restarted in");
      });
    }
  });
}

describe("one daemon per node: a second one refuses before it touches anything (integration, needs root)", function () {
  this.timeout(60_000);
  let t: Topology, client: Pod, b1: Pod, daemon: DaemonProc;

  before(async () => {
    t = new Topology();
    client = await t.addPod("client");
    b1 = await t.addPod("b1");
    await t.serve(b1.ns, [8080]);
    t.writeConfig({
      node: { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" },
      serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16",
      services: [{ name: "web", clusterIP: "10.96.0.10", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b1.ip }] }],
    });
    daemon = await t.startDaemon();
  });

  after(async () => { await t?.destroy(); });

  it("a second `wasp daemon` (another control socket) exits 1 naming the running one's PID; the running one keeps serving with wasp0 and its rules untouched", async () => {
    const rules = ip(t.node, "-4", "rule", "show"), routes = ip(t.node, "-4", "route", "show");
    const second = await t.runDaemonOnce(["--socket", `${t.work}/second.sock`]);
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`another wasp daemon \\(pid ${daemon.child.pid}\\) runs in this network namespace`));
    assert.equal(ip(t.node, "-4", "rule", "show"), rules, "rules untouched");
    assert.equal(ip(t.node, "-4", "route", "show"), routes, "routes untouched");
    const o = await t.request(client.ns, { host: "10.96.0.10", port: 80 });
    assert.ok(o.ok, `the first daemon still serves: ${JSON.stringify(o)}`);
    assert.equal(daemon.child.exitCode, null, "the first daemon still runs");
  });

  it("`wasp daemon --cleanup` refuses too while a daemon runs", async () => {
    const c = await t.runDaemonOnce(["--cleanup"]);
    assert.equal(c.code, 1, c.stderr);
    assert.match(c.stderr, /another wasp daemon \(pid \d+\) runs/);
    assert.match(ip(t.node, "link", "show", "wasp0"), /wasp0/, "wasp0 still there");
  });
});
