import { strict as assert } from "node:assert";
import { ServiceCache, validateConfig, validateConfigAsync, type Config, type Problem } from "../../../src/config/index.js";

/** A small valid config; each test changes one thing. */
function base(): Record<string, any> {
  return {
    node: { name: "n1", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" },
    services: [
      {
        name: "web",
        clusterIP: "10.96.0.10",
        ports: [{ port: 80, targetPort: 8080 }],
        backends: [{ ip: "10.244.1.10" }, { ip: "10.244.2.11", nodeName: "n2" }],
      },
      {
        name: "np",
        type: "NodePort",
        clusterIPs: ["10.96.0.11"],
        ports: [{ name: "http", port: 80, nodePort: 30080 }, { name: "dns", port: 53, protocol: "UDP", nodePort: 30053 }],
        backends: [{ ip: "10.244.1.12" }],
      },
    ],
    nodes: [{ name: "n2", underlayIP: "10.99.0.2", podCIDR: "10.244.2.0/24" }],
  };
}

function ok(raw: unknown): Config {
  const r = validateConfig(raw);
  if ("problems" in r) assert.fail(`unexpected problems: ${JSON.stringify(r.problems, null, 1)}`);
  return r.config;
}

function problems(raw: unknown): Problem[] {
  const r = validateConfig(raw);
  if ("config" in r) assert.fail("expected problems, the config was accepted");
  return r.problems;
}

/** The one problem at `path`; fails when there is none or more than one problem in all. */
function only(raw: unknown, path: string): Problem {
  const ps = problems(raw);
  assert.deepEqual(ps.map((p) => p.path), [path], JSON.stringify(ps, null, 1));
  return ps[0] as Problem;
}

describe("config/validate", () => {
  it("accepts a valid config and fills in every default", () => {
    const c = ok(base());
    assert.equal(c.mode, "tun");
    assert.equal(c.serviceCIDR, "10.96.0.0/16");
    assert.equal(c.clusterCIDR, "10.244.0.0/16");
    assert.deepEqual(c.vxlan, { vni: 1, port: 8472 });
    assert.deepEqual(c.conntrack, { capacity: 262144 });
    assert.equal(c.loadBalancing.mode, "random");
    assert.equal(c.node.underlayMTU, 1500);
    assert.deepEqual(c.node.nodeAddresses, ["10.99.0.1"]);
    const web = c.services[0]!;
    assert.equal(web.namespace, "default");
    assert.equal(web.type, "ClusterIP");
    assert.deepEqual(web.clusterIPs, ["10.96.0.10"]);
    assert.equal(web.ports[0]!.protocol, "TCP");
    assert.equal(web.affinityTimeoutSec, 10800);
    assert.deepEqual(web.backends[0], { ip: "10.244.1.10", ready: true, serving: true, terminating: false });
  });

  it("defaults serving to ready, as an EndpointSlice does", () => {
    const raw = base();
    raw.services[0].backends = [{ ip: "10.244.1.10", ready: false }, { ip: "10.244.1.11", ready: false, serving: true, terminating: true }];
    const [a, b] = ok(raw).services[0]!.backends;
    assert.equal(a!.serving, false);
    assert.equal(b!.serving, true);
  });

  it("rejects a port of 70000 as services[0].ports[0].port with the rule in the sentence", () => {
    const raw = base();
    raw.services[0].ports[0].port = 70000;
    assert.deepEqual(only(raw, "services[0].ports[0].port"), { path: "services[0].ports[0].port", message: "is 70000; a port is 1-65535" });
  });

  it("rejects a nodePort outside 30000-32767 naming services[1].ports[0].nodePort", () => {
    const raw = base();
    raw.services[1].ports[0].nodePort = 8080;
    assert.match(only(raw, "services[1].ports[0].nodePort").message, /^is 8080; a nodePort is 30000-32767$/);
  });

  it("reports every problem at once, from shape and cross-field rules together", () => {
    const raw = base();
    raw.services[0].ports[0].port = 0;                       // shape, service 0
    raw.services[1].clusterIPs = ["10.97.0.1"];              // cross-field, service 1: outside serviceCIDR
    raw.nodes[0].podCIDR = "10.244.1.0/24";                  // cross-field: overlaps this node
    raw.vxlan = { vni: 1 << 24 };                            // shape, top level
    raw.colour = "blue";                                     // unknown key
    const paths = problems(raw).map((p) => p.path).sort();
    assert.deepEqual(paths, ["colour", "nodes[0].podCIDR", "services[0].ports[0].port", "services[1].clusterIPs[0]", "vxlan.vni"]);
  });

  it("says what is missing: a config without node", () => {
    const raw = base();
    delete raw.node;
    const p = problems(raw).find((x) => x.path === "node");
    assert.ok(p, `a problem at "node": ${JSON.stringify(problems(raw))}`);
    assert.match(p.message, /^is missing; expected a mapping of node settings/);
  });

  it("rejects a document that is not a mapping", () => {
    assert.match(problems(null)[0]!.message, /^is empty; expected a mapping/);
    assert.match(problems([1])[0]!.message, /^is a list;/);
  });

  it("names misspelt settings at their path, with the setting they likely meant", () => {
    const raw = base();
    raw.services[0].ports[0].protocl = "UDP";
    assert.equal(only(raw, "services[0].ports[0].protocl").message, "is not a known setting; did you mean protocol?");
    const top = base();
    top.node.underlayMtu = 1400;
    top.servics = [];
    top.colour = "red";
    const p = problems(top);
    assert.deepEqual(p.map((x) => `${x.path} ${x.message}`).sort(), [
      "colour is not a known setting (misspelt?)", "node.underlayMtu is not a known setting; did you mean underlayMTU?",
      "servics is not a known setting; did you mean services?",
    ]);
  });

  it("rejects protocols other than TCP, UDP and SCTP", () => {
    const raw = base();
    raw.services[0].ports[0].protocol = "tcp";
    assert.equal(only(raw, "services[0].ports[0].protocol").message, 'is "tcp"; expected TCP, UDP or SCTP');
  });

  it("loadBalancerSourceRanges apply to type LoadBalancer only (as the API server validates), and a range with host bits names the network to write", () => {
    const raw = base();
    raw.services[0].loadBalancerSourceRanges = ["203.0.113.0/24"];
    assert.equal(only(raw, "services[0].loadBalancerSourceRanges").message, 'is set on a ClusterIP service; loadBalancerSourceRanges apply to type LoadBalancer');
    Object.assign(raw.services[0], { type: "LoadBalancer", loadBalancerSourceRanges: ["203.0.113.7/24"] });
    assert.equal(only(raw, "services[0].loadBalancerSourceRanges[0]").message, 'is "203.0.113.7/24", which has bits set after the prefix; write 203.0.113.0/24');
  });

  it("node.zone is a label value; backend hints name zones and nodes", () => {
    const raw = base();
    raw.node.zone = "-zone a";
    assert.match(only(raw, "node.zone").message, /a zone is a label value/);
    raw.node.zone = "eu-west-1a";
    raw.services[0].backends[0].hints = { forZones: ["eu-west-1a"], forNodes: ["n1"] };
    const c = ok(raw);
    assert.deepEqual([c.node.zone, c.services[0]!.backends[0]!.hints], ["eu-west-1a", { forZones: ["eu-west-1a"], forNodes: ["n1"] }]);
  });

  it("rejects an underlay IP that is IPv6 or not an address", () => {
    const raw = base();
    raw.node.underlayIP = "fd00::1";
    assert.match(only(raw, "node.underlayIP").message, /^is "fd00::1"; expected an IPv4 address/);
  });

  it("rejects a pod CIDR with host bits set and names the network to write instead", () => {
    const raw = base();
    raw.node.podCIDR = "10.244.1.1/24";
    assert.match(only(raw, "node.podCIDR").message, /has bits set after the prefix; write 10\.244\.1\.0\/24$/);
  });

  it("rejects a cluster IP outside serviceCIDR", () => {
    const raw = base();
    raw.services[0].clusterIP = "10.97.0.10";
    assert.match(only(raw, "services[0].clusterIP").message, /outside serviceCIDR 10\.96\.0\.0\/16/);
  });

  it("rejects an IPv6 cluster IP when serviceCIDRv6 is not set, and accepts it when it is", () => {
    const raw = base();
    raw.services[0].clusterIPs = ["10.96.0.10", "fd00:96::10"];
    delete raw.services[0].clusterIP;
    assert.match(only(raw, "services[0].clusterIPs[1]").message, /serviceCIDRv6 is not set/);
    raw.serviceCIDRv6 = "fd00:96::/112";
    ok(raw);
  });

  it("rejects clusterIP and clusterIPs that disagree", () => {
    const raw = base();
    raw.services[0].clusterIPs = ["10.96.0.99"];
    assert.match(only(raw, "services[0].clusterIP").message, /they must agree/);
  });

  it("rejects a NodePort service port without a nodePort, and a nodePort on a ClusterIP service", () => {
    const raw = base();
    delete raw.services[1].ports[0].nodePort;
    raw.services[0].ports[0].nodePort = 30001;
    assert.deepEqual(problems(raw).map((p) => p.path).sort(), ["services[0].ports[0].nodePort", "services[1].ports[0].nodePort"]);
  });

  it("rejects the same nodePort twice for one protocol, and allows it once per protocol", () => {
    const raw = base();
    raw.services.push({ name: "np2", type: "NodePort", clusterIP: "10.96.0.12", ports: [{ port: 81, nodePort: 30080 }] });
    assert.match(only(raw, "services[2].ports[0].nodePort").message, /^is 30080, already the TCP nodePort of services\[1\] \(default\/np\) ports\[0\]/);
    raw.services[2].ports[0].protocol = "UDP";
    ok(raw);
  });

  it("takes a healthCheckNodePort on a LoadBalancer service with externalTrafficPolicy Local only, and not on a taken node port", () => {
    const raw = base();
    raw.services.push({ name: "lb", type: "LoadBalancer", clusterIP: "10.96.0.12", externalTrafficPolicy: "Local", healthCheckNodePort: 32000, ports: [{ port: 80, nodePort: 30081 }] });
    assert.equal(ok(raw).services[2]!.healthCheckNodePort, 32000);
    raw.services[2].healthCheckNodePort = 30080;
    assert.match(only(raw, "services[2].healthCheckNodePort").message, /^is 30080, already the TCP nodePort of services\[1\] \(default\/np\) ports\[0\]/);
    raw.services[2].healthCheckNodePort = 32000;
    raw.services[2].externalTrafficPolicy = "Cluster";
    assert.match(only(raw, "services[2].healthCheckNodePort").message, /applies to type LoadBalancer with externalTrafficPolicy Local/);
  });

  it("with a ServiceCache, an unchanged service keeps its object across validations and a changed one is checked afresh", async () => {
    const cache = new ServiceCache();
    const first = await validateConfigAsync(base(), cache);
    assert.ok("config" in first, "the base config is valid");
    const raw = base();
    raw.services[1].backends = [{ ip: "10.244.1.13" }];
    const second = await validateConfigAsync(raw, cache);
    assert.ok("config" in second, "valid with services[1]'s backends changed");
    assert.equal(second.config.services[0], first.config.services[0], "unchanged: the same object");
    assert.notEqual(second.config.services[1], first.config.services[1]);
    assert.deepEqual(second.config.services[1]!.backends.map((b) => b.ip), ["10.244.1.13"]);
    raw.services[1].ports[0].port = 70000;
    assert.match(JSON.stringify(await validateConfigAsync(raw, cache)), /services\[1\]\.ports\[0\]\.port/);
    // A cached service still meets the cross-service rules: a clash with a new service is found.
    raw.services[1].ports[0].port = 80;
    raw.services.push({ name: "web", clusterIP: "10.96.0.99", ports: [{ port: 80 }] });
    assert.match(JSON.stringify(await validateConfigAsync(raw, cache)), /services\[2\]\.name/);
  });

  it("rejects two services with one name in one namespace, and allows it across namespaces", () => {
    const raw = base();
    raw.services[1].name = "web";
    assert.match(only(raw, "services[1].name").message, /already used by services\[0\]/);
    raw.services[1].namespace = "other";
    ok(raw);
  });

  it("rejects an address, port and protocol served by two services", () => {
    const raw = base();
    raw.services[0].externalIPs = ["192.0.2.10"];
    raw.services[1].externalIPs = ["192.0.2.10"];
    raw.services[1].ports[0].port = 80;
    const p = only(raw, "services[1].externalIPs[0]");
    assert.match(p.message, /192\.0\.2\.10:80\/TCP is already served by services\[0\] \(default\/web\)/);
    raw.services[1].ports[0].port = 8080; // same address, another port: fine
    ok(raw);
  });

  it("rejects a cluster IP used by two services", () => {
    const raw = base();
    raw.services[1].clusterIPs = ["10.96.0.10"];
    raw.services[1].ports = [{ port: 81, nodePort: 30081 }];
    assert.match(only(raw, "services[1].clusterIPs[0]").message, /already the cluster IP of services\[0\]/);
  });

  it("rejects pod CIDRs of nodes that overlap each other, this node or the service CIDR", () => {
    const raw = base();
    raw.nodes.push({ name: "n3", underlayIP: "10.99.0.3", podCIDR: "10.244.2.128/25" }); // inside n2's
    raw.nodes.push({ name: "n4", underlayIP: "10.99.0.4", podCIDR: "10.244.1.0/24" });   // this node's
    raw.nodes.push({ name: "n5", underlayIP: "10.99.0.5", podCIDR: "10.96.5.0/24" });    // the service CIDR (and outside the cluster CIDR)
    const ps = problems(raw);
    assert.deepEqual(ps.map((p) => p.path).sort(), ["nodes[1].podCIDR", "nodes[2].podCIDR", "nodes[3].podCIDR", "nodes[3].podCIDR"], JSON.stringify(ps, null, 1));
    assert.match(ps.find((p) => p.path === "nodes[2].podCIDR")!.message, /overlapping this node's pod CIDR 10\.244\.1\.0\/24/);
    assert.ok(ps.some((p) => p.path === "nodes[3].podCIDR" && /overlapping the service CIDR/.test(p.message)), `nodes[3].podCIDR overlaps the service CIDR: ${JSON.stringify(ps)}`);
    assert.ok(ps.some((p) => p.path === "nodes[1].podCIDR" && /overlapping the pod CIDR of nodes\[0\] \(n2\)/.test(p.message)), `nodes[1].podCIDR overlaps nodes[0]'s: ${JSON.stringify(ps)}`);
  });

  it("rejects a node with this node's underlay IP or name", () => {
    const raw = base();
    raw.nodes[0].underlayIP = "10.99.0.1";
    raw.nodes[0].name = "n1";
    raw.services[0].backends[1].nodeName = "n1";
    assert.deepEqual(problems(raw).map((p) => p.path).sort(), ["nodes[0].name", "nodes[0].underlayIP"]);
  });

  it("rejects a pod CIDR outside the cluster CIDR", () => {
    const raw = base();
    raw.nodes[0].podCIDR = "10.245.2.0/24";
    assert.match(only(raw, "nodes[0].podCIDR").message, /outside clusterCIDR 10\.244\.0\.0\/16/);
  });

  it("rejects a backend on an unknown node, of a family the service lacks, or listed twice", () => {
    const raw = base();
    raw.services[0].backends = [
      { ip: "10.244.1.10", nodeName: "ghost" },
      { ip: "fd00::10" },
      { ip: "10.244.1.11" },
      { ip: "10.244.1.11" },
    ];
    assert.deepEqual(problems(raw).map((p) => p.path), ["services[0].backends[0].nodeName", "services[0].backends[1].ip", "services[0].backends[3]"]);
  });

  it("rejects a backend port of 0 and a backend port that is ambiguous for several target ports", () => {
    const raw = base();
    raw.services[0].backends[0].port = 0;
    assert.equal(only(raw, "services[0].backends[0].port").message, "is 0; a port is 1-65535");
    raw.services[1].backends[0].port = 9000;
    raw.services[0].backends[0].port = 8080;
    assert.match(only(raw, "services[1].backends[0].port").message, /2 different target ports/);
  });

  it("asks for port names when a service has several ports", () => {
    const raw = base();
    delete raw.services[1].ports[1].name;
    assert.match(only(raw, "services[1].ports[1].name").message, /^is missing; each port of a service with several ports has a name/);
  });

  it("accepts headless and ExternalName services and ignores their addresses", () => {
    const raw = base();
    raw.services.push({ name: "hl", clusterIP: "None", ports: [{ port: 80 }] });
    raw.services.push({ name: "ext", type: "ExternalName", externalName: "example.org" });
    const c = ok(raw);
    assert.deepEqual(c.services.slice(2).map((s) => [s.name, s.ignored]), [["hl", true], ["ext", true]]);
  });

  it("requires a prime Maglev table size", () => {
    const raw = base();
    raw.loadBalancing = { mode: "maglev", maglevTableSize: 1000 };
    assert.match(only(raw, "loadBalancing.maglevTableSize").message, /^is 1000; a Maglev table size is a prime/);
    raw.loadBalancing.maglevTableSize = 65521;
    assert.equal(ok(raw).loadBalancing.maglevTableSize, 65521);
  });

  it("takes the ClientIP affinity timeout from sessionAffinityConfig and rejects it without ClientIP", () => {
    const raw = base();
    raw.services[0].sessionAffinity = "ClientIP";
    raw.services[0].sessionAffinityConfig = { clientIP: { timeoutSeconds: 60 } };
    assert.equal(ok(raw).services[0]!.affinityTimeoutSec, 60);
    raw.services[0].sessionAffinity = "None";
    assert.match(only(raw, "services[0].sessionAffinityConfig").message, /sessionAffinity is "None"/);
  });

  it("rejects externalTrafficPolicy Local on a plain ClusterIP service", () => {
    const raw = base();
    raw.services[0].externalTrafficPolicy = "Local";
    assert.match(only(raw, "services[0].externalTrafficPolicy").message, /applies to NodePort, LoadBalancer and externalIPs/);
  });

  it("rejects loadBalancerIPs on a service that is not a LoadBalancer", () => {
    const raw = base();
    raw.services[1].loadBalancerIPs = ["192.0.2.7"];
    assert.match(only(raw, "services[1].loadBalancerIPs").message, /apply to type LoadBalancer/);
    raw.services[1].type = "LoadBalancer";
    ok(raw);
  });

  it("rejects an IPv4-mapped IPv6 address, which would collide with its IPv4 twin in the engine", () => {
    const raw = base();
    raw.services[0].externalIPs = ["::ffff:192.0.2.1"];
    assert.match(only(raw, "services[0].externalIPs[0]").message, /IPv4-mapped IPv6 address; write it as IPv4/);
  });

  it("does not call a backend's node unknown when the node list itself is broken", () => {
    const raw = base();
    raw.nodes[0].underlayIP = "not-an-ip";
    assert.deepEqual(problems(raw).map((p) => p.path), ["nodes[0].underlayIP"]);
  });

  it("keeps nodeAddresses when given", () => {
    const raw = base();
    raw.node.nodeAddresses = ["10.99.0.1", "192.0.2.1"];
    assert.deepEqual(ok(raw).node.nodeAddresses, ["10.99.0.1", "192.0.2.1"]);
  });

  it("rejects an MTU too small for IPv6 pods inside VXLAN", () => {
    const raw = base();
    raw.node.podCIDRv6 = "fd00:10:244:1::/64";
    raw.node.underlayMTU = 1300;
    assert.match(only(raw, "node.underlayMTU").message, /at least 1330/);
  });
});
