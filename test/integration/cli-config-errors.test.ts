// What a person sees when a config is wrong: a daemon that cannot start prints its problems plainly on
// stderr, one per line (the structured log keeps them too), and a rejected reload shows in
// `wasp status` (how many, when, which generation stayed, why) and in the metrics, not only in the log.
import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cli } from "../helpers/cli.js";
import { inNs } from "../helpers/netns.js";
import { NODE_IP, POD_CIDR, Topology, waitFor, type DaemonProc } from "../helpers/topology.js";

const ROOT = new URL("../..", import.meta.url).pathname;

describe("config errors as a person sees them: a daemon that cannot start, a rejected reload (integration, needs root)", function () {
  this.timeout(90_000);
  let t: Topology, cli: Cli, daemon: DaemonProc;
  const good = {
    mode: "tun", node: { name: "node-a", underlayIP: NODE_IP, podCIDR: POD_CIDR }, serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16",
    services: [{ name: "web", clusterIP: "10.96.0.10", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [] }],
  };

  before(async () => {
    cli = await Cli.build();
    t = new Topology();
  });
  after(async () => {
    await t?.destroy();
    cli?.remove();
  });

  it("a config with two problems: the daemon exits 1 and prints them plainly on stderr, one per line, beside its JSON log line", async () => {
    const bad = join(t.work, "etc", "bad.yaml");
    writeFileSync(bad, `node:\n  name: node-a\n  underlayIP: ${NODE_IP}\n  podCIDR: ${POD_CIDR}\n  mut: 1400\nservices:\n  - name: web\n    ports: [{ port: 70000 }]\n`);
    const child = spawn("ip", ["netns", "exec", t.node, process.execPath, "--import", `file://${join(ROOT, "node_modules/tsx/dist/loader.mjs")}`,
      join(ROOT, "src/main.ts"), "daemon", "--config", bad, "--socket", join(t.work, "bad.sock"), "--metrics-port", "0", "--healthz-bind-address", ""], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => { err += d.toString(); });
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    assert.equal(code, 1, err);
    const lines = err.split("\n");
    const at = lines.indexOf("wasp daemon: cannot start: invalid config (2 problems):");
    assert.ok(at >= 0, err);
    assert.deepEqual(lines.slice(at + 1, at + 3).sort(), [
      `  ${bad}: node.mut is not a known setting (misspelt?)`, `  ${bad}: services[0].ports[0].port is 70000; a port is 1-65535`,
    ].sort(), err);
    const json = lines.map((l) => { try { return JSON.parse(l); } catch { return undefined; } }).find((l) => l?.msg === "cannot start");
    assert.match(json?.err ?? "", /^invalid config \(2 problems\):\n {2}/, "the structured log keeps the message");
  });

  it("a rejected reload shows in status (count, when, the generation kept, why) and in the metrics; the running tables stay", async () => {
    t.writeConfig(good);
    daemon = await t.startDaemon();
    const before = JSON.parse((await cli.run(["status", "--json", "--socket", t.socketPath])).stdout);
    assert.deepEqual(before.reloadsRejected, { count: 0 });
    t.writeConfig({ ...good, node: { ...good.node, underlayMtu: 1400 } });
    await waitFor(() => daemon.lines().some((l) => typeof l.msg === "string" && l.msg.startsWith("reload rejected")), "the reload to be rejected");
    const st = JSON.parse((await cli.run(["status", "--json", "--socket", t.socketPath])).stdout);
    assert.equal(st.reloadsRejected.count, 1);
    assert.equal(st.reloadsRejected.last.generation, before.generation, "the generation in force stays");
    assert.ok(Math.abs(Date.parse(st.reloadsRejected.last.at) - Date.now()) < 30_000, st.reloadsRejected.last.at);
    assert.deepEqual(st.reloadsRejected.last.problems, [`${t.configPath}: node.underlayMtu is not a known setting; did you mean underlayMTU?`]);
    assert.equal(st.generation, before.generation);
    const text = await cli.run(["status", "--socket", t.socketPath]);
    assert.match(text.stdout, /^reloads rejected: +1; the last at \S+, generation \d+ kept: .*node\.underlayMtu is not a known setting; did you mean underlayMTU\?$/m);
    const port = t.metricsPort(daemon);
    const metrics = inNs(t.node, process.execPath, "-e", `fetch("http://127.0.0.1:${port}/metrics").then((r) => r.text()).then((x) => process.stdout.write(x))`);
    assert.match(metrics, /^wasp_reload_rejected_total 1$/m);
    const at = Number(/^wasp_reload_last_rejected_timestamp_seconds (\S+)$/m.exec(metrics)?.[1]);
    assert.ok(Math.abs(at * 1000 - Date.parse(st.reloadsRejected.last.at)) < 1000, `timestamp ${at} vs ${st.reloadsRejected.last.at}`);
  });
});
