// Dual-stack through the daemon: pods made by the wasp CNI plugin with an IPv4 and an IPv6 address,
// a RequireDualStack-shaped service (one cluster IP per family), an IPv6 SingleStack service, and
// real TCP and UDP over both families. The servers report the peer address the kernel gave them.
import { strict as assert } from "node:assert";
import { type ChildProcess } from "node:child_process";
import { ask6, serve6 } from "../helpers/ipv6.js";
import { ip, stop } from "../helpers/netns.js";
import { askUntilCovered, everyBackend, NODE_IP, POD_CIDR, Topology, type DaemonProc, type Pod } from "../helpers/topology.js";

const POD_CIDR6 = "fd00:10:244:1::/64";
const NODE_IP6 = "fd00:99::1";
const EXT_IP6 = "fd00:99::2";


// In both datapath modes: offload (the kernel carries each flow, one inet table for both families) and full-wasm.
for (const datapath of ["offload", "wasm"] as const) {
const offload = datapath === "offload";
describe(`wasp daemon, dual-stack (${datapath}): IPv4 and IPv6 pods, services and flows (integration, needs root)`, function () {
  this.timeout(120_000);
  let t: Topology;
  let daemon: DaemonProc;
  let client: Pod, b1: Pod, b2: Pod;
  const mine: ChildProcess[] = [];

  const ask = (pod: Pod | string, proto: "tcp" | "udp", host: string, port: number): any => ask6(typeof pod === "string" ? pod : pod.ns, proto, host, port);

  before(async () => {
    t = new Topology({ podCidr6: POD_CIDR6 });
    // The underlay in IPv6 too: the node and the external client each get an address on it.
    ip(t.node, "-6", "addr", "add", `${NODE_IP6}/64`, "dev", "eth0", "nodad");
    ip(t.ext, "-6", "addr", "add", `${EXT_IP6}/64`, "dev", "br0", "nodad");
    client = await t.addPod("client");
    b1 = await t.addPod("b1");
    b2 = await t.addPod("b2");
    t.writeConfig({
      mode: "tun",
      node: { name: "node-a", underlayIP: NODE_IP, podCIDR: POD_CIDR, podCIDRv6: POD_CIDR6, nodeAddresses: [NODE_IP, NODE_IP6] },
      serviceCIDR: "10.96.0.0/16",
      serviceCIDRv6: "fd00:10:96::/112",
      clusterCIDR: "10.244.0.0/16",
      clusterCIDRv6: "fd00:10:244::/56",
      services: [
        {
          name: "dual", clusterIPs: ["10.96.0.10", "fd00:10:96::10"], ports: [{ name: "web", port: 80, protocol: "TCP", targetPort: 8080 }, { name: "dns", port: 53, protocol: "UDP", targetPort: 8080 }],
          backends: [{ ip: b1.ip }, { ip: b2.ip }, { ip: b1.ip6! }, { ip: b2.ip6! }],
        },
        { name: "v6only", clusterIPs: ["fd00:10:96::20"], ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b2.ip6! }] },
        {
          name: "dual-np", type: "NodePort", clusterIPs: ["10.96.0.40", "fd00:10:96::40"], ports: [{ port: 80, protocol: "TCP", targetPort: 8080, nodePort: 30080 }],
          backends: [{ ip: b1.ip }, { ip: b1.ip6! }],
        },
        { name: "v6empty", clusterIPs: ["fd00:10:96::30"], ports: [{ port: 80, protocol: "TCP" }], backends: [] },
      ],
    });
    await t.serve(b1.ns, [8080]);
    await t.serve(b2.ns, [8080]);
    for (const pod of [b1, b2, client]) mine.push(await serve6(pod.ns, 8080));
    t.daemonArgs = ["--offload", offload ? "on" : "off"];
    daemon = await t.startDaemon();
  });

  after(async () => {
    for (const c of mine) await stop(c);
    await t?.destroy();
  });

  it("pods get an IPv4 and an IPv6 address from the plugin; wasp0 holds the first address of each pod CIDR, with IPv6 rules and routes of the same shape", () => {
    assert.match(client.ip6 ?? "", /^fd00:10:244:1::/);
    const addrs = JSON.parse(ip(t.node, "-j", "addr", "show", "dev", "wasp0"))[0].addr_info.map((a: any) => `${a.local}/${a.prefixlen}`);
    assert.ok(addrs.includes("10.244.1.1/32") && addrs.includes("fd00:10:244:1::1/128"), addrs.join(" "));
    const rules6 = ip(t.node, "-6", "rule", "show");
    // offload mode: no pod rule, a pod's packets enter wasp0 only for a service address
    if (offload) assert.doesNotMatch(rules6, /^100:/m);
    else assert.match(rules6, /^100:\s+from fd00:10:244:1::\/64 lookup 119/m);
    assert.match(rules6, /^1000:\s+from all lookup local/m);
    assert.doesNotMatch(rules6, /^0:\s+from all lookup local/m);
    assert.match(ip(t.node, "-6", "route", "show"), /fd00:10:96::\/112 dev wasp0/);
    assert.match(ip(t.node, "-6", "route", "show", "table", "119"), /default dev wasp0/);
  });

  it("pod -> IPv6 ClusterIP, TCP and UDP: a backend answers and sees the client's own IPv6 address; the UDP answer comes from the VIP", async () => {
    // 8 connections, and more until both IPv6 backends have answered (64 at most)
    const pick = (n: number) => Array.from({ length: n }, () => ask(client, "tcp", "fd00:10:96::10", 80));
    const seen = new Set<string>();
    for (const o of await askUntilCovered(pick(8), everyBackend(b1.ip6!, b2.ip6!), pick)) {
      assert.ok(o.ok, JSON.stringify(o));
      assert.equal(o.seen.remote, client.ip6);
      seen.add(o.seen.local);
    }
    assert.deepEqual([...seen].sort(), [b1.ip6, b2.ip6].sort(), "both IPv6 backends, never an IPv4 one");
    const u = ask(client, "udp", "fd00:10:96::10", 53);
    assert.ok(u.ok, JSON.stringify(u));
    assert.equal(u.from, "fd00:10:96::10");
    assert.equal(u.seen.remote, client.ip6);
  });

  it("the same service over IPv4 still goes to the IPv4 backends", async () => {
    const out = await t.requests(client.ns, Array.from({ length: 6 }, () => ({ host: "10.96.0.10", port: 80 })));
    for (const o of out) {
      assert.ok([b1.ip, b2.ip].includes(o.seen?.local ?? ""), JSON.stringify(o));
      assert.equal(o.seen?.remote, client.ip);
    }
  });

  it("an IPv6 SingleStack service reaches its one backend; one without endpoints refuses at once (RST)", () => {
    const o = ask(client, "tcp", "fd00:10:96::20", 80);
    assert.equal(o.seen?.local, b2.ip6, JSON.stringify(o));
    assert.equal(ask(client, "tcp", "fd00:10:96::30", 80).error, "ECONNREFUSED");
  });

  it("golden rules over IPv6: pod -> pod without NAT, and node -> pod without NAT", () => {
    const p = ask(client, "tcp", b1.ip6!, 8080);
    assert.equal(p.seen?.remote, client.ip6, JSON.stringify(p));
    const n = ask(t.node, "tcp", b1.ip6!, 8080);
    assert.ok(n.ok, JSON.stringify(n));
    assert.equal(n.seen.remote, n.local, "the pod sees the node's own source address");
  });

  it("node -> IPv6 ClusterIP reaches a backend", () => {
    const o = ask(t.node, "tcp", "fd00:10:96::20", 80);
    assert.equal(o.seen?.local, b2.ip6, JSON.stringify(o));
  });

  it("a dual-stack NodePort serves both families from outside: IPv6 to the node's IPv6 address reaches the IPv6 backend, masqueraded to wasp0's IPv6 address; IPv4 likewise", async () => {
    const o6 = ask(t.ext, "tcp", NODE_IP6, 30080);
    assert.ok(o6.ok, JSON.stringify(o6));
    assert.equal(o6.seen.local, b1.ip6);
    assert.equal(o6.seen.remote, "fd00:10:244:1::1");
    const [o4] = await t.requests(t.ext, [{ host: NODE_IP, port: 30080 }]);
    assert.equal(o4!.seen?.local, b1.ip, JSON.stringify(o4));
    assert.equal(o4!.seen?.remote, "10.244.1.1");
  });

  it("SIGTERM leaves the IPv6 rules for the next daemon; --cleanup removes them and puts the IPv6 local rule back at 0", async () => {
    await t.stopProcess(daemon.child);
    assert.match(ip(t.node, "-6", "rule", "show"), /lookup 119/m, "left for the next daemon");
    await t.cleanupNode();
    const rules6 = ip(t.node, "-6", "rule", "show");
    assert.match(rules6, /^0:\s+from all lookup local/m);
    assert.doesNotMatch(rules6, /lookup 119|^1000:/m);
  });
});
}
