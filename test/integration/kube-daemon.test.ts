// `wasp daemon --kubeconfig` on a one-node cluster in test namespaces, fed by the fake apiserver (run
// inside the node namespace, where the daemon can reach it): a Service and its EndpointSlice appear
// and pod → ClusterIP traffic reaches the backend; the slice changes and a new table generation sends
// it to the new backend; endpoints vanish and the VIP rejects; the Service goes and so does the VIP.
// kube-proxy's /healthz, /livez and metrics answer inside the namespace. Needs root.
import { strict as assert } from "node:assert";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { inNs, spawnInNs, stop } from "../helpers/netns.js";
import { control, EXT_IP, NODE_IP, POD_CIDR, Topology, waitFor, type Outcome, type Pod } from "../helpers/topology.js";
import { endpointSlice, FakeApiServerProcess, node, service, startFakeApiProcess } from "../helpers/fake-apiserver.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const TSX = join(ROOT, "node_modules/tsx/dist/loader.mjs");

/** GET http://127.0.0.1:PORT/PATH from inside the namespace: {status, body}. */
function httpGet(ns: string, port: number, path: string): { status: number; body: string } {
  const script = `fetch("http://127.0.0.1:${port}${path}").then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })), (e) => { console.log(JSON.stringify({ status: 0, body: String(e) })); })`;
  return JSON.parse(inNs(ns, process.execPath, "-e", script).trim()) as { status: number; body: string };
}

