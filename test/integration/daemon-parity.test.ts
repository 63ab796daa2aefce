// What kube-proxy does that wasp now does too, with real traffic through the daemon (one node in
// test namespaces), in both datapath modes: topology-aware routing from the endpoints' zone hints
// (pkg/proxy/topology.go), loadBalancerSourceRanges (kube-proxy's firewall drops new connections from
// elsewhere), ping to service addresses answered (as under IPVS), endpoint locality by nodeName alone,
// and SCTP services. First from the file config, then from the API source (the fake apiserver): the
// zone from the Node's label, hints and nodeNames from EndpointSlices, the LoadBalancer IP from the
// Service's status. SCTP goes over raw sockets (test/helpers/sctp-raw.py): this kernel has no SCTP
// stack (CONFIG_IP_SCTP off: no socket, no module), but routes, tracks and NATs protocol 132, and
// the peers check the CRC32c themselves.
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ip, spawnInNs, stop } from "../helpers/netns.js";
import { endpointSlice, node, service, type FakeApiServerProcess } from "../helpers/fake-apiserver.js";
import { askUntilCovered, control, dropCounters, everyBackend, expectLocalOnly, EXT_IP, NODE_IP, POD_CIDR, ServiceSuiteConfig, Topology, waitFor, type Outcome, type Pod } from "../helpers/topology.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const SCTP_RAW = join(ROOT, "test/helpers/sctp-raw.py");
const LB = "198.51.100.41";
const LB_API = "198.51.100.51";

/** busybox ping from `ns`: whether an echo reply came back from `dst` (2 requests, 2 s each). */
function ping(ns: string, dst: string): { answered: boolean; out: string } {
  const r = spawnSync("ip", ["netns", "exec", ns, "busybox", "ping", "-c", "2", "-W", "2", dst], { encoding: "utf8", timeout: 15_000 });
  return { answered: r.status === 0 && new RegExp(`bytes from ${dst.replace(/\./g, "\\.")}`).test(r.stdout), out: `${r.stdout}${r.stderr}` };
}

/** An SCTP INIT from `ns` to host:port (raw sockets), and what came back. */
function sctpInit(ns: string, host: string, port: number, sport: number): { ok: boolean; src?: string; sport?: number; dport?: number; crc_ok?: boolean } {
  const r = spawnSync("ip", ["netns", "exec", ns, "python3", SCTP_RAW, "client", host, String(port), String(sport)], { encoding: "utf8", timeout: 15_000 });
  return JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}");
}

