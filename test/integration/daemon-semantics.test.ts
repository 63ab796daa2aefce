// kube-proxy's Service semantics with real traffic through the daemon (one node in test
// namespaces, a second node in the config whose endpoints are "elsewhere"). What kube-proxy does
// is the expectation: its iptables proxier drops traffic a Local policy leaves without a local
// endpoint, rejects traffic to services without endpoints, keeps the client address under
// externalTrafficPolicy Local, masquerades traffic from outside the cluster, falls back to
// serving-terminating endpoints, pins ClientIP affinity, clears stale UDP conntrack entries when an
// endpoint goes, and answers health checks on healthCheckNodePort with localEndpoints.
import { strict as assert } from "node:assert";
import { type ChildProcess } from "node:child_process";
import { inNs, spawnInNs, stop } from "../helpers/netns.js";
import { askUntilCovered, dropCounters, everyBackend, expectLocalOnly, NODE_IP, ServiceSuiteConfig, Topology, waitFor, type Outcome, type Pod } from "../helpers/topology.js";

const MASQ = "10.244.1.1";
const REMOTE = "10.244.2.10"; // an endpoint on node-b (config only: it never answers)


/** A UDP server answering each datagram with its own name (argv[2]). */
const TAGGED_UDP = `
const u = require("node:dgram").createSocket("udp4");
u.on("message", (m, r) => u.send(process.argv[2], r.port, r.address));
u.bind(Number(process.argv[1]), "0.0.0.0", () => console.error("ready"));`;

/** One UDP socket (one 5-tuple) asking every 100 ms; prints the name of each answer as it comes. */
const UDP_ASKER = `
const s = require("node:dgram").createSocket("udp4");
s.on("message", (m) => console.log(m.toString()));
s.connect(Number(process.argv[2]), process.argv[1], () => { setInterval(() => s.send("?"), 100); console.error("ready"); });`;

/** GET http://argv[1]/ → one JSON line {status, weight, body}. */
const HTTP_GET = `
fetch(process.argv[1]).then(async (r) => console.log(JSON.stringify({ status: r.status, weight: r.headers.get("x-load-balancing-endpoint-weight"), body: await r.json() })))
  .catch((e) => console.log(JSON.stringify({ error: String(e.cause?.code ?? e.message) })));`;

