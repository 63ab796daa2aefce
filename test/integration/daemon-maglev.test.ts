// Maglev (loadBalancing.mode: maglev) is consistent hashing: a flow's backend is a function of its
// 5-tuple and the backend set, not of the conntrack table. The proof with real traffic: eight
// established TCP connections through a ClusterIP survive a daemon restart (conntrack gone, wasp0
// rebuilt) and keep talking to the backend they started with. With random selection each would
// have a one-in-two chance of landing on the other backend, which answers a stranger's segment
// with a reset.
import { strict as assert } from "node:assert";
import { spawn, type ChildProcess } from "node:child_process";
import { spawnInNs, stop } from "../helpers/netns.js";
import { NODE_IP, POD_CIDR, Topology, waitFor, type Pod } from "../helpers/topology.js";

/** A TCP server on argv[1] that answers every chunk with its name (argv[2]). */
const NAMED_ECHO = `
require("node:net").createServer((s) => { s.on("error", () => {}); s.on("data", () => s.write(process.argv[2] + "\\n")); })
  .listen(Number(process.argv[1]), "0.0.0.0", () => console.error("ready"));`;

/** Opens argv[3] connections to argv[1]:argv[2]; on each line of stdin ("ping") every connection
 *  sends one chunk; prints {i, name} or {i, error} lines as they come. */
const HOLDER = `
const net = require("node:net"), n = Number(process.argv[3]); const socks = [];
for (let i = 0; i < n; i++) {
  const s = net.connect(Number(process.argv[2]), process.argv[1]); socks.push(s);
  s.on("data", (d) => { for (const name of d.toString().trim().split("\\n")) console.log(JSON.stringify({ i, name })); });
  s.on("error", (e) => console.log(JSON.stringify({ i, error: e.code })));
  s.on("close", () => console.log(JSON.stringify({ i, error: "closed" })));
}
process.stdin.on("data", () => { for (const s of socks) if (!s.destroyed) s.write("ping"); });
console.error("ready");`;

describe("Maglev consistent hashing with real traffic: established connections keep their backend across a daemon restart (integration, needs root)", function () {
  this.timeout(180_000);
  let t: Topology;
  let client: Pod, b1: Pod, b2: Pod;
  const mine: ChildProcess[] = [];

  before(async () => {
    t = new Topology();
    client = await t.addPod("client");
    b1 = await t.addPod("b1");
    b2 = await t.addPod("b2");
    t.writeConfig({
      mode: "tun",
      node: { name: "node-a", underlayIP: NODE_IP, podCIDR: POD_CIDR },
      serviceCIDR: "10.96.0.0/16",
      clusterCIDR: "10.244.0.0/16",
      loadBalancing: { mode: "maglev" },
      services: [{ name: "echo", clusterIP: "10.96.0.10", ports: [{ port: 80, protocol: "TCP", targetPort: 7070 }], backends: [{ ip: b1.ip }, { ip: b2.ip }] }],
    });
    for (const [pod, name] of [[b1, "b1"], [b2, "b2"]] as const) {
      const c = spawnInNs(pod.ns, process.execPath, ["-e", NAMED_ECHO, "7070", name]);
      mine.push(c);
      let err = "";
      c.stderr?.on("data", (d: Buffer) => { err += d.toString(); });
      await waitFor(() => err.includes("ready"), `echo server in ${name}`);
    }
  });

  after(async () => {
    for (const c of mine) await stop(c);
    await t?.destroy();
  });

  it("eight connections answered by b1 or b2 before the restart are answered by the same backend after it, none reset", async () => {
    const d1 = await t.startDaemon();
    /** Opens the eight connections and has each answered once. */
    const hold = async () => {
      // spawnInNs gives the child no stdin; this one is driven through a pipe.
      const h = spawn("ip", ["netns", "exec", client.ns, process.execPath, "-e", HOLDER, "10.96.0.10", "80", "8"], { stdio: ["pipe", "pipe", "pipe"] });
      mine.push(h);
      let out = "", err = "";
      h.stdout.on("data", (d: Buffer) => { out += d.toString(); });
      h.stderr.on("data", (d: Buffer) => { err += d.toString(); });
      await waitFor(() => err.includes("ready"), "the connections");
      const lines = () => out.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { i: number; name?: string; error?: string });
      h.stdin.write("ping\n");
      await waitFor(() => lines().length >= 8, "the first answers");
      assert.equal(lines().filter((l) => l.error).length, 0, out);
      return { h, lines, before: new Map(lines().map((l) => [l.i, l.name])) };
    };
    // The hash spreads 5-tuples (their source ports are random) like a coin: all eight on one
    // backend happens once in 128 runs, so eight new connections are made (8 times at most) until
    // both backends hold some.
    let held = await hold();
    for (let tries = 1; tries < 8 && new Set(held.before.values()).size < 2; tries++) {
      await stop(held.h);
      held = await hold();
    }
    const { h, lines, before } = held;
    assert.equal(new Set(before.values()).size, 2, `both backends take connections: ${[...before.values()].join(" ")}`);

    await t.stopProcess(d1.child);
    const d2 = await t.startDaemon();
    const mark = lines().length;
    h.stdin.write("ping\n");
    // The first segments after the restart may need a retransmission while wasp0 comes back.
    await waitFor(() => lines().length >= mark + 8, "the answers after the restart", 30000);
    const after = lines().slice(mark);
    assert.equal(after.filter((l) => l.error).length, 0, `no connection reset or closed: ${JSON.stringify(after)}`);
    for (const l of after) assert.equal(l.name, before.get(l.i), `connection ${l.i} kept its backend`);
    await t.stopProcess(d2.child);
  });
});
