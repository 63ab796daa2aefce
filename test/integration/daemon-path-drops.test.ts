// Packets lost outside the engine are counted: while the daemon is stopped (SIGSTOP) a pod floods a
// ClusterIP and another node floods the VXLAN port, so wasp0's queue and the underlay socket's
// receive buffer overflow in the kernel. The kernel's own tools are the referee: `ip -s link`
// (wasp0's tx dropped) and `ss -m` (the socket's drop count d). Full-wasm mode: every service
// packet of a pod crosses wasp0.
import { strict as assert } from "node:assert";
import { rmSync } from "node:fs";
import { inNs } from "../helpers/netns.js";
import { control, EXT_IP, Topology, type DaemonProc, type Pod } from "../helpers/topology.js";
import { Cli } from "../helpers/cli.js";

const VIP = "10.96.0.10", VXLAN_PORT = 8472;

/** Sends argv[3] UDP datagrams of 64 bytes to argv[1]:argv[2] as fast as the socket takes them. */
const FLOOD = `
const s = require("node:dgram").createSocket("udp4"), n = Number(process.argv[3]), msg = Buffer.alloc(64);
let sent = 0;
const more = () => {
  const end = Math.min(n, sent + 256);
  while (sent < end) { sent++; s.send(msg, Number(process.argv[2]), process.argv[1], sent === end ? (sent < n ? more : () => s.close()) : undefined); }
};
more();`;

describe("packets lost outside the engine are counted where the kernel lost them (integration, needs root)", function () {
  this.timeout(120_000);
  let t: Topology, daemon: DaemonProc, client: Pod, backend: Pod;

  before(async () => {
    t = new Topology();
    t.daemonArgs = ["--offload", "off"];
    client = await t.addPod("client");
    backend = await t.addPod("b1");
    t.writeConfig({
      node: { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" },
      serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16",
      // a second node makes the daemon open its VXLAN underlay socket
      nodes: [{ name: "node-b", underlayIP: EXT_IP, podCIDR: "10.244.2.0/24" }],
      services: [{ name: "dns", clusterIP: VIP, ports: [{ port: 53, protocol: "UDP", targetPort: 5353 }], backends: [{ ip: backend.ip }] }],
    });
    daemon = await t.startDaemon();
  });

  after(async () => { await t?.destroy(); });

  /** Floods while the daemon cannot read, then lets it go on. */
  async function floodWhileStopped(flood: () => void): Promise<void> {
    daemon.child.kill("SIGSTOP");
    try { flood(); } finally { daemon.child.kill("SIGCONT"); }
    // the meter reads the kernel once a second
    await new Promise((r) => setTimeout(r, 2500));
  }

  it("wasp0's queue overflows while the daemon does not read: wasp counters, status and metrics say tun_queue_full, as ip -s link counts it", async () => {
    const kernelTxDropped = () => (JSON.parse(inNs(t.node, "ip", "-s", "-j", "link", "show", "wasp0")) as Array<{ stats64: { tx: { dropped: number } } }>)[0]!.stats64.tx.dropped;
    const before = kernelTxDropped();
    await floodWhileStopped(() => inNs(client.ns, process.execPath, "-e", FLOOD, VIP, "53", "20000"));
    const kernel = kernelTxDropped();
    assert.ok(kernel - before > 1000, `the kernel dropped at wasp0's queue: ${before} -> ${kernel}`);
    const c = await control(t.socketPath, { cmd: "counters" });
    assert.equal(c.pathDrops.tun_queue_full, kernel, "wasp counts what the kernel counted");
    const s = await control(t.socketPath, { cmd: "status" });
    assert.equal(s.pathDrops.tun_queue_full, kernel);
    assert.match(t.metrics(daemon), new RegExp(`^wasp_path_dropped_total\\{place="tun_queue_full"\\} ${kernel}$`, "m"));
  });

  it("the underlay socket's receive buffer overflows while the daemon does not read: underlay_rcvbuf_full, as ss -m counts it", async () => {
    await floodWhileStopped(() => inNs(t.ext, process.execPath, "-e", FLOOD, "10.99.0.1", String(VXLAN_PORT), "60000"));
    // ss -uam: skmem:(...,d<drops>) of the socket bound to the VXLAN port
    const ss = inNs(t.node, "ss", "-uamn", "sport", `= :${VXLAN_PORT}`);
    const d = Number(/skmem:\([^)]*\bd(\d+)\)/.exec(ss)?.[1] ?? NaN);
    assert.ok(d > 1000, `the kernel dropped datagrams at the socket:\n${ss}`);
    const c = await control(t.socketPath, { cmd: "counters" });
    assert.equal(c.pathDrops.underlay_rcvbuf_full, d);
  });

  it("wasp counters prints the places where packets were lost, beside the engine's drop reasons", async () => {
    const wasp = await Cli.build();
    const r = await wasp.run(["counters", "--socket", t.socketPath], { ns: t.node });
    rmSync(wasp.dir, { recursive: true, force: true });
    assert.equal(r.status, 0, r.stderr);
    const text = r.stdout;
    assert.match(text, /LOST OUTSIDE THE ENGINE/);
    assert.match(text, /tun_queue_full +[1-9]/);
    assert.match(text, /underlay_rcvbuf_full +[1-9]/);
  });
});
