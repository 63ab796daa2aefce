// `wasp daemon` on a one-node cluster in test namespaces (test/helpers/topology.ts): pods made by
// the wasp CNI plugin itself, real TCP and UDP servers in them, the daemon in the node namespace.
// What each connection really carried is reported by the servers (the peer address they saw) and
// the clients (their own address, the source of a UDP answer): the kernel is the referee.
import { strict as assert } from "node:assert";
import { statSync } from "node:fs";
import { inNs, ip } from "../helpers/netns.js";
import { askUntilCovered, assertStreamed, control, everyBackend, EXT_IP, NODE_IP, POD_CIDR, streamSha, Topology, waitFor, type DaemonProc, type Pod } from "../helpers/topology.js";

const GATEWAY = "10.244.1.1";
/** The masquerade address: wasp0's own (see src/daemon/node-net.ts). */
const MASQ = GATEWAY;

function config(mode: "tun" | "tap", extra: { services?: unknown[] } = {}) {
  return {
    mode,
    node: { name: "node-a", underlayIP: NODE_IP, podCIDR: POD_CIDR },
    serviceCIDR: "10.96.0.0/16",
    clusterCIDR: "10.244.0.0/16",
    services: extra.services ?? [],
  };
}


const rules = (ns: string) => ip(ns, "-4", "rule", "show");