// In both datapath modes: offload (the kernel carries each flow the engine decided) and full-wasm.
for (const datapath of ["offload", "wasm"] as const) {
describe(`kube-proxy Service semantics through wasp daemon (${datapath}), with real traffic (integration, needs root)`, function () {
  this.timeout(120_000);
  let t: Topology;
  /** The services the daemon starts with: after each test, again. */
  let cfg: ServiceSuiteConfig;
  let client: Pod, b1: Pod, b2: Pod;
  const mine: ChildProcess[] = [];
  const apply = (change: () => void) => cfg.apply(change);
  const svc = (name: string) => cfg.svc(name);

  before(async () => {
    t = new Topology();
    cfg = new ServiceSuiteConfig(t);
    ({ client, b1, b2 } = await t.clientAndBackends(5353));
    cfg.services = [
      {
        name: "lb-local", type: "LoadBalancer", clusterIP: "10.96.0.10", externalTrafficPolicy: "Local", healthCheckNodePort: 32100,
        ports: [{ port: 80, protocol: "TCP", targetPort: 8080, nodePort: 30100 }],
        // kube-proxy counts an endpoint as local by its nodeName alone (an address in this node's pod CIDR is not enough)
        backends: [{ ip: b1.ip, nodeName: "node-a" }, { ip: REMOTE, nodeName: "node-b" }],
      },
      {
        name: "itp-local", clusterIP: "10.96.0.11", internalTrafficPolicy: "Local",
        ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }, { name: "dns", port: 53, protocol: "UDP", targetPort: 5353 }],
        backends: [{ ip: REMOTE, nodeName: "node-b" }],
      },
      {
        name: "terminating", clusterIP: "10.96.0.12", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }],
        backends: [{ ip: b1.ip, ready: false, serving: true, terminating: true }, { ip: b2.ip, ready: false }],
      },
      {
        name: "sticky", clusterIP: "10.96.0.13", sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
        ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b1.ip }, { ip: b2.ip }],
      },
      {
        name: "sticky-short", clusterIP: "10.96.0.17", sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 1 } },
        ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b1.ip }, { ip: b2.ip }],
      },
      { name: "udp-tag", clusterIP: "10.96.0.14", ports: [{ port: 7000, protocol: "UDP" }], backends: [{ ip: b1.ip }] },
      {
        name: "lb", type: "LoadBalancer", clusterIP: "10.96.0.16", loadBalancerIPs: ["198.51.100.10"],
        ports: [{ port: 80, protocol: "TCP", targetPort: 8080, nodePort: 30101 }], backends: [{ ip: b2.ip }],
      },
      { name: "plain", clusterIP: "10.96.0.15", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b1.ip }, { ip: b2.ip }] },
    ];
    await cfg.startDaemon(datapath, ["198.51.100.10"]);
  });

  // A test that changes a service or starts processes leaves neither behind, also when it fails:
  // the next test sees the config the daemon started with.
  afterEach(async () => {
    for (const c of mine.splice(0)) await stop(c);
    await cfg.reset();
  });

  after(async () => {
    await t?.destroy();
  });

  it("externalTrafficPolicy Local: NodePort traffic from outside reaches only this node's endpoint and keeps the client's address", async () => {
    await expectLocalOnly(t, 30100, b1.ip);
  });

  it("healthCheckNodePort answers 200 with localEndpoints 1 and kube-proxy's weight header; 503 with 0 once the local endpoint is not ready", async () => {
    const get = () => JSON.parse(inNs(t.ext, process.execPath, "-e", HTTP_GET, `http://${NODE_IP}:32100/healthz`).trim());
    const up = get();
    assert.equal(up.status, 200, JSON.stringify(up));
    assert.equal(up.weight, "1");
    assert.deepEqual(up.body, { service: { namespace: "default", name: "lb-local" }, localEndpoints: 1, serviceProxyHealthy: true });
    await apply(() => { svc("lb-local").backends[0].ready = false; });
    const down = get();
    assert.equal(down.status, 503, JSON.stringify(down));
    assert.deepEqual([down.weight, down.body.localEndpoints], ["0", 0]);
    await apply(() => { svc("lb-local").backends[0].ready = true; });
    assert.equal(get().status, 200);
  });

  it("internalTrafficPolicy Local with endpoints only on another node: a pod's TCP and UDP to the ClusterIP are dropped (no RST, no ICMP), counted as no_local_backend", async () => {
    const before = (await dropCounters(t)).no_local_backend ?? 0;
    const [tcp, udp] = await t.requests(client.ns, [
      { host: "10.96.0.11", port: 80, timeoutMs: 1500 }, { proto: "udp", host: "10.96.0.11", port: 53, timeoutMs: 1500 },
    ]);
    assert.equal(tcp!.error, "timeout", `TCP is dropped, not refused: ${JSON.stringify(tcp)}`);
    assert.equal(udp!.error, "timeout", `UDP is dropped, not answered with port unreachable: ${JSON.stringify(udp)}`);
    assert.ok(((await dropCounters(t)).no_local_backend ?? 0) > before, `no_local_backend counted the drops (was ${before})`);
  });

  it("with no ready endpoint the serving-terminating one takes new connections; once another is ready, new connections go there", async () => {
    const out = await t.requests(client.ns, Array.from({ length: 4 }, () => ({ host: "10.96.0.12", port: 80 })));
    for (const o of out) assert.equal(o.seen?.local, b1.ip, JSON.stringify(o));
    await apply(() => { svc("terminating").backends[1].ready = true; });
    const later = await t.requests(client.ns, Array.from({ length: 6 }, () => ({ host: "10.96.0.12", port: 80 })));
    for (const o of later) assert.equal(o.seen?.local, b2.ip, JSON.stringify(o));
  });

  it("sessionAffinity ClientIP: every connection from one client goes to one endpoint (without it, both are used)", async () => {
    const sticky = await t.requests(client.ns, Array.from({ length: 16 }, () => ({ host: "10.96.0.13", port: 80 })));
    assert.equal(new Set(sticky.map((o) => o.seen?.local)).size, 1, JSON.stringify(sticky.map((o) => o.seen?.local)));
    // without affinity: 16 connections, and more until both have answered (64 at most)
    const toPlain = (n: number) => t.requests(client.ns, Array.from({ length: n }, () => ({ host: "10.96.0.15", port: 80 })));
    const spread = await askUntilCovered(await toPlain(16), everyBackend(b1.ip, b2.ip), toPlain);
    assert.equal(new Set(spread.map((o) => o.seen?.local)).size, 2);
  });

  it("sessionAffinity's timeout: with timeoutSeconds 1, connections more than 2 s apart are free to change endpoint (both are used; with timeoutSeconds 60 one is: the test before)", async () => {
    const apart = async (n: number) => {
      const got: Outcome[] = [];
      for (let i = 0; i < n; i++) {
        got.push((await t.requests(client.ns, [{ host: "10.96.0.17", port: 80 }]))[0]!);
        await new Promise((r) => setTimeout(r, 2100));
      }
      return got;
    };
    // Each choice after an expiry is a fresh draw: 11 draws all land on one of two endpoints once in
    // 1024 runs, so it draws on, one at a time (24 in all at most), until both have answered.
    const draws = await askUntilCovered(await apart(11), everyBackend(b1.ip, b2.ip), apart, 24, 1);
    assert.deepEqual([...new Set(draws.map((o) => o.seen?.local ?? `error ${o.error}`))].sort(), [b1.ip, b2.ip].sort());
  });

  it("a UDP flow whose endpoint goes away moves to the remaining endpoint on the same 5-tuple (stale conntrack cleared)", async () => {
    for (const [pod, tag] of [[b1, "b1"], [b2, "b2"]] as const) {
      const c = spawnInNs(pod.ns, process.execPath, ["-e", TAGGED_UDP, "7000", tag]);
      mine.push(c);
      let err = "";
      c.stderr?.on("data", (d: Buffer) => { err += d.toString(); });
      await waitFor(() => err.includes("ready"), `tagged UDP server in ${tag}`);
    }
    const asker = spawnInNs(client.ns, process.execPath, ["-e", UDP_ASKER, "10.96.0.14", "7000"]);
    mine.push(asker);
    let answers = "";
    asker.stdout?.on("data", (d: Buffer) => { answers += d.toString(); });
    await waitFor(() => answers.split("\n").filter(Boolean).length >= 3, "answers from b1");
    assert.deepEqual([...new Set(answers.trim().split("\n"))], ["b1"]);
    await apply(() => { svc("udp-tag").backends = [{ ip: b2.ip }]; });
    const mark = answers.length;
    await waitFor(() => answers.slice(mark).split("\n").filter((l) => l === "b2").length >= 3, "answers from b2 on the same socket", 10000);
    const after = answers.slice(mark).trim().split("\n");
    // At most the datagrams in flight across the switch still come from b1.
    assert.equal(after.slice(-3).join(","), "b2,b2,b2");
  });

  it("a LoadBalancer ingress IP routed to the node reaches the endpoint, masqueraded under externalTrafficPolicy Cluster, answered from the ingress IP", async () => {
    const [o] = await t.requests(t.ext, [{ host: "198.51.100.10", port: 80 }]);
    assert.ok(o!.ok, JSON.stringify(o));
    assert.deepEqual([o!.seen?.local, o!.seen?.remote], [b2.ip, MASQ]);
    const [np] = await t.requests(t.ext, [{ host: NODE_IP, port: 30101 }]);
    assert.equal(np!.seen?.local, b2.ip, JSON.stringify(np));
  });

  it("masquerade where kube-proxy masquerades: outside client -> ClusterIP is SNATed to the node; pod -> ClusterIP is not", async () => {
    const [outside] = await t.requests(t.ext, [{ host: "10.96.0.15", port: 80 }]);
    assert.ok(outside!.ok, JSON.stringify(outside));
    assert.equal(outside!.seen?.remote, MASQ);
    const [inside] = await t.requests(client.ns, [{ host: "10.96.0.15", port: 80 }]);
    assert.equal(inside!.seen?.remote, client.ip);
  });
});
}
