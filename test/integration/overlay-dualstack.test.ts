// Dual-stack across nodes: two wasp nodes whose pods have IPv4 and IPv6 addresses; IPv6 pod-to-pod
// traffic and an IPv6 ClusterIP with its backend on the other node cross the VXLAN overlay (IPv6
// inside, IPv4 underlay) without NAT. The servers report the peer address the kernel gave them.
import { strict as assert } from "node:assert";
import { type ChildProcess } from "node:child_process";
import { inNs, spawnInNs, stop } from "../helpers/netns.js";
import { Topology, waitFor, type Pod } from "../helpers/topology.js";

const A = { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24", podCIDRv6: "fd00:10:244:1::/64" };
const B = { name: "node-b", underlayIP: "10.99.0.3", podCIDR: "10.244.2.0/24", podCIDRv6: "fd00:10:244:2::/64" };

/** TCP (answer {local, remote}; or with argv[2] "sink", count the bytes received) and UDP servers on [::]:argv[1]. */
const SERVER6 = `
const net = require("node:net"), dgram = require("node:dgram"), port = Number(process.argv[1]);
let n = 2; const ready = () => { if (--n === 0) console.error("ready"); };
net.createServer((s) => {
  s.on("error", () => {});
  let bytes = 0; s.on("data", (d) => { bytes += d.length; });
  s.on("end", () => s.end(JSON.stringify({ local: s.localAddress, remote: s.remoteAddress, bytes })));
}).listen({ port, host: "::", ipv6Only: true }, ready);
const u = dgram.createSocket({ type: "udp6", ipv6Only: true });
u.on("message", (m, r) => u.send(JSON.stringify({ remote: r.address }), r.port, r.address));
u.bind(port, "::", ready);`;

/** argv: proto host port [bytes to send] → one JSON line. */
const CLIENT6 = `
const net = require("node:net"), dgram = require("node:dgram");
const [proto, host, port, bytes] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4] || 0)];
const done = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
setTimeout(() => done({ ok: false, error: "timeout" }), 20000);
if (proto === "tcp") {
  const s = net.connect({ host, port }); let d = "";
  s.on("connect", () => { if (bytes) s.write(Buffer.alloc(bytes, 7)); s.end(); });
  s.on("data", (x) => d += x); s.on("end", () => done({ ok: true, seen: JSON.parse(d) }));
  s.on("error", (e) => done({ ok: false, error: e.code }));
} else {
  const s = dgram.createSocket("udp6");
  s.on("message", (m, r) => done({ ok: true, from: r.address, seen: JSON.parse(m) }));
  s.on("error", (e) => done({ ok: false, error: e.code }));
  s.connect(port, host, () => s.send("?"));
}`;

describe("wasp daemon: dual-stack pods on two nodes, IPv6 across the VXLAN overlay (integration, needs root)", function () {
  this.timeout(180_000);
  let ta: Topology, tb: Topology;
  let pa: Pod, pb: Pod;
  const mine: ChildProcess[] = [];
  const ask = (pod: Pod, ...args: string[]) => JSON.parse(inNs(pod.ns, process.execPath, "-e", CLIENT6, ...args).trim());

  before(async () => {
    ta = new Topology({ nodeIp: A.underlayIP, podCidr: A.podCIDR, podCidr6: A.podCIDRv6 });
    tb = new Topology({ nodeIp: B.underlayIP, podCidr: B.podCIDR, podCidr6: B.podCIDRv6, ext: ta.ext });
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
    for (const pod of [pa, pb]) {
      const c = spawnInNs(pod.ns, process.execPath, ["-e", SERVER6, "8080"]);
      mine.push(c);
      let err = "";
      c.stderr?.on("data", (d: Buffer) => { err += d.toString(); });
      await waitFor(() => err.includes("ready") || c.exitCode !== null, `IPv6 servers in ${pod.name}`);
    }
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

  it("an 8 MiB IPv6 TCP stream crosses the overlay intact, every byte counted by the receiver", () => {
    const bytes = 8 << 20;
    const o = ask(pa, "tcp", pb.ip6!, "8080", String(bytes));
    assert.ok(o.ok, JSON.stringify(o));
    assert.equal(o.seen.bytes, bytes);
  });
});