// Both devices in both datapath modes: offload (the kernel carries each flow the engine decided)
// and full-wasm (every packet of a service flow through the engine).
for (const [mode, datapath] of [["tun", "offload"], ["tap", "offload"], ["tun", "wasm"], ["tap", "wasm"]] as const) {
const offload = datapath === "offload";
describe(`wasp daemon (${mode} mode, ${datapath}): a single node in test namespaces (integration, needs root)`, function () {
  this.timeout(120_000);
  let t: Topology;
  let daemon: DaemonProc;
  let client: Pod, b1: Pod, b2: Pod;
  let rulesBefore = "";
  /** The services the daemon starts with; a test that changes the config works on `services`. */
  let base: unknown[] = [];
  let services: unknown[] = [];
  /** n TCP connections from the client pod to the web ClusterIP. */
  const toWeb = (n: number) => t.requests(client.ns, Array.from({ length: n }, () => ({ host: "10.96.0.10", port: 80 })));
  const lateService = () => ({ name: "late", clusterIP: "10.96.0.40", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b1.ip }] });

  before(async () => {
    t = new Topology();
    client = await t.addPod("client");
    b1 = await t.addPod("b1");
    b2 = await t.addPod("b2");
    base = [
      {
        name: "web", clusterIP: "10.96.0.10",
        ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }, { name: "dns", port: 53, protocol: "UDP", targetPort: 5353 }],
        backends: [{ ip: b1.ip }, { ip: b2.ip }],
      },
      {
        name: "web-np", type: "NodePort", clusterIP: "10.96.0.11",
        ports: [{ port: 80, protocol: "TCP", targetPort: 8080, nodePort: 30080 }],
        backends: [{ ip: b1.ip }, { ip: b2.ip }],
      },
      { name: "sink", clusterIP: "10.96.0.50", ports: [{ port: 5201, protocol: "TCP" }], backends: [{ ip: b1.ip }] },
      {
        name: "ext", clusterIP: "10.96.0.12", externalIPs: ["192.0.2.10"],
        ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b1.ip }, { ip: b2.ip }],
      },
      { name: "self", clusterIP: "10.96.0.20", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: client.ip }] },
      {
        name: "empty", clusterIP: "10.96.0.30",
        ports: [{ name: "http", port: 80, protocol: "TCP" }, { name: "dns", port: 53, protocol: "UDP" }], backends: [],
      },
    ];
    services = [...base];
    t.writeConfig(config(mode, { services }));
    // The external namespace routes the externalIP to the node, as a router that announces it would.
    ip(t.ext, "route", "replace", "192.0.2.10/32", "via", NODE_IP);
    await t.serve(b1.ns, [8080], 5353);
    await t.serve(b2.ns, [8080], 5353);
    await t.serve(client.ns, [8080]);
    await t.sink(b1.ns, 5201);
    rulesBefore = rules(t.node);
    t.daemonArgs = ["--offload", offload ? "on" : "off"];
    daemon = await t.startDaemon();
  });

  after(async () => {
    await t?.destroy();
  });

  it(`builds the node picture: wasp0 up with the pod CIDR's first address /32, table 119, the local rule behind the ${offload ? "NodePort rules (no pod rule: pods reach wasp0 only for a service), the offload table" : "pod and NodePort rules"}`, async () => {
    const link = JSON.parse(ip(t.node, "-j", "addr", "show", "dev", "wasp0"))[0];
    assert.ok(link.flags.includes("UP"), JSON.stringify(link.flags));
    assert.deepEqual(link.addr_info.filter((a: any) => a.family === "inet").map((a: any) => `${a.local}/${a.prefixlen}`), [`${GATEWAY}/32`]);
    assert.match(ip(t.node, "-4", "route", "show", "table", "119"), /default (via 169\.254\.1\.1 )?dev wasp0/);
    assert.match(ip(t.node, "-4", "route", "show"), /10\.96\.0\.0\/16 (via 169\.254\.1\.1 )?dev wasp0/);
    const r = JSON.parse(ip(t.node, "-4", "-j", "rule", "show")) as Array<{ priority: number; table?: string; src?: string; iif?: string }>;
    assert.ok(!r.some((x) => x.priority === 0), `a rule at pref 0 is left: ${rules(t.node)}`);
    const at = (p: number) => r.filter((x) => x.priority === p);
    assert.equal(at(1000)[0]?.table, "local");
    if (offload) {
      assert.equal(at(100).length, 0, `no pod rule in offload mode: ${rules(t.node)}`);
      const table = inNs(t.node, "nft", "list", "table", "inet", "wasp");
      assert.match(table, /type nat hook prerouting/, "a nat chain registers the NAT hooks");
      assert.match(table, /ct mark 0x77617370 counter name "offloaded_in"/, "a conntrack rule counts offloaded flows");
      assert.match(table, /iifname "wasp0" oifname "wasp0" counter name "loop_dropped" drop/, "the loop guard");
    } else assert.equal(at(100)[0]?.table, "119");
    const status = await control(t.socketPath, { cmd: "status" });
    assert.equal(status.offload.on, offload, JSON.stringify(status.offload));
    assert.equal(at(90)[0]?.iif, "wasp0");
    assert.equal(at(110).length, 1);
    assert.equal(inNs(t.node, "cat", "/proc/sys/net/ipv4/ip_forward").trim(), "1");
  });

  it("pod -> ClusterIP TCP reaches a backend that sees the client pod's own IP (no SNAT); connections spread over both backends", async () => {
    // 24 connections, and more until both backends have answered (64 at most)
    const out = await askUntilCovered(await toWeb(24), everyBackend(b1.ip, b2.ip), toWeb);
    for (const o of out) {
      assert.ok(o.ok, JSON.stringify(o));
      assert.equal(o.seen!.remote, client.ip, "the backend sees the client's pod IP");
      assert.equal(o.local, client.ip);
    }
    const locals = new Set(out.map((o) => o.seen!.local));
    assert.deepEqual([...locals].sort(), [b1.ip, b2.ip].sort(), "both backends answered");
  });

  it("pod -> ClusterIP UDP: the answer comes from the VIP and the backend sees the client pod's IP", async () => {
    const out = await t.requests(client.ns, Array.from({ length: 12 }, () => ({ proto: "udp" as const, host: "10.96.0.10", port: 53 })));
    for (const o of out) {
      assert.ok(o.ok, JSON.stringify(o));
      assert.equal(o.from, "10.96.0.10", "the reply's source is the VIP");
      assert.equal(o.seen!.remote, client.ip);
      assert.equal(o.seen!.port, 5353);
    }
  });

  it("the control socket (mode 0600) answers status and services with per-entry counters", async () => {
    assert.equal(statSync(t.socketPath).mode & 0o777, 0o600);
    const s = await control(t.socketPath, { cmd: "status" });
    assert.equal(s.mode, mode);
    assert.equal(s.device, "wasp0");
    assert.ok(s.generation >= 1, `a table generation in force: ${s.generation}`);
    assert.ok(s.counters.verdicts.tun > 0, JSON.stringify(s.counters));
    const sv = await control(t.socketPath, { cmd: "services" });
    const web = sv.services.find((e: any) => e.key === "10.96.0.10:80/TCP");
    assert.ok(web, JSON.stringify(sv));
    assert.ok(web.newFlows >= 24, JSON.stringify(web));
    assert.deepEqual(web.backends.map((b: any) => b.addr).sort(), [b1.ip, b2.ip].sort());
    const bad = await control(t.socketPath, { cmd: "nope" });
    assert.match(bad.error, /unknown cmd/);
  });

  it("golden rule: pod -> pod without NAT (the receiver sees the sender's pod IP)", async () => {
    const o = await t.request(client.ns, { host: b1.ip, port: 8080 });
    assert.ok(o.ok, JSON.stringify(o));
    assert.equal(o.seen!.remote, client.ip);
    assert.equal(o.seen!.local, b1.ip);
  });

  it("golden rule: node -> pod without NAT, TCP and UDP (the pod sees the node's own source address)", async () => {
    // The pod's replies enter wasp0 by the pod rule; with early demux on, the kernel would tie them
    // to the node's socket and then refuse to forward them (the daemon turns it off).
    const [o, u] = await t.requests(t.node, [{ host: b2.ip, port: 8080 }, { proto: "udp", host: b2.ip, port: 5353 }]);
    assert.ok(o!.ok && u!.ok, JSON.stringify([o, u]));
    assert.equal(o!.seen!.remote, o!.local, "the pod sees the address the node sent from");
    assert.ok([GATEWAY, NODE_IP].includes(o!.local!), `node source ${o!.local}`);
    assert.equal(u!.from, b2.ip);
    assert.equal(u!.seen!.remote, u!.local);
  });

  it("golden rule: a pod sees itself with the IP others see", async () => {
    const self = await t.request(client.ns, { host: client.ip, port: 8080 });
    const other = await t.request(b1.ns, { host: client.ip, port: 8080 });
    assert.ok(self.ok && other.ok, JSON.stringify([self, other]));
    assert.equal(self.seen!.local, client.ip);
    assert.equal(other.seen!.local, client.ip);
    assert.equal(self.local, client.ip);
  });

  it("node -> ClusterIP: TCP and UDP reach a backend without SNAT; the UDP answer comes from the VIP", async () => {
    const out = await t.requests(t.node, [
      ...Array.from({ length: 6 }, () => ({ host: "10.96.0.10", port: 80 })),
      { proto: "udp" as const, host: "10.96.0.10", port: 53 },
    ]);
    for (const o of out) {
      assert.ok(o.ok, JSON.stringify(out));
      assert.equal(o.seen!.remote, o.local, "the backend sees the node's own source address");
    }
    assert.equal(out[6]!.from, "10.96.0.10");
  });

  it("NodePort from an external namespace: reaches a backend (masqueraded to wasp0's address); the reply comes from the node's address", async () => {
    const out = await t.requests(t.ext, Array.from({ length: 8 }, () => ({ host: NODE_IP, port: 30080 })));
    for (const o of out) {
      assert.ok(o.ok, JSON.stringify(out));
      assert.equal(o.local, EXT_IP);
      assert.equal(o.seen!.remote, MASQ, "external traffic is masqueraded (externalTrafficPolicy Cluster)");
      assert.ok([b1.ip, b2.ip].includes(o.seen!.local!), `a backend answered: ${JSON.stringify(o)}`);
    }
  });

  it("NodePort from a pod and from the node itself to the node's address", async () => {
    const fromPod = await t.request(client.ns, { host: NODE_IP, port: 30080 });
    assert.ok(fromPod.ok, JSON.stringify(fromPod));
    assert.equal(fromPod.seen!.remote, client.ip, "cluster traffic keeps its source");
    const fromNode = await t.request(t.node, { host: NODE_IP, port: 30080 });
    assert.ok(fromNode.ok, JSON.stringify(fromNode));
  });

  it("an externalIP from the external namespace (routed via the node): reaches a backend, masqueraded, answered from the externalIP", async () => {
    assert.match(ip(t.node, "-4", "route", "show", "192.0.2.10"), /dev wasp0/);
    const out = await t.requests(t.ext, Array.from({ length: 4 }, () => ({ host: "192.0.2.10", port: 80 })));
    for (const o of out) {
      assert.ok(o.ok, JSON.stringify(out));
      assert.equal(o.seen!.remote, MASQ);
      assert.ok([b1.ip, b2.ip].includes(o.seen!.local!), `a backend answered: ${JSON.stringify(o)}`);
    }
  });

  it("hairpin: a pod reaching itself through its own service gets there, seen from the masquerade address", async () => {
    const out = await t.requests(client.ns, Array.from({ length: 3 }, () => ({ host: "10.96.0.20", port: 80 })));
    for (const o of out) {
      assert.ok(o.ok, JSON.stringify(out));
      assert.equal(o.seen!.local, client.ip);
      assert.equal(o.seen!.remote, MASQ);
    }
  });

  it("a service without ready backends: TCP is refused at once (RST), UDP gets port unreachable", async () => {
    const [tcp, udp] = await t.requests(client.ns, [
      { host: "10.96.0.30", port: 80, timeoutMs: 3000 },
      { proto: "udp", host: "10.96.0.30", port: 53, timeoutMs: 3000 },
    ]);
    assert.equal(tcp!.error, "ECONNREFUSED", JSON.stringify(tcp));
    assert.equal(udp!.error, "ECONNREFUSED", JSON.stringify(udp));
  });

  it(offload ? "a 32 MiB TCP stream through a ClusterIP arrives intact, and only its first packet crosses the engine (the kernel carries the rest)"
    : "a 32 MiB TCP stream through a ClusterIP arrives intact, carried as GSO super-packets (vnet header)", async () => {
    const before = (await control(t.socketPath, { cmd: "status" })).counters.named;
    const bytes = 32 << 20;
    const r = await t.stream(client.ns, "10.96.0.50", 5201, bytes);
    assertStreamed(r, bytes, client.ip);
    const after = (await control(t.socketPath, { cmd: "status" })).counters.named;
    const packets = after.packets_in - before.packets_in, avg = (after.bytes_in - before.bytes_in) / packets;
    if (offload) {
      assert.ok(packets <= 3, `the engine saw ${packets} packets of a 32 MiB stream`);
      assert.equal(after.offloaded - before.offloaded, 1, "one flow handed to the kernel");
      return;
    }
    // Without TSO through the TUN no packet exceeds the 1450-byte pod MTU.
    assert.ok(avg > 1500, `${packets} packets averaging ${Math.round(avg)} B`);
  });

  it("malformed packets crafted with raw-socket from a pod are dropped and counted by reason; real traffic is unaffected", async () => {
    // The node's kernel forwards what has a valid IP header, so the damage is in the layers above:
    // a TCP header longer than the segment, a UDP length beyond the datagram, an ICMP error whose
    // quote is too short to hold an IP header. raw-socket with IPPROTO_RAW sends them as written.
    const rawSocket = new URL("../../node_modules/raw-socket", import.meta.url).pathname;
    const sender = `
      const raw = require(${JSON.stringify(rawSocket)});
      const [src, vip] = process.argv.slice(1);
      const ip4 = (s) => s.split(".").map(Number);
      function ipPacket(proto, body) {
        const b = Buffer.alloc(20 + body.length);
        b[0] = 0x45; b.writeUInt16BE(b.length, 2); b[8] = 64; b[9] = proto;
        Buffer.from(ip4(src)).copy(b, 12); Buffer.from(ip4(vip)).copy(b, 16);
        let s = 0; for (let i = 0; i < 20; i += 2) s += b.readUInt16BE(i);
        while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
        b.writeUInt16BE(~s & 0xffff, 10);
        body.copy(b, 20);
        return b;
      }
      const tcp = Buffer.alloc(20); tcp.writeUInt16BE(41000, 0); tcp.writeUInt16BE(80, 2); tcp[12] = 15 << 4; tcp[13] = 2;
      const udp = Buffer.alloc(12); udp.writeUInt16BE(41000, 0); udp.writeUInt16BE(53, 2); udp.writeUInt16BE(500, 4);
      const icmp = Buffer.alloc(18); icmp[0] = 3; icmp[1] = 3;
      const packets = [ipPacket(6, tcp), ipPacket(17, udp), ipPacket(1, icmp)];
      const s = raw.createSocket({ protocol: 255 });
      let n = 0;
      const next = () => {
        if (n === packets.length * 5) { s.close(); console.log("sent " + n); return; }
        const p = packets[n++ % packets.length];
        s.send(p, 0, p.length, vip, (e, bytes) => { if (e) { console.error(e.message); process.exit(1); } setImmediate(next); });
      };
      next();`;
    const before = (await control(t.socketPath, { cmd: "status" })).counters.drops;
    const out = inNs(client.ns, process.execPath, "-e", sender, client.ip, "10.96.0.10");
    assert.match(out, /sent 15/);
    let d = before;
    for (const end = Date.now() + 10_000; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
      d = (await control(t.socketPath, { cmd: "status" })).counters.drops;
      if (d.bad_l4_header - before.bad_l4_header >= 10 && d.bad_icmp_error - before.bad_icmp_error >= 5) break;
    }
    assert.ok(d.bad_l4_header - before.bad_l4_header >= 10, `bad_l4_header ${before.bad_l4_header} -> ${d.bad_l4_header}`);
    assert.ok(d.bad_icmp_error - before.bad_icmp_error >= 5, `bad_icmp_error ${before.bad_icmp_error} -> ${d.bad_icmp_error}`);
    const ok = await t.requests(client.ns, Array.from({ length: 4 }, () => ({ host: "10.96.0.10", port: 80 })));
    assert.ok(ok.every((o) => o.ok && o.seen!.remote === client.ip), JSON.stringify(ok));
    assert.equal(daemon.child.exitCode, null, "the daemon keeps running");
  });

  it("serves Prometheus metrics on 127.0.0.1 with packets by verdict, drops by reason, conntrack entries and the generation", async () => {
    const text = t.metrics(daemon);
    assert.match(text, /wasp_packets_total\{verdict="tun"\} [1-9]/);
    assert.match(text, /wasp_packets_dropped_total\{reason="no_backend"\} [1-9]/);
    assert.match(text, /wasp_conntrack_entries [1-9]/);
    assert.match(text, /wasp_table_generation [1-9]/);
    assert.match(text, /# TYPE wasp_reload_duration_seconds histogram/);
  });

  // Each reload test starts from the config it needs and the config the daemon started with is put
  // back after it, also when it fails: a failed reload does not leave the next test another config.
  describe("reloads", () => {
    const applied = () => daemon.lines().filter((l) => String(l.msg).startsWith("reload applied")).length;
    let first = "";
    before(async () => { first = await t.configInForce(); });
    afterEach(async () => {
      services = [...base];
      await t.restoreConfig(config(mode, { services }), first);
    });

    it("a valid reload (a service added) takes effect while traffic runs, without a failed connection", async () => {
      const gen0 = (await control(t.socketPath, { cmd: "status" })).generation as number;
      let loopDone = false;
      const traffic = t.request(client.ns, { host: "10.96.0.10", port: 80, loopMs: 4000 }).finally(() => { loopDone = true; });
      await new Promise((r) => setTimeout(r, 800));
      services.push(lateService());
      t.writeConfig(config(mode, { services }));
      await waitFor(() => daemon.lines().some((l) => String(l.msg).startsWith("reload applied")), "the reload");
      const duringTraffic = !loopDone;
      const late = await t.request(client.ns, { host: "10.96.0.40", port: 80 });
      assert.ok(late.ok, JSON.stringify(late));
      assert.equal(late.seen!.local, b1.ip);
      const loop = await traffic;
      assert.ok(duringTraffic, "the reload landed while the traffic loop ran");
      assert.ok(loop.ok && loop.count! > 0, JSON.stringify(loop));
      const s = await control(t.socketPath, { cmd: "status" });
      assert.ok(s.generation > gen0, `generation ${gen0} -> ${s.generation}`);
    });

    it("a reload that drops a backend, adds a peer node and a node address changes the engine, the routes and the NodePort rules in place", async () => {
      const n0 = applied();
      const changed = structuredClone(config(mode, { services })) as any;
      changed.services[0].backends = [{ ip: b1.ip }];
      changed.node.nodeAddresses = [NODE_IP, "10.99.0.9"];
      changed.nodes = [{ name: "node-b", underlayIP: "10.99.0.3", podCIDR: "10.244.2.0/24" }];
      t.writeConfig(changed);
      await waitFor(() => applied() > n0, "the reload");
      // the other node's pods: through the engine's overlay (wasp0), or the kernel's (waspvx) in offload mode
    assert.match(ip(t.node, "-4", "route", "show", "10.244.2.0/24"), offload ? /via 10\.244\.2\.0 dev waspvx onlink/ : /dev wasp0/);
      assert.match(rules(t.node), /^110:\s+from all to 10\.99\.0\.9 ipproto tcp dport 30000-32767 lookup 119/m);
      const out = await t.requests(client.ns, Array.from({ length: 8 }, () => ({ host: "10.96.0.10", port: 80 })));
      assert.ok(out.every((o) => o.ok && o.seen!.local === b1.ip), JSON.stringify(out.map((o) => o.seen?.local ?? o.error)));
      t.writeConfig(config(mode, { services }));
      await waitFor(() => applied() > n0 + 1, "the reload back");
      assert.equal(ip(t.node, "-4", "route", "show", "10.244.2.0/24").trim(), "");
      assert.doesNotMatch(rules(t.node), /10\.99\.0\.9/);
      const back = await askUntilCovered(await toWeb(16), everyBackend(b1.ip, b2.ip), toWeb);
      assert.deepEqual([...new Set(back.map((o) => o.seen?.local))].sort(), [b1.ip, b2.ip].sort());
    });

    describe("with the service added by a reload (10.96.0.40)", () => {
      beforeEach(async () => {
        const n = applied();
        services = [...base, lateService()];
        t.writeConfig(config(mode, { services }));
        await waitFor(() => applied() > n, "the reload adding 10.96.0.40");
      });

      it("an invalid reload is rejected naming the field, the tables stay and traffic continues", async () => {
        const gen = (await control(t.socketPath, { cmd: "status" })).generation as number;
        const bad = structuredClone(config(mode, { services })) as any;
        bad.services[0].ports[0].port = 70000;
        t.writeConfig(bad);
        await waitFor(() => daemon.lines().some((l) => String(l.msg).startsWith("reload rejected")), "the rejection");
        const line = daemon.lines().find((l) => String(l.msg).startsWith("reload rejected"))!;
        assert.equal(line.msg, `reload rejected (1 problem); still serving generation ${gen}`);
        assert.match(JSON.stringify(line.problems), /services\[0\]\.ports\[0\]\.port is 70000/);
        const out = await t.requests(client.ns, [{ host: "10.96.0.10", port: 80 }, { host: "10.96.0.40", port: 80 }]);
        assert.ok(out.every((o) => o.ok), JSON.stringify(out));
        assert.equal((await control(t.socketPath, { cmd: "status" })).generation, gen);
        // Valid on its own, but the engine took the service CIDR at start.
        const rejected = () => daemon.lines().filter((l) => String(l.msg).startsWith("reload rejected"));
        try {
          t.writeConfig({ ...config(mode, { services }), serviceCIDR: "10.96.0.0/15" });
          await waitFor(() => rejected().length > 1, "the second rejection");
          assert.match(JSON.stringify(rejected()[1]!.problems), /serviceCIDR is \\"10\.96\.0\.0\/15\\", was \\"10\.96\.0\.0\/16\\"; this setting takes a daemon restart/);
          assert.ok((await t.request(client.ns, { host: "10.96.0.10", port: 80 })).ok, "the ClusterIP still answers after the second rejection");
        } finally {
          t.writeConfig(config(mode, { services })); // valid again before the test ends
        }
      });

      it("a reload storm (20 writes in a row) ends in the last config, with traffic unharmed throughout", async () => {
        const traffic = t.request(client.ns, { host: "10.96.0.10", port: 80, loopMs: 3000 });
        const without = services.filter((x: any) => x.name !== "late");
        for (let i = 0; i < 20; i++) {
          t.writeConfig(config(mode, { services: i % 2 ? services : without }));
          await new Promise((r) => setTimeout(r, 15));
        }
        const storm = { name: "storm", clusterIP: "10.96.0.70", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b2.ip }] };
        services.push(storm);
        t.writeConfig(config(mode, { services }));
        let keys: string[] = [];
        for (let i = 0; i < 100 && !keys.includes("10.96.0.70:80/TCP"); i++) {
          keys = ((await control(t.socketPath, { cmd: "services" })).services as Array<{ key: string }>).map((e) => e.key);
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(keys.includes("10.96.0.70:80/TCP") && keys.includes("10.96.0.40:80/TCP"), keys.join(" "));
        const [a, b] = await t.requests(client.ns, [{ host: "10.96.0.70", port: 80 }, { host: "10.96.0.40", port: 80 }]);
        assert.equal(a!.seen?.local, b2.ip, JSON.stringify(a));
        assert.equal(b!.seen?.local, b1.ip, JSON.stringify(b));
        const loop = await traffic;
        assert.ok(loop.ok && loop.count! > 0, JSON.stringify(loop));
      });
    });
  });

  // These stop the daemon and start their own: whatever daemon a test leaves running is stopped
  // after it, also when it fails, so the next one starts on a node without a daemon.
  describe("the daemon's life", () => {
    afterEach(async () => { await t.stopProcess(daemon.child); });

    it("SIGTERM stops the daemon and leaves its datapath for the next one (wasp0 persistent, rules, routes); --cleanup then removes it all and restores the rules", async () => {
      await t.stopProcess(daemon.child, "SIGTERM");
      assert.equal(await daemon.exited, 0, daemon.log());
      assert.ok(daemon.lines().some((l) => String(l.msg).startsWith("the datapath stays for the next daemon")), daemon.log());
      assert.match(ip(t.node, "link", "show", "wasp0"), /wasp0/, "wasp0 outlives the daemon");
      assert.match(ip(t.node, "-4", "route", "show", "10.96.0.0/16"), /dev wasp0/, "its routes too: service traffic is dropped, not routed elsewhere");
      assert.notEqual(rules(t.node), rulesBefore, "the rules stay");
      await t.cleanupNode();
      assert.equal(rules(t.node), rulesBefore);
      assert.throws(() => ip(t.node, "link", "show", "wasp0"));
      assert.equal(ip(t.node, "-4", "route", "show", "table", "119").trim(), "");
      assert.throws(() => inNs(t.node, "nft", "list", "table", "inet", "wasp"), "no offload table");
    });

    describe("each with a daemon of its own", () => {
      // Run without the test before, the first daemon still serves: stopped first.
      beforeEach(async () => { await t.stopProcess(daemon.child); });

      it("after kill -9 the datapath stays as it was; a restart adopts it (the same rules, once each) and serves", async () => {
        const d1 = await t.startDaemon();
        const serving = rules(t.node);
        await t.stopProcess(d1.child, "SIGKILL");
        assert.equal(rules(t.node), serving, "nothing changed by the crash");
        assert.match(ip(t.node, "link", "show", "wasp0"), /wasp0/, "wasp0 outlives the daemon");
        const d2 = await t.startDaemon();
        daemon = d2;
        assert.equal(rules(t.node), serving, "adopted: the same rules, none twice");
        const o = await t.request(client.ns, { host: "10.96.0.10", port: 80 });
        assert.ok(o.ok, JSON.stringify(o));
        assert.equal(o.seen!.remote, client.ip);
      });

      // io_uring is the default where it works (this kernel: yes); the plain read/write path stays served.
      for (const [flag, uring] of [["--io-uring", true], ["--no-io-uring", false]] as const) {
        it(`with ${flag} the datapath serves pod -> ClusterIP TCP and UDP and a 32 MiB stream (status says ioUring ${uring})`, async () => {
          const d = await t.startDaemon([flag]);
          daemon = d;
          assert.equal((await control(t.socketPath, { cmd: "status" })).ioUring, uring);
          const out = await t.requests(client.ns, [
            ...Array.from({ length: 8 }, () => ({ host: "10.96.0.10", port: 80 })),
            { proto: "udp" as const, host: "10.96.0.10", port: 53 },
          ]);
          assert.ok(out.every((o) => o.ok && o.seen!.remote === client.ip), JSON.stringify(out));
          const r = await t.stream(client.ns, "10.96.0.50", 5201, 32 << 20);
          assert.equal(r.sha, streamSha(32 << 20), JSON.stringify(r));
          await t.stopProcess(d.child, "SIGTERM");
          assert.equal(await d.exited, 0, d.log());
        });
      }
    });
  });
});
}