// In both datapath modes: offload (the kernel carries each flow the engine decided) and full-wasm.
for (const datapath of ["offload", "wasm"] as const) {
describe(`kube-proxy parity through wasp daemon (${datapath}): topology hints, source ranges, ping, locality, SCTP (integration, needs root)`, function () {
  this.timeout(180_000);
  let t: Topology;
  let cfg: ServiceSuiteConfig;
  let client: Pod, b1: Pod, b2: Pod;
  const apply = (change: () => void) => cfg.apply(change);
  const svc = (name: string) => cfg.svc(name);
  const asks = (ns: string, host: string, port: number) => (n: number) => t.requests(ns, Array.from({ length: n }, () => ({ host, port })));

  before(async () => {
    t = new Topology();
    cfg = new ServiceSuiteConfig(t);
    ({ client, b1, b2 } = await t.clientAndBackends());
    cfg.node = { zone: "zone-a" };
    cfg.services = [
      {
        name: "topo", clusterIP: "10.96.0.40", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }],
        backends: [
          { ip: b1.ip, nodeName: "node-a", hints: { forZones: ["zone-a"] } },
          { ip: b2.ip, nodeName: "node-a", hints: { forZones: ["zone-b"] } },
        ],
      },
      {
        name: "fw", type: "LoadBalancer", clusterIP: "10.96.0.41", loadBalancerIPs: [LB], loadBalancerSourceRanges: ["10.99.0.0/24"],
        ports: [{ port: 80, protocol: "TCP", targetPort: 8080, nodePort: 30141 }], backends: [{ ip: b1.ip, nodeName: "node-a" }],
      },
      {
        name: "local", type: "NodePort", clusterIP: "10.96.0.42", externalTrafficPolicy: "Local",
        ports: [{ port: 80, protocol: "TCP", targetPort: 8080, nodePort: 30142 }],
        // b1's address is in this node's pod CIDR, but without a nodeName kube-proxy does not count it local
        backends: [{ ip: b1.ip }, { ip: b2.ip, nodeName: "node-a" }],
      },
      {
        name: "sctp", clusterIP: "10.96.0.43", ports: [{ port: 9000, protocol: "SCTP", targetPort: 9900 }],
        backends: [{ ip: b1.ip, nodeName: "node-a" }],
      },
    ];
    await cfg.startDaemon(datapath, [LB]);
  });

  afterEach(() => cfg.reset());

  after(async () => {
    await t?.destroy();
  });

  it("topology hints: with every endpoint hinted, a pod's connections to the ClusterIP reach only the endpoint hinted for this node's zone (zone-a: b1; zone-b: b2)", async () => {
    const out = await asks(client.ns, "10.96.0.40", 80)(10);
    for (const o of out) assert.equal(o.seen?.local, b1.ip, `zone-a's endpoint: ${JSON.stringify(o)}`);
    await apply(() => { cfg.node.zone = "zone-b"; });
    const after = await asks(client.ns, "10.96.0.40", 80)(10);
    for (const o of after) assert.equal(o.seen?.local, b2.ip, `zone-b's endpoint: ${JSON.stringify(o)}`);
  });

  it("topology hints are all or nothing: one ready endpoint without a hint, and every endpoint takes connections", async () => {
    await apply(() => { delete svc("topo").backends[1].hints; });
    await askUntilCovered<Outcome>([], everyBackend(b1.ip, b2.ip), asks(client.ns, "10.96.0.40", 80));
  });

  it("node hints (PreferSameNode) come before zone hints: with both on every endpoint, connections reach only the endpoint hinted for node-a", async () => {
    await apply(() => {
      svc("topo").backends[0].hints = { forZones: ["zone-a"], forNodes: ["node-b"] };
      svc("topo").backends[1].hints = { forZones: ["zone-a"], forNodes: ["node-a"] };
    });
    for (const o of await asks(client.ns, "10.96.0.40", 80)(10)) assert.equal(o.seen?.local, b2.ip, `node-a's endpoint: ${JSON.stringify(o)}`);
  });

  it("loadBalancerSourceRanges: the external client inside 10.99.0.0/24 reaches the LoadBalancer IP; with the range 203.0.113.0/24 its connection is dropped (no RST: a timeout), counted as source_not_allowed, while the ClusterIP still serves pods", async () => {
    const ok = await t.request(t.ext, { host: LB, port: 80 });
    assert.ok(ok.ok, JSON.stringify(ok));
    assert.equal(ok.seen?.local, b1.ip);
    await apply(() => { svc("fw").loadBalancerSourceRanges = ["203.0.113.0/24"]; });
    const before = (await dropCounters(t)).source_not_allowed ?? 0;
    const denied = await t.request(t.ext, { host: LB, port: 80, timeoutMs: 2500 });
    assert.deepEqual([denied.ok, denied.error], [false, "timeout"], `dropped, not refused: ${JSON.stringify(denied)}`);
    assert.ok(((await dropCounters(t)).source_not_allowed ?? 0) > before, "counted as source_not_allowed");
    const inside = await t.request(client.ns, { host: "10.96.0.41", port: 80 });
    assert.ok(inside.ok, `the ClusterIP has no source ranges: ${JSON.stringify(inside)}`);
  });

  it("ping: a pod's echo request to a ClusterIP and an outside client's to a LoadBalancer IP are answered by the VIP; an address with no service is not", async () => {
    const c = ping(client.ns, "10.96.0.40");
    assert.ok(c.answered, c.out);
    const lb = ping(t.ext, LB);
    assert.ok(lb.answered, lb.out);
    const none = ping(client.ns, "10.96.0.99");
    assert.equal(none.answered, false, none.out);
  });

  it("endpoint locality by nodeName alone: externalTrafficPolicy Local sends outside clients only to the endpoint named for this node, never to one without a nodeName (though in this node's pod CIDR)", async () => {
    await expectLocalOnly(t, 30142, b2.ip);
  });

  it("SCTP: a pod's INIT to ClusterIP:9000 reaches the backend on 9900 with a good CRC32c, and the INIT ACK comes back from ClusterIP:9000 with a good CRC32c", async () => {
    const server = spawnInNs(b1.ns, "python3", [SCTP_RAW, "server", "9900"]);
    try {
      let seen = "";
      server.stdout?.on("data", (d: Buffer) => { seen += d.toString(); });
      await waitFor(() => seen.includes("ready"), "the SCTP server");
      const r = sctpInit(client.ns, "10.96.0.43", 9000, 40000);
      assert.deepEqual(r, { ok: true, src: "10.96.0.43", sport: 9000, dport: 40000, crc_ok: true }, `the answer, as the client saw it; server saw: ${seen}`);
      await waitFor(() => seen.includes("{"), "the server's line about the INIT", 5000);
      const got = JSON.parse(seen.split("\n").find((l) => l.startsWith("{")) ?? "{}");
      assert.deepEqual(got, { src: client.ip, sport: 40000, dst: b1.ip, dport: 9900, crc_ok: true }, "the INIT as the backend saw it");
    } finally {
      await stop(server);
    }
  });
});