describe("wasp daemon --kubeconfig: Services from the Kubernetes API drive the datapath (integration, needs root)", function () {
  this.timeout(120_000);
  let t: Topology;
  let client: Pod, b1: Pod, b2: Pod;
  let apiChild: ChildProcess | undefined;
  let api: FakeApiServerProcess;
  let daemon: ChildProcess | undefined;
  let log = "";
  const lines = () => log.split("\n").flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; } });
  const generation = async () => (await control(t.socketPath, { cmd: "services" })).generation as number;
  type Entry = { key: string; backends: Array<{ addr: string; port: number }> };
  /** Polls the control socket until the engine's entry for VIP:80/TCP satisfies `ok` (undefined: no entry). */
  async function engineEntry(what: string, ok: (e: Entry | undefined) => boolean): Promise<void> {
    const end = Date.now() + 20_000;
    for (;;) {
      const s = await control(t.socketPath, { cmd: "services" }) as { services: Entry[] };
      if (ok(s.services.find((e) => e.key === "10.96.0.10:80/TCP"))) return;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s.services)}\n${log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const backendsAre = (...ips: string[]) => (e: Entry | undefined) => e !== undefined && JSON.stringify(e.backends.map((b) => b.addr)) === JSON.stringify(ips);

  before(async () => {
    t = new Topology();
    client = await t.addPod("client");
    b1 = await t.addPod("b1");
    b2 = await t.addPod("b2");
    await t.serve(b1.ns, [8080]);
    await t.serve(b2.ns, [8080]);

    // stdin too: the test sends it commands.
    const kcPath = join(t.work, "kubeconfig");
    api = await startFakeApiProcess(t.node, "daemon-token", kcPath);
    apiChild = api.child;
    await api.apply("Node", node("node-a", NODE_IP, POD_CIDR));

    daemon = spawnInNs(t.node, process.execPath, [
      "--import", `file://${TSX}`, join(ROOT, "src/main.ts"), "daemon", "--kubeconfig", kcPath, "--hostname-override", "node-a",
      "--service-cidr", "10.96.0.0/16", "--cluster-cidr", "10.244.0.0/16", "--min-sync-period", "100ms",
      "--socket", t.socketPath, "--metrics-port", "0",
    ]);
    daemon.stdout?.on("data", (d: Buffer) => { log += d.toString(); });
    daemon.stderr?.on("data", (d: Buffer) => { log += d.toString(); });
    let gone = false;
    daemon.once("exit", () => { gone = true; });
    await waitFor(() => gone || lines().some((l) => l.msg === "serving"), "the daemon to serve", 60_000);
    if (gone) throw new Error(`the daemon exited at start:\n${log}`);
  });

  after(async () => {
    if (daemon) await stop(daemon);
    if (apiChild) await stop(apiChild);
    await t?.destroy();
  });

  // Mocha runs a describe's own tests before its nested ones: these keep the order of the story.
  describe("a Service's life: it appears, its endpoints change and go, it is deleted", () => {
    it("a Service and its EndpointSlice appear: pod -> ClusterIP reaches the backend, which sees the pod's own IP", async () => {
      const g0 = await generation();
      await api.apply("Service", service({ name: "web", clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "http" }] }));
      await api.apply("EndpointSlice", endpointSlice("web-1", "web", [{ ip: b1.ip, nodeName: "node-a" }], [{ name: "http", port: 8080 }],
        { triggerTime: new Date().toISOString().replace(/\.\d+Z$/, "Z") }));
      await engineEntry("the web entry with b1", backendsAre(b1.ip));
      const out = await t.requests(client.ns, Array.from({ length: 6 }, () => ({ host: "10.96.0.10", port: 80 })));
      for (const o of out) {
        assert.ok(o.ok, JSON.stringify(o));
        assert.equal(o.seen?.local, b1.ip, "the backend named by the EndpointSlice answered");
        assert.equal(o.seen?.remote, client.ip, "no SNAT for pod -> ClusterIP");
        assert.equal(o.seen?.port, 8080, "the named targetPort resolved through the slice's port");
      }
      assert.ok((await generation()) > g0, "a new table generation");
    });

    // Each of these starts where the test above leaves the Service (b1 its endpoint), made here again:
    // a test that fails, or is not run, does not change where the next one starts.
    describe("the Service with b1 as its endpoint", () => {
      beforeEach(async () => {
        await api.apply("Service", service({ name: "web", clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "http" }] }));
        await api.apply("EndpointSlice", endpointSlice("web-1", "web", [{ ip: b1.ip, nodeName: "node-a" }], [{ name: "http", port: 8080 }]));
        await engineEntry("the web entry with b1", backendsAre(b1.ip));
      });

      it("the EndpointSlice changes: a new generation sends new connections to the new backend", async () => {
        const g0 = await generation();
        await api.apply("EndpointSlice", endpointSlice("web-1", "web", [{ ip: b2.ip, nodeName: "node-a" }], [{ name: "http", port: 8080 }]));
        await engineEntry("b2 as the backend", backendsAre(b2.ip));
        assert.ok((await generation()) > g0, "a new table generation");
        const out = await t.requests(client.ns, Array.from({ length: 6 }, () => ({ host: "10.96.0.10", port: 80 })));
        for (const o of out) {
          assert.ok(o.ok, JSON.stringify(o));
          assert.equal(o.seen?.local, b2.ip);
        }
      });

      it("endpoints gone: the ClusterIP rejects TCP (connection refused), as kube-proxy does for a Service without endpoints", async () => {
        await api.apply("EndpointSlice", endpointSlice("web-1", "web", [], [{ name: "http", port: 8080 }]));
        await engineEntry("no backend", backendsAre());
        const o = await t.request(client.ns, { host: "10.96.0.10", port: 80, timeoutMs: 3000 });
        assert.equal(o.ok, false);
        assert.equal(o.error, "ECONNREFUSED", JSON.stringify(o));
      });

      it("the Service is deleted: its entry leaves the engine and connections to the VIP fail", async () => {
        await api.apply("EndpointSlice", endpointSlice("web-1", "web", [{ ip: b1.ip, nodeName: "node-a" }], [{ name: "http", port: 8080 }]));
        await engineEntry("b1 again", backendsAre(b1.ip));
        assert.ok((await t.request(client.ns, { host: "10.96.0.10", port: 80 })).ok, "served again before the delete");
        await api.remove("Service", "web", "default");
        await engineEntry("the entry gone", (e) => e === undefined);
        const o = await t.request(client.ns, { host: "10.96.0.10", port: 80, timeoutMs: 2000 });
        assert.equal(o.ok, false, JSON.stringify(o));
      });
    });
  });

  describe("a NodePort Service, kube-proxy's health and metrics surface, the Node's taint", () => {
    it("a NodePort Service from the API: the external namespace reaches it on the Node's InternalIP, masqueraded (externalTrafficPolicy Cluster); with Local the backend sees the client", async () => {
      await api.apply("Service", service({ name: "np", type: "NodePort", clusterIP: "10.96.0.30", ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }] }));
      await api.apply("EndpointSlice", endpointSlice("np-1", "np", [{ ip: b1.ip, nodeName: "node-a" }], [{ port: 8080 }]));
      const cluster = async () => (await control(t.socketPath, { cmd: "services" }) as { services: Array<{ key: string }> }).services.some((e) => e.key.endsWith(":30080/TCP"));
      for (let i = 0; i < 200 && !(await cluster()); i++) await new Promise((r) => setTimeout(r, 100));
      const out = await t.requests(t.ext, Array.from({ length: 4 }, () => ({ host: NODE_IP, port: 30080 })));
      for (const o of out) {
        assert.ok(o.ok, JSON.stringify(o));
        assert.equal(o.local, EXT_IP);
        assert.equal(o.seen?.local, b1.ip);
        assert.equal(o.seen?.remote, "10.244.1.1", "masqueraded to wasp0's address, as kube-proxy masquerades external traffic under Cluster");
      }
      await api.apply("Service", service({ name: "np", type: "NodePort", clusterIP: "10.96.0.30", ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }], externalTrafficPolicy: "Local" }));
      let local: Outcome | undefined;
      for (let i = 0; i < 100; i++) {
        local = await t.request(t.ext, { host: NODE_IP, port: 30080 });
        if (local.ok && local.seen?.remote === EXT_IP) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(local?.seen?.remote, EXT_IP, `externalTrafficPolicy Local keeps the client's address: ${JSON.stringify(local)}`);
    });

    it("kube-proxy's surface: /healthz and /livez on 10256 answer 200 with kube-proxy's JSON; metrics carry kubeproxy_* sync histograms", () => {
      const h = httpGet(t.node, 10256, "/healthz");
      assert.equal(h.status, 200, h.body);
      const hb = JSON.parse(h.body) as Record<string, unknown>;
      assert.deepEqual(Object.keys(hb), ["lastUpdated", "currentTime", "nodeEligible"]);
      assert.equal(hb["nodeEligible"], true);
      assert.match(String(hb["currentTime"]), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC m=\+\d+\.\d{9}$/);
      const l = httpGet(t.node, 10256, "/livez");
      assert.equal(l.status, 200);
      assert.deepEqual(Object.keys(JSON.parse(l.body) as object), ["lastUpdated", "currentTime"]);
      const port = Number(lines().find((x) => x.msg === "serving")?.metricsPort);
      const m = httpGet(t.node, port, "/metrics").body;
      const count = (name: string) => Number(new RegExp(`^${name}_count (\\d+)`, "m").exec(m)?.[1] ?? -1);
      assert.ok(count("kubeproxy_sync_proxy_rules_duration_seconds") >= 5, `the initial load and every reload observed: ${count("kubeproxy_sync_proxy_rules_duration_seconds")}`);
      assert.ok(count("kubeproxy_network_programming_duration_seconds") >= 1, "the slice's last-change-trigger-time observed");
      const last = Number(/^kubeproxy_sync_proxy_rules_last_timestamp_seconds (\S+)/m.exec(m)?.[1]);
      assert.ok(Math.abs(last - Date.now() / 1000) < 120, `last sync timestamp ${last}`);
      assert.match(m, /^kubeproxy_proxy_healthz_total\{code="200"\} [1-9]/m);
    });

    it("the Cluster Autoscaler's ToBeDeletedByClusterAutoscaler taint on this Node turns /healthz to 503 (load balancers drain it) while /livez stays 200", async () => {
      try {
        await api.apply("Node", node("node-a", NODE_IP, POD_CIDR, { taints: [{ key: "ToBeDeletedByClusterAutoscaler", effect: "NoSchedule" }] }));
        await waitFor(() => httpGet(t.node, 10256, "/healthz").status === 503, "healthz 503", 20_000);
        assert.match(httpGet(t.node, 10256, "/healthz").body, /"nodeEligible": false}$/);
        assert.equal(httpGet(t.node, 10256, "/livez").status, 200);
      } finally {
        await api.apply("Node", node("node-a", NODE_IP, POD_CIDR)); // untainted, also when the test fails
      }
      await waitFor(() => httpGet(t.node, 10256, "/healthz").status === 200, "healthz 200 again", 20_000);
    });
  });

  // Last: it ends the daemon of the other tests.
  describe("this Node's own address changes in the API", () => {
    it("the daemon exits within seconds naming it (as kube-proxy does, so the DaemonSet restarts it), and the next one serves on the new address", async () => {
      const NEW_IP = "10.99.0.5";
      inNs(t.node, "ip", "addr", "add", `${NEW_IP}/24`, "dev", "eth0");
      const exited = new Promise<number | null>((resolve) => daemon!.once("exit", (code) => resolve(code)));
      const t0 = Date.now();
      await api.apply("Node", node("node-a", NEW_IP, POD_CIDR));
      const code = await Promise.race([exited, new Promise<"running">((r) => setTimeout(() => r("running"), 10_000))]);
      assert.equal(code, 1, `the daemon ${code === "running" ? "still runs 10 s later, serving stale settings" : `exited with ${code}`}`);
      console.log(`      exited ${Date.now() - t0} ms after the Node changed`);
      assert.match(log, /this Node's node\.underlayIP[^"]* changed: exiting so the next daemon starts with it/);
      // the next daemon, as the DaemonSet would start it, adopts the datapath with the new address
      log = "";
      daemon = spawnInNs(t.node, process.execPath, [
        "--import", `file://${TSX}`, join(ROOT, "src/main.ts"), "daemon", "--kubeconfig", join(t.work, "kubeconfig"), "--hostname-override", "node-a",
        "--service-cidr", "10.96.0.0/16", "--cluster-cidr", "10.244.0.0/16", "--min-sync-period", "100ms", "--socket", t.socketPath, "--metrics-port", "0",
      ]);
      daemon.stdout?.on("data", (d: Buffer) => { log += d.toString(); });
      daemon.stderr?.on("data", (d: Buffer) => { log += d.toString(); });
      await waitFor(() => lines().some((l) => l.msg === "serving"), "the next daemon to serve", 60_000);
      const rules = inNs(t.node, "ip", "-4", "rule", "show");
      assert.match(rules, new RegExp(`to ${NEW_IP.replace(/\./g, "\\.")} ipproto tcp dport 30000-32767`), rules);
      assert.doesNotMatch(rules, new RegExp(`to ${NODE_IP.replace(/\./g, "\\.")} `), "the old address's NodePort rules are gone");
      const st = await control(t.socketPath, { cmd: "status" });
      assert.ok(st.generation >= 1, "serving");
    });
  });
});
