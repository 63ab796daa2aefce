// Two wasp nodes fed by one fake apiserver (served on the test underlay, in the external namespace,
// where both node namespaces reach it): the Node objects alone give each daemon its peer's pod CIDR
// and underlay address, so pods talk across nodes over VXLAN and a ClusterIP on node A reaches a
// backend on node B. Deleting node B's Node object takes its route away on A. Needs root.
import { strict as assert } from "node:assert";
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnInNs, stop } from "../helpers/netns.js";
import { control, EXT_IP, Topology, waitFor, type Pod } from "../helpers/topology.js";
import { endpointSlice, FakeApiServerProcess, node, service } from "../helpers/fake-apiserver.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const TSX = join(ROOT, "node_modules/tsx/dist/loader.mjs");
const A = { name: "node-a", ip: "10.99.0.1", podCIDR: "10.244.1.0/24" };
const B = { name: "node-b", ip: "10.99.0.3", podCIDR: "10.244.2.0/24" };

describe("two wasp nodes from the Kubernetes API: Node objects make the overlay (integration, needs root)", function () {
  this.timeout(120_000);
  let ta: Topology, tb: Topology;
  let pa: Pod, pb: Pod;
  let apiChild: ChildProcess | undefined;
  let api: FakeApiServerProcess;
  const daemons: Array<{ child: ChildProcess; log: () => string }> = [];

  async function startDaemon(t: Topology, name: string, kc: string): Promise<void> {
    const child = spawnInNs(t.node, process.execPath, [
      "--import", `file://${TSX}`, join(ROOT, "src/main.ts"), "daemon", "--kubeconfig", kc, "--hostname-override", name,
      "--service-cidr", "10.96.0.0/16", "--cluster-cidr", "10.244.0.0/16", "--min-sync-period", "100ms",
      "--socket", t.socketPath, "--metrics-port", "0",
    ]);
    let text = "";
    child.stdout?.on("data", (d: Buffer) => { text += d.toString(); });
    child.stderr?.on("data", (d: Buffer) => { text += d.toString(); });
    daemons.push({ child, log: () => text });
    let gone = false;
    child.once("exit", () => { gone = true; });
    await waitFor(() => gone || text.includes('"msg":"serving"'), `${name} to serve`, 60_000);
    if (gone) throw new Error(`${name} exited at start:\n${text}`);
  }

  /** The routes node `t`'s engine holds, from its control socket. */
  const routes = async (t: Topology) => JSON.stringify(await control(t.socketPath, { cmd: "routes" }));

  before(async () => {
    ta = new Topology({ nodeIp: A.ip, podCidr: A.podCIDR });
    tb = new Topology({ nodeIp: B.ip, podCidr: B.podCIDR, ext: ta.ext });
    pa = await ta.addPod("pa");
    pb = await tb.addPod("pb");
    await tb.serve(pb.ns, [8080]);

    apiChild = spawn("ip", ["netns", "exec", ta.ext, process.execPath, "--import", `file://${TSX}`, join(ROOT, "test/helpers/fake-apiserver.ts"), "overlay-token", EXT_IP],
      { stdio: ["pipe", "pipe", "inherit"] });
    api = new FakeApiServerProcess(apiChild);
    const { kubeconfig } = await api.ready();
    const kc = join(ta.work, "kubeconfig");
    writeFileSync(kc, kubeconfig);
    await api.apply("Node", node(A.name, A.ip, A.podCIDR));
    await api.apply("Node", node(B.name, B.ip, B.podCIDR));
    await api.apply("Service", service({ name: "remote", clusterIP: "10.96.0.60", ports: [{ port: 80, targetPort: 8080 }] }));
    await api.apply("EndpointSlice", endpointSlice("remote-1", "remote", [{ ip: pb.ip, nodeName: B.name }], [{ port: 8080 }]));
    await startDaemon(ta, A.name, kc);
    await startDaemon(tb, B.name, kc);
  });

  after(async () => {
    for (const d of daemons) await stop(d.child);
    if (apiChild) await stop(apiChild);
    await tb?.destroy();
    await ta?.destroy();
  });

  it("each engine routes the other node's pod CIDR to its underlay address, as the Node objects say", async () => {
    const ra = await routes(ta), rb = await routes(tb);
    assert.match(ra, /10\.244\.2\.0\/24/, ra);
    assert.match(ra, /10\.99\.0\.3/, ra);
    assert.match(rb, /10\.244\.1\.0\/24/, rb);
    assert.match(rb, /10\.99\.0\.1/, rb);
  });

  it("pod -> pod across the nodes without NAT, and pod -> ClusterIP on node A with the backend on node B", async () => {
    const [direct, viaVip] = await ta.requests(pa.ns, [{ host: pb.ip, port: 8080 }, { host: "10.96.0.60", port: 80 }]);
    assert.ok(direct?.ok, JSON.stringify(direct) + daemons.map((d) => d.log().slice(-2000)).join("\n"));
    assert.equal(direct?.seen?.remote, pa.ip);
    assert.ok(viaVip?.ok, JSON.stringify(viaVip));
    assert.equal(viaVip?.seen?.local, pb.ip);
    assert.equal(viaVip?.seen?.remote, pa.ip, "no SNAT for pod -> ClusterIP across nodes");
  });

  it("node B's Node object deleted: node A drops the route to B's pods and they become unreachable from A", async () => {
    await api.remove("Node", B.name);
    const end = Date.now() + 20_000;
    while ((await routes(ta)).includes("10.244.2.0/24")) {
      if (Date.now() > end) throw new Error(`route to node-b still on node-a: ${await routes(ta)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const o = await ta.request(pa.ns, { host: pb.ip, port: 8080, timeoutMs: 2000 });
    assert.equal(o.ok, false, JSON.stringify(o));
  });
});