describe(`kube-proxy parity through wasp daemon --kubeconfig (${datapath}): hints from EndpointSlices and the Node's zone label, source ranges and ping of a LoadBalancer IP from the Service's status, locality by nodeName (integration, needs root)`, function () {
  this.timeout(180_000);
  let t: Topology;
  let api: FakeApiServerProcess;
  let client: Pod, b1: Pod, b2: Pod;
  const http = [{ name: "http", port: 8080 }];
  const fw = (ranges: string[]) => service({
    name: "fw", type: "LoadBalancer", clusterIP: "10.96.0.51", ports: [{ name: "http", port: 80, targetPort: 8080, nodePort: 30151 }],
    loadBalancerIngress: [{ ip: LB_API }], loadBalancerSourceRanges: ranges,
  });
  type Entry = { key: string; backends: Array<{ addr: string; eligible: boolean }> };
  /** Waits until the engine's entry `key` takes new flows to exactly these backends (the API source
   *  settles asynchronously; the others stay listed, not eligible, for the flows they have). */
  async function backendsOf(key: string, ...ips: string[]): Promise<void> {
    const end = Date.now() + 20_000;
    for (let got = ""; got !== ips.join(","); await new Promise((r) => setTimeout(r, 100))) {
      const entries = (await control(t.socketPath, { cmd: "services" })).services as Entry[];
      got = entries.find((e) => e.key === key)?.backends.filter((b) => b.eligible).map((b) => b.addr).sort().join(",") ?? "no entry";
      if (Date.now() > end) throw new Error(`${key}: backends ${got}, expected ${ips.join(",")}`);
    }
  }
  /** Applies a change and waits for the table generation it makes. */
  async function applied(change: () => Promise<unknown>): Promise<void> {
    const gen = async () => (await control(t.socketPath, { cmd: "status" })).generation as number;
    const g0 = await gen();
    await change();
    for (const end = Date.now() + 20_000; (await gen()) === g0; await new Promise((r) => setTimeout(r, 50))) {
      if (Date.now() > end) throw new Error("no new table generation after the change");
    }
  }
  const hinted = (b2Hints: { forZones?: string[] }) => endpointSlice("topo-1", "topo", [
    { ip: b1.ip, nodeName: "node-a", forZones: ["zone-a"] }, { ip: b2.ip, nodeName: "node-a", ...b2Hints },
  ], http);

  before(async () => {
    t = new Topology();
    ({ client, b1, b2 } = await t.clientAndBackends());
    // a router in front of the cluster sends the LoadBalancer IP to the node
    ip(t.ext, "route", "replace", `${LB_API}/32`, "via", NODE_IP);
    let kubeconfig: string;
    ({ api, kubeconfig } = await t.startApiServer("parity-token"));
    await api.apply("Node", node("node-a", NODE_IP, POD_CIDR, { zone: "zone-a" }));
    await api.apply("Service", service({ name: "topo", clusterIP: "10.96.0.50", ports: [{ name: "http", port: 80, targetPort: 8080 }] }));
    await api.apply("EndpointSlice", hinted({ forZones: ["zone-b"] }));
    await api.apply("Service", fw(["10.99.0.0/24"]));
    await api.apply("EndpointSlice", endpointSlice("fw-1", "fw", [{ ip: b1.ip, nodeName: "node-a" }], http));
    await api.apply("Service", service({ name: "local", type: "NodePort", clusterIP: "10.96.0.52", externalTrafficPolicy: "Local", ports: [{ name: "http", port: 80, targetPort: 8080, nodePort: 30152 }] }));
    // b1 without a nodeName (its address is in this node's pod CIDR): not local for kube-proxy
    await api.apply("EndpointSlice", endpointSlice("local-1", "local", [{ ip: b1.ip }, { ip: b2.ip, nodeName: "node-a" }], http));
    t.daemonArgs = ["--offload", datapath === "offload" ? "on" : "off"];
    await t.startKubeDaemon(kubeconfig, "node-a");
    await backendsOf(`${LB_API}:80/TCP`, b1.ip);
  });

  after(async () => {
    await t?.destroy();
  });

  describe("topology hints", () => {
    beforeEach(async () => {
      await api.apply("Node", node("node-a", NODE_IP, POD_CIDR, { zone: "zone-a" }));
      await api.apply("EndpointSlice", hinted({ forZones: ["zone-b"] }));
      await backendsOf("10.96.0.50:80/TCP", b1.ip);
    });

    it("the Node labelled zone-a: connections to the ClusterIP reach only b1 (hinted zone-a); relabelled zone-b: only b2", async () => {
      for (const o of await t.requests(client.ns, Array.from({ length: 8 }, () => ({ host: "10.96.0.50", port: 80 })))) {
        assert.equal(o.seen?.local, b1.ip, `zone-a's endpoint: ${JSON.stringify(o)}`);
      }
      await api.apply("Node", node("node-a", NODE_IP, POD_CIDR, { zone: "zone-b" }));
      await backendsOf("10.96.0.50:80/TCP", b2.ip);
      for (const o of await t.requests(client.ns, Array.from({ length: 8 }, () => ({ host: "10.96.0.50", port: 80 })))) {
        assert.equal(o.seen?.local, b2.ip, `zone-b's endpoint: ${JSON.stringify(o)}`);
      }
    });

    it("a slice where one endpoint has no hint: every endpoint takes connections", async () => {
      await api.apply("EndpointSlice", hinted({}));
      await backendsOf("10.96.0.50:80/TCP", ...[b1.ip, b2.ip].sort());
      await askUntilCovered<Outcome>([], everyBackend(b1.ip, b2.ip), (n) => t.requests(client.ns, Array.from({ length: n }, () => ({ host: "10.96.0.50", port: 80 }))));
    });
  });

  it("loadBalancerSourceRanges from the Service: the external client in 10.99.0.0/24 reaches the LoadBalancer IP of the Service's status; with 203.0.113.0/24 its connection times out (dropped)", async () => {
    const ok = await t.request(t.ext, { host: LB_API, port: 80 });
    assert.ok(ok.ok, `inside the range: ${JSON.stringify(ok)}`);
    assert.equal(ok.seen?.local, b1.ip);
    try {
      await applied(() => api.apply("Service", fw(["203.0.113.0/24"])));
      const denied = await t.request(t.ext, { host: LB_API, port: 80, timeoutMs: 2500 });
      assert.deepEqual([denied.ok, denied.error], [false, "timeout"], `dropped, not refused: ${JSON.stringify(denied)}`);
    } finally {
      await applied(() => api.apply("Service", fw(["10.99.0.0/24"])));
    }
  });

  it("ping: the ClusterIP and the LoadBalancer IP from the Service's status answer echo requests", async () => {
    const c = ping(client.ns, "10.96.0.50");
    assert.ok(c.answered, c.out);
    const lb = ping(t.ext, LB_API);
    assert.ok(lb.answered, lb.out);
  });

  it("endpoint locality by the slice's nodeName: externalTrafficPolicy Local sends outside clients only to b2 (nodeName node-a), never to b1 (no nodeName)", async () => {
    for (const o of await t.requests(t.ext, Array.from({ length: 8 }, () => ({ host: NODE_IP, port: 30152 })))) {
      assert.ok(o.ok, JSON.stringify(o));
      assert.equal(o.seen?.local, b2.ip, "the nodeName endpoint only");
      assert.equal(o.seen?.remote, EXT_IP, "Local keeps the client's address");
    }
  });
});
}
