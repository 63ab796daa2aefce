// Dual-stack across nodes: two wasp nodes whose pods have IPv4 and IPv6 addresses; IPv6 pod-to-pod
// traffic and an IPv6 ClusterIP with its backend on the other node cross the VXLAN overlay (IPv6
// inside, IPv4 underlay) without NAT. The servers report the peer address the kernel gave them.
import { strict as assert } from "node:assert";
import { type ChildProcess } from "node:child_process";
import { ask6, serve6 } from "../helpers/ipv6.js";
import { stop } from "../helpers/netns.js";
import { control, Topology, type Pod } from "../helpers/topology.js";

const A = { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24", podCIDRv6: "fd00:10:244:1::/64" };
const B = { name: "node-b", underlayIP: "10.99.0.3", podCIDR: "10.244.2.0/24", podCIDRv6: "fd00:10:244:2::/64" };


describe("wasp daemon: dual-stack pods on two nodes, IPv6 across the VXLAN overlay (integration, needs root)", function () {
  this.timeout(180_000);
  let ta: Topology, tb: Topology;
  let pa: Pod, pb: Pod;
  const mine: ChildProcess[] = [];
  const ask = (pod: Pod, proto: "tcp" | "udp", host: string, port: string, bytes = "0"): any => ask6(pod.ns, proto, host, Number(port), Number(bytes));

  before(async () => {
    ta = new Topology({ nodeIp: A.underlayIP, podCidr: A.podCIDR, podCidr6: A.podCIDRv6 });
    tb = new Topology({ nodeIp: B.underlayIP, podCidr: B.podCIDR, podCidr6: B.podCIDRv6, ext: ta.ext });
    for (const t of [ta, tb]) t.daemonArgs = ["--offload", "off"];   // IPv6 through the engine's overlay
    pa = await ta.addPod("pa");
    pb = await tb.addPod("pb");
    const services = [
      { name: "remote6", clusterIPs: ["fd00:10:96::60"], ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: pb.ip6!, nodeName: B.name }] },
    ];
    const base = {
      mode: "tun", serviceCIDR: "10.96.0.0/16", serviceCIDRv6: "fd00:10:96::/112", clusterCIDR: "10.244.0.0/16", clusterCIDRv6: "fd00:10:244::/56", services,
    };
    ta.writeConfig({ ...base, node: A, nodes: [B] });
    tb.writeConfig({ ...base, node: B, nodes: [A] });
    for (const pod of [pa, pb]) mine.push(await serve6(pod.ns, 8080));
    await ta.startDaemon();
    await tb.startDaemon();
  });

  after(async () => {
    for (const c of mine) await stop(c);
    await tb?.destroy();
    await ta?.destroy();
  });

  it("pod -> pod across nodes over IPv6, TCP and UDP, without NAT: each side sees the other's IPv6 pod address", () => {
    const t1 = ask(pa, "tcp", pb.ip6!, "8080");
    assert.ok(t1.ok, JSON.stringify(t1));
    assert.deepEqual([t1.seen.local, t1.seen.remote], [pb.ip6, pa.ip6]);
    const u1 = ask(pa, "udp", pb.ip6!, "8080");
    assert.deepEqual([u1.from, u1.seen?.remote], [pb.ip6, pa.ip6], JSON.stringify(u1));
    const t2 = ask(pb, "tcp", pa.ip6!, "8080");
    assert.equal(t2.seen?.remote, pb.ip6, JSON.stringify(t2));
  });

  it("pod on node A -> IPv6 ClusterIP whose backend is on node B: reaches it without SNAT", () => {
    const o = ask(pa, "tcp", "fd00:10:96::60", "80");
    assert.deepEqual([o.seen?.local, o.seen?.remote], [pb.ip6, pa.ip6], JSON.stringify(o));
  });

  it("an 8 MiB IPv6 TCP stream crosses the overlay intact, every byte counted by the receiver; its TSO packets crossed whole (TCPV6 in a UDP-tunnel GSO frame over IPv4) where the kernel can", async () => {
    const bytes = 8 << 20;
    const o = ask(pa, "tcp", pb.ip6!, "8080", String(bytes));
    assert.ok(o.ok, JSON.stringify(o));
    assert.equal(o.seen.bytes, bytes);
    const [sa, sb] = await Promise.all([control(ta.socketPath, { cmd: "status" }), control(tb.socketPath, { cmd: "status" })]);
    if (sa.tunnelGso && "device" in sa.tunnelGso) {
      assert.ok(sa.counters.named.tunnel_gso_sent > 0, JSON.stringify(sa.counters.named));
      assert.ok(sb.counters.named.tunnel_gso_received > 0, JSON.stringify(sb.counters.named));
    } else assert.ok(sa.tunnelGso?.off, JSON.stringify(sa.tunnelGso));
  });
});
