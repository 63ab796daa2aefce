// KubeConfigSource against the fake apiserver, driven through the real client library: a kubeconfig
// file, informers listing and watching, 410 Gone, dropped connections, bookmarks, bursts, bad objects.
import { strict as assert } from "node:assert";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Config, ConfigEvent, ServiceConfig } from "../../../src/config/index.js";
import { KubeConfigSource, loadKubeConfig, type KubeSourceOptions } from "../../../src/kube/index.js";
import { endpointSlice, FakeApiServer, node, service } from "../../helpers/fake-apiserver.js";

const NODE = "node-a";

async function waitFor<T>(what: string, f: () => T | undefined | false, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** One Kubernetes Service's internal entries by `ns/name port/proto`. */
function byPort(c: Config): Map<string, ServiceConfig> {
  const m = new Map<string, ServiceConfig>();
  for (const s of c.services) for (const p of s.ports) m.set(`${s.namespace}/${s.name} ${p.port}/${p.protocol}`, s);
  return m;
}

describe("kube source: the Kubernetes API as a config source (fake apiserver, real client)", function () {
  this.timeout(30_000);
  let api: FakeApiServer;
  let dir: string;
  let source: KubeConfigSource | undefined;
  let events: ConfigEvent[];
  const configs = () => events.filter((e): e is Extract<ConfigEvent, { kind: "config" }> => e.kind === "config");
  const last = () => configs().at(-1)?.config;

  function seed(): void {
    api.apply("Node", node(NODE, "192.168.50.1", "10.244.1.0/24", { externalIP: "198.51.100.1" }));
    api.apply("Node", node("node-b", "192.168.50.2", "10.244.2.0/24"));
    api.apply("Node", node("node-c", "192.168.50.3", undefined)); // no pod CIDR yet: not a peer yet
    api.apply("Service", service({ name: "web", clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "http" }, { name: "https", port: 443, targetPort: 8443 }] }));
    api.apply("EndpointSlice", endpointSlice("web-abc12", "web", [
      { ip: "10.244.1.10", nodeName: NODE },
      { ip: "10.244.2.11", nodeName: "node-b", ready: false, serving: true, terminating: true },
      { ip: "10.244.2.12", nodeName: "node-b", ready: false, serving: false, terminating: false },
    ], [{ name: "http", port: 8080 }, { name: "https", port: 8443 }]));
    api.apply("Service", service({ name: "dns", namespace: "kube-system", clusterIP: "10.96.0.53", ports: [{ name: "dns", port: 53, protocol: "UDP" }, { name: "dns-tcp", port: 53, protocol: "TCP" }] }));
    api.apply("EndpointSlice", endpointSlice("dns-x1", "dns", [{ ip: "10.244.2.20", nodeName: "node-b" }], [{ name: "dns", port: 53, protocol: "UDP" }, { name: "dns-tcp", port: 53, protocol: "TCP" }], { namespace: "kube-system" }));
    api.apply("Service", service({ name: "lb", type: "LoadBalancer", clusterIP: "10.96.0.80", ports: [{ port: 80, nodePort: 30080 }], externalIPs: ["203.0.113.7"],
      loadBalancerIngress: [{ ip: "203.0.113.80" }, { hostname: "lb.example.com" }, { ip: "203.0.113.81", ipMode: "Proxy" }],
      sessionAffinity: "ClientIP", affinityTimeoutSec: 60, externalTrafficPolicy: "Local" }));
    api.apply("EndpointSlice", endpointSlice("lb-1", "lb", [{ ip: "10.244.1.30", nodeName: NODE }], [{ port: 80 }]));
    api.apply("Service", service({ name: "headless", clusterIP: "None", ports: [{ port: 80 }] }));
    api.apply("Service", service({ name: "ext", type: "ExternalName", externalName: "db.example.com" }));
  }

  function startSource(extra: Partial<KubeSourceOptions> = {}): KubeConfigSource {
    const path = join(dir, "kubeconfig");
    writeFileSync(path, api.kubeconfig());
    source = new KubeConfigSource({
      kubeConfig: loadKubeConfig(path, {}), nodeName: NODE, minSyncPeriodMs: 50, backoffMs: { initial: 50, max: 400 },
      settings: { serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16" }, ...extra,
    });
    source.start((e) => events.push(e));
    return source;
  }

  beforeEach(async () => {
    api = new FakeApiServer("s3cret-token");
    await api.start();
    dir = mkdtempSync(join(tmpdir(), "wasp-kube-"));
    events = [];
  });
  afterEach(async () => {
    source?.close();
    source = undefined;
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the initial list gives the Config the objects describe (node, peers, every Service port with its endpoints)", async () => {
    seed();
    startSource();
    const c = await waitFor("the first config", last);
    assert.deepEqual(c.node, { name: NODE, underlayIP: "192.168.50.1", podCIDR: "10.244.1.0/24", underlayMTU: 1500, nodeAddresses: ["192.168.50.1", "198.51.100.1"], vtepMAC: "02:c0:a8:32:01:01" });
    assert.equal(c.serviceCIDR, "10.96.0.0/16");
    assert.deepEqual(c.nodes, [{ name: "node-b", underlayIP: "192.168.50.2", podCIDR: "10.244.2.0/24" }], "node-c has no pod CIDR yet, this node is not its own peer");
    const m = byPort(c);
    assert.deepEqual([...m.keys()].sort(), ["default/lb 80/TCP", "default/web 443/TCP", "default/web 80/TCP", "kube-system/dns 53/TCP", "kube-system/dns 53/UDP"]);
    // The named targetPort "http" resolves through the slice port named http: 8080.
    const http = m.get("default/web 80/TCP");
    assert.deepEqual(http?.ports, [{ name: "http", port: 80, protocol: "TCP" }]);
    assert.deepEqual(http?.backends, [
      { ip: "10.244.1.10", port: 8080, ready: true, serving: true, terminating: false, nodeName: NODE },
      { ip: "10.244.2.11", port: 8080, ready: false, serving: true, terminating: true, nodeName: "node-b" },
      { ip: "10.244.2.12", port: 8080, ready: false, serving: false, terminating: false, nodeName: "node-b" },
    ]);
    assert.deepEqual(m.get("default/web 443/TCP")?.backends.map((b) => `${b.ip}:${b.port}`), ["10.244.1.10:8443", "10.244.2.11:8443", "10.244.2.12:8443"]);
    assert.deepEqual(m.get("kube-system/dns 53/UDP")?.backends.map((b) => `${b.ip}:${b.port}`), ["10.244.2.20:53"]);
    const lb = m.get("default/lb 80/TCP") as ServiceConfig;
    assert.equal(lb.type, "LoadBalancer");
    assert.deepEqual(lb.ports, [{ port: 80, protocol: "TCP", nodePort: 30080 }]);
    assert.deepEqual(lb.loadBalancerIPs, ["203.0.113.80"], "hostname-only and ipMode Proxy ingresses are not programmed");
    assert.deepEqual(lb.externalIPs, ["203.0.113.7"]);
    assert.equal(lb.sessionAffinity, "ClientIP");
    assert.equal(lb.affinityTimeoutSec, 60);
    assert.equal(lb.externalTrafficPolicy, "Local");
    const ignored = c.services.filter((s) => s.ignored).map((s) => s.name).sort();
    assert.deepEqual(ignored, ["ext", "headless"], "headless and ExternalName services programme nothing");
    assert.ok(api.requests.includes("list services") && api.requests.includes("list endpointslices") && api.requests.includes("list nodes"), `services, endpointslices and nodes listed: ${api.requests.join(", ")}`);
    assert.ok(!api.requests.includes("401"), "the kubeconfig's bearer token reached the server");
    await waitFor("watches that ask for bookmarks", () => api.requests.some((r) => /^watch services rv=\d+ bookmarks$/.test(r)));
  });

  it("watch events update the Config: endpoints change, a Service appears, a Service is deleted, a Node gets its pod CIDR", async () => {
    seed();
    startSource();
    await waitFor("the first config", last);
    const n0 = configs().length;
    api.apply("EndpointSlice", endpointSlice("web-abc12", "web", [{ ip: "10.244.1.10", nodeName: NODE }, { ip: "10.244.1.11", nodeName: NODE }], [{ name: "http", port: 8080 }, { name: "https", port: 8443 }]));
    await waitFor("two web backends", () => byPort(last() as Config).get("default/web 80/TCP")?.backends.length === 2);
    api.apply("Service", service({ name: "api", clusterIP: "10.96.0.20", ports: [{ port: 8000 }] }));
    api.apply("EndpointSlice", endpointSlice("api-1", "api", [{ ip: "10.244.2.40" }], [{ port: 9000 }]));
    await waitFor("the new service", () => byPort(last() as Config).get("default/api 8000/TCP")?.backends[0]?.port === 9000);
    api.remove("Service", "web", "default");
    await waitFor("web gone", () => !byPort(last() as Config).has("default/web 80/TCP"));
    api.apply("Node", node("node-c", "192.168.50.3", "10.244.3.0/24"));
    await waitFor("node-c as a peer", () => (last() as Config).nodes.some((n) => n.name === "node-c" && n.podCIDR === "10.244.3.0/24"));
    api.remove("Node", "node-b");
    await waitFor("node-b gone", () => !(last() as Config).nodes.some((n) => n.name === "node-b"));
    assert.ok(configs().length > n0, `configs after the first: ${configs().length - n0}`);
    assert.equal(api.requests.filter((r) => r === "list services").length, 1, "no re-list: the watch carried every change");
  });

  it("a burst of 500 changes becomes at most 3 configs (minSyncPeriod coalescing), and the last holds all 500", async () => {
    seed();
    startSource({ minSyncPeriodMs: 300 });
    await waitFor("the first config", last);
    const n0 = configs().length;
    for (let i = 0; i < 250; i++) {
      api.apply("Service", service({ name: `burst-${i}`, clusterIP: `10.96.${10 + (i >> 8)}.${i & 255}`, ports: [{ port: 80 }] }));
      api.apply("EndpointSlice", endpointSlice(`burst-${i}-x`, `burst-${i}`, [{ ip: `10.244.2.${i}` }], [{ port: 8080 }]));
    }
    await waitFor("all 250 services with their endpoints", () => {
      const m = byPort(last() as Config);
      for (let i = 0; i < 250; i++) if (m.get(`default/burst-${i} 80/TCP`)?.backends.length !== 1) return false;
      return true;
    });
    await new Promise((r) => setTimeout(r, 700)); // any straggler config would come within two periods
    const n = configs().length - n0;
    assert.ok(n >= 1 && n <= 3, `500 changes gave ${n} configs`);
  });

  it("a 410 Gone watch ERROR (compacted resourceVersion) makes the informer re-list, and the state converges", async () => {
    seed();
    startSource();
    await waitFor("the first config", last);
    await waitFor("open watches", () => api.openWatches === 3);
    const lists = api.requests.filter((r) => r === "list services").length;
    api.expireWatches(); // ERROR {code: 410, reason: Expired} to each watch, history compacted
    api.apply("Service", service({ name: "after-gone", clusterIP: "10.96.0.99", ports: [{ port: 80 }] }));
    api.remove("Service", "dns", "kube-system");
    await waitFor("the change made after the 410", () => {
      const m = byPort(last() as Config);
      return m.has("default/after-gone 80/TCP") && !m.has("kube-system/dns 53/UDP");
    });
    assert.equal(api.requests.filter((r) => r === "list services").length, lists + 1, "exactly one re-list of services");
    assert.ok(byPort(last() as Config).has("default/web 80/TCP"), "objects unchanged across the re-list stay");
  });

  it("a watch from a compacted resourceVersion after a reconnect gets 410 and re-lists too", async () => {
    seed();
    startSource();
    await waitFor("the first config", last);
    await waitFor("open watches", () => api.openWatches === 3);
    api.dropConnections();
    api.apply("Service", service({ name: "while-away", clusterIP: "10.96.0.98", ports: [{ port: 80 }] }));
    api.compact(); // the reconnecting watch's resourceVersion is now too old
    await waitFor("the change made while disconnected", () => byPort(last() as Config).has("default/while-away 80/TCP"));
    assert.ok(api.requests.filter((r) => r === "list services").length >= 2, "services re-listed");
  });

  it("a dropped connection reconnects and resumes the watch from the last resourceVersion, without a re-list", async () => {
    seed();
    // the slices' watch resumes from the list's resourceVersion: no slice changed since (the source's
    // patch of its own Node's annotations is a later Node event)
    const rv = api.resourceVersion;
    startSource();
    await waitFor("the first config", last);
    await waitFor("open watches", () => api.openWatches === 3);
    api.dropConnections();
    api.apply("EndpointSlice", endpointSlice("lb-1", "lb", [{ ip: "10.244.1.31", nodeName: NODE }], [{ port: 80 }]));
    await waitFor("the change made after the drop", () => byPort(last() as Config).get("default/lb 80/TCP")?.backends[0]?.ip === "10.244.1.31");
    assert.equal(api.requests.filter((r) => r === "list endpointslices").length, 1, "no re-list after a plain disconnect");
    assert.ok(api.requests.includes(`watch endpointslices rv=${rv} bookmarks`), `re-watched from rv ${rv}: ${api.requests.join(", ")}`);
  });

  it("a BOOKMARK moves the resourceVersion a reconnecting watch resumes from", async () => {
    seed();
    startSource();
    await waitFor("the first config", last);
    await waitFor("open watches", () => api.openWatches === 3);
    for (let i = 0; i < 5; i++) api.apply("Node", node(`node-x${i}`, `192.168.51.${i}`, `10.244.${100 + i}.0/24`)); // moves the shared RV past every service event
    const rv = api.resourceVersion;
    api.bookmark();
    await new Promise((r) => setTimeout(r, 200));
    api.dropConnections();
    await waitFor(`services re-watched from the bookmark's rv ${rv}`, () => api.requests.includes(`watch services rv=${rv} bookmarks`));
  });

  it("a failing list (HTTP 500) is retried with backoff until it succeeds", async () => {
    seed();
    api.failLists.Service = 3;
    startSource();
    const c = await waitFor("the first config", last);
    assert.ok(byPort(c).has("default/web 80/TCP"), "default/web 80/TCP in the config");
    assert.equal(api.requests.filter((r) => r === "list services").length, 4, "three failures, then success");
    assert.ok((source as KubeConfigSource).stats.watchErrors >= 3, `3 or more failed lists counted: ${(source as KubeConfigSource).stats.watchErrors}`);
  });

  it("a malformed Service is rejected with a message naming it, and its last good version stays in force", async () => {
    seed();
    startSource();
    await waitFor("the first config", last);
    const bad = service({ name: "web", clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80 }, { name: "https", port: 443 }] });
    ((bad["spec"] as { ports: Array<{ port: unknown }> }).ports[1] as { port: unknown }).port = 70000;
    api.apply("Service", bad);
    const rej = await waitFor("a rejection", () => events.find((e) => e.kind === "rejected"));
    assert.ok(rej.kind === "rejected", JSON.stringify(rej));
    assert.deepEqual(rej.problems, [{ path: "Service default/web spec.ports[1].port", message: "is 70000; a port is 1-65535 (its last good version stays in force)" }]);
    const outside = service({ name: "other", clusterIP: "10.97.0.1", ports: [{ port: 80 }] });
    api.apply("Service", outside);
    await waitFor("a second rejection", () => events.filter((e) => e.kind === "rejected").length === 2);
    const second = events.filter((e) => e.kind === "rejected")[1];
    assert.match(JSON.stringify(second), /Service default\/other spec\.clusterIP.*outside the service CIDR 10\.96\.0\.0\/16/);
    const sliceBad = endpointSlice("dns-x1", "dns", [{ ip: "10.244.2.999" }], [{ name: "dns", port: 53, protocol: "UDP" }], { namespace: "kube-system" });
    api.apply("EndpointSlice", sliceBad);
    await waitFor("a third rejection", () => events.filter((e) => e.kind === "rejected").length === 3);
    assert.match(JSON.stringify(events.filter((e) => e.kind === "rejected")[2]), /EndpointSlice kube-system\/dns-x1 endpoints\[0\]\.addresses\[0\].*10\.244\.2\.999/);
    // A good change elsewhere still goes through; the bad objects' last good versions stay.
    api.apply("Service", service({ name: "fine", clusterIP: "10.96.0.77", ports: [{ port: 80 }] }));
    await waitFor("the good change", () => byPort(last() as Config).has("default/fine 80/TCP"));
    const m = byPort(last() as Config);
    assert.deepEqual(m.get("default/web 443/TCP")?.backends.map((b) => `${b.ip}:${b.port}`), ["10.244.1.10:8443", "10.244.2.11:8443", "10.244.2.12:8443"], "web as it was before the bad update");
    assert.deepEqual(m.get("kube-system/dns 53/UDP")?.backends.map((b) => b.ip), ["10.244.2.20"]);
    assert.ok(!m.has("default/other 80/TCP"), "the Service outside the service CIDR never went into the config");
  });

  it("a change costs work proportional to it: one slice update among 1000 services converts one object and re-joins one service", async () => {
    for (let i = 0; i < 1000; i++) {
      api.apply("Service", service({ name: `s${i}`, clusterIP: `10.96.${20 + (i >> 8)}.${i & 255}`, ports: [{ port: 80 }] }));
      api.apply("EndpointSlice", endpointSlice(`s${i}-a`, `s${i}`, [{ ip: `10.244.2.${i & 255}` }], [{ port: 8080 }]));
    }
    api.apply("Node", node(NODE, "192.168.50.1", "10.244.1.0/24"));
    startSource();
    await waitFor("the first config", () => last()?.services.length === 1000);
    const s = (source as KubeConfigSource).stats;
    // the source's one write, its Node's VXLAN annotations, comes back as a Node event: let it pass first
    await waitFor("this node's annotation patch seen back", () => s.nodePatches === 1 && s.nodesConverted === 2);
    const before = { ...s };
    api.apply("EndpointSlice", endpointSlice("s500-a", "s500", [{ ip: "10.244.2.1" }, { ip: "10.244.2.2" }], [{ port: 8080 }]));
    await waitFor("the update", () => byPort(last() as Config).get("default/s500 80/TCP")?.backends.length === 2);
    assert.equal(s.slicesConverted - before.slicesConverted, 1);
    assert.equal(s.servicesConverted - before.servicesConverted, 0);
    assert.equal(s.serviceJoins - before.serviceJoins, 1);
    assert.equal(s.nodesConverted - before.nodesConverted, 0);
    // the event carries its change set: the one service's old and new parts, relative to the config before
    const cs = configs(), ev = cs[cs.length - 1]!, prevEv = cs[cs.length - 2]!;
    assert.ok(ev.changes, "a change set on the event");
    assert.equal(ev.changes.since, prevEv.config, "relative to the config handed on before it");
    assert.deepEqual(ev.changes.gone.map((x) => x.name), ["s500"], "the old parts of the changed service went");
    assert.deepEqual(ev.changes.came.map((x) => x.name), ["s500"], "its new parts came");
    assert.equal(ev.changes.came[0]!.backends.length, 2, "the new part holds the new endpoints");
    assert.equal(ev.changes.settingsChanged, false, "no Node changed");
  });

  it("waits for this node's Node object, saying so, before the first config", async () => {
    api.apply("Node", node("node-b", "192.168.50.2", "10.244.2.0/24"));
    startSource();
    const rej = await waitFor("the waiting notice", () => events.find((e) => e.kind === "rejected"));
    assert.match(JSON.stringify(rej), /Node node-a.*is not in the API; name this node with --hostname-override/);
    assert.equal(configs().length, 0);
    api.apply("Node", node(NODE, "192.168.50.1", "10.244.1.0/24"));
    const c = await waitFor("the first config", last);
    assert.equal(c.node.podCIDR, "10.244.1.0/24");
  });

  it("in a pod (KUBERNETES_SERVICE_HOST/PORT, the service account's token and CA, no kubeconfig) it lists and watches with the token", async () => {
    seed();
    const sa = join(dir, "var/run/secrets/kubernetes.io/serviceaccount");
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, "token"), "s3cret-token");
    writeFileSync(join(sa, "ca.crt"), api.caCert);
    writeFileSync(join(sa, "namespace"), "kube-system");
    const saved = { host: process.env["KUBERNETES_SERVICE_HOST"], port: process.env["KUBERNETES_SERVICE_PORT"] };
    process.env["KUBERNETES_SERVICE_HOST"] = "127.0.0.1";
    process.env["KUBERNETES_SERVICE_PORT"] = String(api.port);
    try {
      const kc = loadKubeConfig(undefined, process.env, dir);
      source = new KubeConfigSource({ kubeConfig: kc, nodeName: NODE, minSyncPeriodMs: 50, settings: { serviceCIDR: "10.96.0.0/16" } });
      source.start((e) => events.push(e));
      const c = await waitFor("the first config", last);
      assert.ok(byPort(c).has("default/web 80/TCP"), "default/web 80/TCP in the config");
      assert.ok(!api.requests.includes("401"), "the service account token was sent");
    } finally {
      for (const [k, v] of [["KUBERNETES_SERVICE_HOST", saved.host], ["KUBERNETES_SERVICE_PORT", saved.port]] as const) {
        if (v === undefined) delete process.env[k]; else process.env[k] = v;
      }
    }
    assert.throws(() => loadKubeConfig(undefined, { KUBERNETES_SERVICE_HOST: "127.0.0.1" }, join(dir, "nowhere")), /serviceaccount\/token is missing; mount the service account token/);
  });

  it("a wrong token is refused (401) and retried, never taken for an empty cluster", async () => {
    seed();
    const path = join(dir, "kubeconfig");
    writeFileSync(path, api.kubeconfig().replace("s3cret-token", "wrong-token"));
    source = new KubeConfigSource({ kubeConfig: loadKubeConfig(path, {}), nodeName: NODE, minSyncPeriodMs: 50, backoffMs: { initial: 50, max: 200 } });
    source.start((e) => events.push(e));
    await waitFor("three refused attempts", () => api.requests.filter((r) => r === "401").length >= 6);
    assert.equal(events.length, 0, "no config and no rejection from a refused list");
    assert.ok(source.stats.watchErrors >= 3, `3 or more refused lists counted: ${source.stats.watchErrors}`);
  });

  it("dual-stack: with IPv6 service and cluster CIDRs the Node's IPv6 pod CIDR, both cluster IPs and the IPv6 slice's endpoints are carried", async () => {
    api.apply("Node", node(NODE, "192.168.50.1", "10.244.1.0/24", { podCIDRv6: "fd00:10:244:1::/64" }));
    api.apply("Node", node("node-b", "192.168.50.2", "10.244.2.0/24", { podCIDRv6: "fd00:10:244:2::/64" }));
    api.apply("Service", service({ name: "ds", clusterIPs: ["10.96.0.60", "fd00:10:96::60"], ports: [{ port: 80 }] }));
    api.apply("EndpointSlice", endpointSlice("ds-v4", "ds", [{ ip: "10.244.2.5" }], [{ port: 8080 }]));
    api.apply("EndpointSlice", endpointSlice("ds-v6", "ds", [{ ip: "fd00:10:244:2::5" }], [{ port: 8080 }], { addressType: "IPv6" }));
    startSource({ settings: { serviceCIDR: "10.96.0.0/16", serviceCIDRv6: "fd00:10:96::/108", clusterCIDR: "10.244.0.0/16", clusterCIDRv6: "fd00:10:244::/56" } });
    const c = await waitFor("the first config", last);
    assert.equal(c.node.podCIDRv6, "fd00:10:244:1::/64");
    assert.equal(c.serviceCIDRv6, "fd00:10:96::/108");
    assert.deepEqual(c.nodes.map((n) => n.podCIDRv6), ["fd00:10:244:2::/64"]);
    const ds = byPort(c).get("default/ds 80/TCP") as ServiceConfig;
    assert.deepEqual(ds.clusterIPs, ["10.96.0.60", "fd00:10:96::60"]);
    assert.deepEqual(ds.backends.map((b) => `${b.ip}|${b.port}`).sort(), ["10.244.2.5|8080", "fd00:10:244:2::5|8080"]);
  });

  it("--nodeport-addresses: this host's addresses inside the CIDRs (the kernel's loopback here) plus \"primary\" (the Node's InternalIP); not its ExternalIP", async () => {
    seed();
    startSource({ settings: { serviceCIDR: "10.96.0.0/16", nodePortAddresses: ["127.0.0.0/8", "primary"] } });
    const c = await waitFor("the first config", last);
    assert.deepEqual([...c.node.nodeAddresses].sort(), ["127.0.0.1", "192.168.50.1"]);
    assert.throws(() => new KubeConfigSource({ kubeConfig: loadKubeConfig(join(dir, "kubeconfig"), {}), nodeName: NODE, settings: { nodePortAddresses: ["10.0.0.1/8"] } }),
      /nodePortAddresses has "10\.0\.0\.1\/8"; expected CIDRs like 10\.0\.0\.0\/8 or "primary"/);
  });

  describe("flannel interop: VXLAN endpoints in the Nodes' annotations", () => {
    const FL = "flannel.alpha.coreos.com";
    const annotationsOf = (name: string) => ((api.get("Node", name)?.["metadata"] as Record<string, unknown>)["annotations"] ?? {}) as Record<string, string>;

    it("this node publishes its VTEP as flannel does (backend-type vxlan, backend-data with the MAC it derived, public-ip, kube-subnet-manager), with one patch", async () => {
      seed();
      startSource();
      const c = await waitFor("the first config", last);
      assert.equal(c.node.vtepMAC, "02:c0:a8:32:01:01", "derived from 192.168.50.1: no MAC published before");
      await waitFor("the Node annotated", () => annotationsOf(NODE)[`${FL}/backend-data`]);
      assert.deepEqual(annotationsOf(NODE), {
        [`${FL}/backend-type`]: "vxlan", [`${FL}/backend-data`]: '{"VNI":1,"VtepMAC":"02:c0:a8:32:01:01"}',
        [`${FL}/public-ip`]: "192.168.50.1", [`${FL}/kube-subnet-manager`]: "true",
      });
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(api.requests.filter((r) => r.startsWith("patch")), [`patch nodes/${NODE}`], "once: the Node's own MODIFIED event asks for nothing more");
    });

    it("a node whose underlay address changed keeps the MAC its Node published (the one peers learned); public-ip follows the new address", async () => {
      api.apply("Node", node(NODE, "192.168.50.9", "10.244.1.0/24", { annotations: {
        [`${FL}/backend-type`]: "vxlan", [`${FL}/backend-data`]: '{"VNI":1,"VtepMAC":"02:c0:a8:32:01:01"}',
        [`${FL}/public-ip`]: "192.168.50.1", [`${FL}/kube-subnet-manager`]: "true",
      } }));
      startSource();
      const c = await waitFor("the first config", last);
      assert.deepEqual([c.node.underlayIP, c.node.vtepMAC], ["192.168.50.9", "02:c0:a8:32:01:01"], "not 02:c0:a8:32:09:01, which the new address would derive");
      await waitFor("public-ip updated", () => annotationsOf(NODE)[`${FL}/public-ip`] === "192.168.50.9");
      assert.equal(annotationsOf(NODE)[`${FL}/backend-data`], '{"VNI":1,"VtepMAC":"02:c0:a8:32:01:01"}');
    });

    it("a flannel peer is reached at its backend-data VtepMAC and public-ip; a wasp peer without annotations at its InternalIP and derived MAC", async () => {
      seed();
      api.apply("Node", node("flannel-1", "192.168.50.7", "10.244.7.0/24", { annotations: {
        [`${FL}/backend-type`]: "vxlan", [`${FL}/backend-data`]: '{"VNI":1,"VtepMAC":"ae:5f:00:11:22:33"}',
        [`${FL}/public-ip`]: "192.168.60.7", [`${FL}/kube-subnet-manager`]: "true",
      } }));
      startSource();
      const c = await waitFor("the first config", last);
      assert.deepEqual(c.nodes.find((n) => n.name === "flannel-1"), { name: "flannel-1", underlayIP: "192.168.60.7", podCIDR: "10.244.7.0/24", vtepMAC: "ae:5f:00:11:22:33" });
      assert.deepEqual(c.nodes.find((n) => n.name === "node-b"), { name: "node-b", underlayIP: "192.168.50.2", podCIDR: "10.244.2.0/24" });
    });
  });

  it("loadKubeConfig names the problem: no kubeconfig and not in a pod; an unreadable file", () => {
    assert.throws(() => loadKubeConfig(undefined, {}), /no Kubernetes API to watch: give --kubeconfig PATH/);
    assert.throws(() => loadKubeConfig(join(dir, "missing"), {}), /cannot load kubeconfig .*missing/);
  });
});
