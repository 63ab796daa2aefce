// Two wasp nodes on one underlay bridge (test/helpers/topology.ts), each running `wasp daemon`:
// pods on different nodes talk through the engines' VXLAN (UDP 8472) without NAT, and a service
// on one node reaches a backend on the other. The servers report the addresses they saw.
import { strict as assert } from "node:assert";
import { assertStreamed, Topology, type DaemonProc, type Pod } from "../helpers/topology.js";

const A = { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" };
const B = { name: "node-b", underlayIP: "10.99.0.3", podCIDR: "10.244.2.0/24" };

for (const mode of ["tun", "tap"] as const) {
describe(`wasp daemon (${mode} mode): two nodes over the VXLAN underlay (integration, needs root)`, function () {
  this.timeout(120_000);
  let ta: Topology, tb: Topology;
  let da: DaemonProc, db: DaemonProc;
  let pa: Pod, pb: Pod;

  before(async () => {
    ta = new Topology({ nodeIp: A.underlayIP, podCidr: A.podCIDR });
    tb = new Topology({ nodeIp: B.underlayIP, podCidr: B.podCIDR, ext: ta.ext });
    pa = await ta.addPod("pa");
    pb = await tb.addPod("pb");
    const services = [
      { name: "remote-np", type: "NodePort", clusterIP: "10.96.0.61", ports: [{ port: 80, targetPort: 8080, nodePort: 30061 }], backends: [{ ip: pb.ip, nodeName: B.name }] },
      { name: "remote", clusterIP: "10.96.0.60", ports: [{ name: "http", port: 80, targetPort: 8080 }, { name: "dns", port: 53, protocol: "UDP", targetPort: 5353 }], backends: [{ ip: pb.ip, nodeName: B.name }] },
    ];
    const base = { mode, serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16", services };
    ta.writeConfig({ ...base, node: A, nodes: [B] });
    tb.writeConfig({ ...base, node: B, nodes: [A] });
    await ta.serve(pa.ns, [8080], 5353);
    await tb.serve(pb.ns, [8080], 5353);
    await tb.sink(pb.ns, 5201);
    da = await ta.startDaemon();
    db = await tb.startDaemon();
  });

  after(async () => {
    await tb?.destroy();
    await ta?.destroy();
  });

  // The pods' checksums are partial (virtio NEEDS_CSUM) when they reach the engine: the receiving
  // kernel accepts these packets only if the sending side completed them before encapsulating.
  it("pod -> pod across nodes, TCP and UDP, without NAT: each side sees the other's pod IP", async () => {
    const [t1, u1] = await ta.requests(pa.ns, [{ host: pb.ip, port: 8080 }, { proto: "udp", host: pb.ip, port: 5353 }]);
    assert.ok(t1!.ok && u1!.ok, JSON.stringify([t1, u1]) + da.log() + db.log());
    assert.equal(t1!.seen!.remote, pa.ip);
    assert.equal(u1!.from, pb.ip);
    const t2 = await tb.request(pb.ns, { host: pa.ip, port: 8080 });
    assert.ok(t2.ok, JSON.stringify(t2));
    assert.equal(t2.seen!.remote, pb.ip);
  });

  it("pod -> ClusterIP with the backend on the other node: TCP and UDP, no SNAT, the UDP answer from the VIP", async () => {
    const out = await ta.requests(pa.ns, [
      ...Array.from({ length: 4 }, () => ({ host: "10.96.0.60", port: 80 })),
      { proto: "udp" as const, host: "10.96.0.60", port: 53 },
    ]);
    assert.ok(out.every((o) => o.ok), JSON.stringify(out));
    for (const o of out) assert.equal(o.seen!.remote, pa.ip);
    assert.equal(out[4]!.from, "10.96.0.60");
  });

  it("NodePort on node A from outside with the only backend on node B: masqueraded to node A's wasp0 address, so the reply returns through A", async () => {
    const out = await ta.requests(ta.ext, Array.from({ length: 4 }, () => ({ host: A.underlayIP, port: 30061 })));
    assert.ok(out.every((o) => o.ok), JSON.stringify(out));
    for (const o of out) {
      assert.equal(o.seen!.local, pb.ip);
      assert.equal(o.seen!.remote, "10.244.1.1", "the masquerade address routes back to node A over the overlay");
    }
  });

  // The pod's TCP reaches the engine as GSO super-packets (vnet TSO); the core sends them whole
  // with UDP-tunnel GSO where the kernel can, else cuts them into MTU-sized segments before
  // encapsulation: either way a bulk stream crosses the tunnel intact.
  it("a 16 MiB TCP stream from a pod on node A to a pod on node B arrives intact (GSO packets sent whole or segmented on encap)", async () => {
    const bytes = 16 << 20;
    const r = await ta.stream(pa.ns, pb.ip, 5201, bytes);
    assertStreamed(r, bytes, pa.ip, "no NAT across nodes");
  });

  it("both daemons stop on SIGTERM", async () => {
    await ta.stopProcess(da.child);
    await tb.stopProcess(db.child);
    assert.equal(await da.exited, 0, da.log());
    assert.equal(await db.exited, 0, db.log());
  });
});
}
