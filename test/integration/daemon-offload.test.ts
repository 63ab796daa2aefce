// Offload mode on a node in namespaces: the engine decides each new flow and the kernel carries it.
// The kernel is the referee here: its conntrack table (conntrack -L) holds the engine's binding
// under the mark "wasp", its counters count what it carried, and a path with a smaller MTU makes
// it send the ICMP error a client must get through the VIP. What only offload mode has is tested
// here; the Service semantics run in both modes in daemon-semantics, daemon-dualstack and daemon.
import { strict as assert } from "node:assert";
import { rmSync } from "node:fs";
import { inNs, ip } from "../helpers/netns.js";
import { control, Topology, type DaemonProc, type Pod } from "../helpers/topology.js";
import { Cli } from "../helpers/cli.js";

const VIP = "10.96.0.10", ONE = "10.96.0.11";

describe("offload mode: what the kernel carries for the engine (integration, needs root)", function () {
  this.timeout(120_000);
  let t: Topology, daemon: DaemonProc;
  let client: Pod, b1: Pod, b2: Pod;
  let wasp: Cli;
  /** `wasp ARGS --socket <the daemon's>` in the node namespace. */
  const cli = async (args: string[]) => {
    const r = await wasp.run([...args, "--socket", t.socketPath], { ns: t.node });
    assert.equal(r.status, 0, `wasp ${args.join(" ")}: ${r.stderr}`);
    return r;
  };

  before(async () => {
    wasp = await Cli.build();
    t = new Topology();
    t.daemonArgs = ["--offload", "on"];
    client = await t.addPod("client");
    b1 = await t.addPod("b1");
    b2 = await t.addPod("b2");
    t.writeConfig({
      node: { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" },
      serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16",
      services: [
        { name: "web", clusterIP: VIP, ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b1.ip }, { ip: b2.ip }] },
        { name: "one", clusterIP: ONE, ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }, { name: "sink", port: 5201, protocol: "TCP" }], backends: [{ ip: b1.ip }] },
      ],
    });
    await t.serve(b1.ns, [8080]);
    await t.serve(b2.ns, [8080]);
    await t.sink(b1.ns, 5201);
    daemon = await t.startDaemon();
  });

  after(async () => { await t?.destroy(); rmSync(wasp.dir, { recursive: true, force: true }); });

  it("a connection through a ClusterIP leaves a conntrack entry in the kernel with the engine's binding (client -> VIP, reply from the backend) and the mark 'wasp'", async () => {
    const o = await t.request(client.ns, { host: ONE, port: 80 });
    assert.ok(o.ok, JSON.stringify(o));
    const list = inNs(t.node, "conntrack", "-L", "-m", String(0x77617370));
    const line = list.split("\n").find((l) => l.includes(`dst=${ONE}`) && l.includes(`src=${client.ip}`));
    assert.ok(line, `a kernel entry for the flow:\n${list}`);
    assert.match(line, new RegExp(`src=${client.ip.replace(/\./g, "\\.")} dst=${ONE.replace(/\./g, "\\.")} sport=\\d+ dport=80 .*src=${b1.ip.replace(/\./g, "\\.")} dst=${client.ip.replace(/\./g, "\\.")} sport=8080`),
      "original tuple to the VIP, reply tuple from the backend (DNAT only: no masquerade for a pod)");
    assert.match(line, /\[ASSURED\]/, "the kernel saw it both ways");
  });

  it("wasp conntrack lists the kernel's offloaded flows beside the engine's decisions; status counts flows offloaded and what the kernel carried", async () => {
    const before = await control(t.socketPath, { cmd: "status" });
    await t.stream(client.ns, ONE, 5201, 4 << 20);
    const ct = JSON.parse((await cli(["conntrack", "--json", "--filter", "dport=5201"])).stdout);
    assert.ok(ct.kernel, "a kernel section in offload mode");
    assert.ok(ct.kernel.flows.some((f: any) => f.dst === ONE && f.backend === b1.ip && f.dnat), JSON.stringify(ct.kernel.flows));
    const s = await control(t.socketPath, { cmd: "status" });
    assert.equal(s.offload.on, true);
    assert.ok(s.counters.named.offloaded > before.counters.named.offloaded, "one more flow offloaded");
    const carried = (k: any) => k.offloaded_in.packets;
    assert.ok(carried(s.offload.kernel) - carried(before.offload.kernel) > 100, `the kernel carried the stream's packets: ${JSON.stringify(s.offload.kernel)}`);
    const text = (await cli(["status"])).stdout;
    assert.match(text, /datapath:\s+offload: the engine decides each new flow, the kernel's conntrack carries it/);
    const table = (await cli(["conntrack", "--filter", "dport=5201"])).stdout;
    assert.match(table, /Carried by the kernel/);
  });

  it("Prometheus metrics carry flows offloaded and the kernel's packets and bytes of them", async () => {
    const text = t.metrics(daemon);
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    assert.ok(value(/^wasp_offload_flows_total (\d+)/m) > 0, "wasp_offload_flows_total");
    assert.ok(value(/^wasp_offloaded_packets_total\{direction="in"\} (\d+)/m) > 0, "wasp_offloaded_packets_total in");
    assert.ok(value(/^wasp_offloaded_bytes_total\{direction="in"\} (\d+)/m) > 4 << 20, "the 4 MiB stream's bytes");
    assert.match(text, /^wasp_offload_failures_total 0$/m);
  });

  it("wasp trace says a new flow would be offloaded, and to which backend", async () => {
    const out = (await cli(["trace", "--from", client.ip, "--to", `${ONE}:80`])).stdout;
    assert.match(out, /offload\s+offloaded: the flow's NAT binding goes to the kernel's conntrack/);
    assert.match(out, new RegExp(`result: offloaded: the kernel carries this flow to ${b1.ip.replace(/\./g, "\\.")}:8080`));
  });

  it("PMTU through a VIP: the backend's link has MTU 1280, the kernel's frag-needed reaches the client translated (from the VIP), and an 8 MiB stream gets through", async () => {
    const dev = (JSON.parse(ip(t.node, "-j", "route", "get", b1.ip)) as Array<{ dev: string }>)[0]!.dev;
    ip(t.node, "link", "set", dev, "mtu", "1280");
    try {
      const r = await t.stream(client.ns, ONE, 5201, 8 << 20);
      assert.equal(r.n, 8 << 20, JSON.stringify(r));
      // the client's kernel learnt the path MTU for the VIP from an ICMP error that came from the VIP
      assert.match(ip(client.ns, "route", "get", ONE), /mtu 1280/);
    } finally {
      ip(t.node, "link", "set", dev, "mtu", "1450");
      try { inNs(client.ns, "ip", "route", "flush", "cache"); } catch { /* nothing cached */ }
    }
  });

  it("a packet the kernel does not translate (its NAT hooks gone) is not looped back into wasp0: the loop guard drops and counts it", async () => {
    const loops = () => Number(/"loop_dropped":\{"packets":(\d+)/.exec(JSON.stringify(inNsCounters()))?.[1] ?? 0);
    const inNsCounters = () => JSON.parse(inNs(t.node, "nft", "-j", "list", "counters", "table", "inet", "wasp")).nftables
      .filter((o: any) => o.counter).reduce((m: any, o: any) => ({ ...m, [o.counter.name]: { packets: o.counter.packets } }), {});
    const before = loops();
    inNs(t.node, "nft", "delete", "chain", "inet", "wasp", "nat_prerouting");
    inNs(t.node, "nft", "delete", "chain", "inet", "wasp", "nat_postrouting");
    try {
      const o = await t.request(client.ns, { host: VIP, port: 80, timeoutMs: 1500 });
      assert.equal(o.ok, false, "no NAT, no connection");
      assert.ok(loops() > before, `loop_dropped ${before} -> ${loops()}`);
      const s = await control(t.socketPath, { cmd: "status" });
      assert.ok(s.counters.named.packets_in < 200, `the engine saw ${s.counters.named.packets_in} packets in all: no loop through it`);
    } finally {
      // a daemon start puts the table back as it should be (ensureNodeNet); so does a restart
      await t.stopProcess(daemon.child);
      daemon = await t.startDaemon();
    }
    const again = await t.request(client.ns, { host: VIP, port: 80 });
    assert.ok(again.ok, `served again after the restart rebuilt the table: ${JSON.stringify(again)}`);
  });
});
