// The DaemonSet's init step: `wasp daemon --install-cni` reads this node's pod CIDR from its Node
// object (fake apiserver, real client) and installs the plugin and a conflist into temp dirs standing
// in for /opt/cni/bin and /etc/cni/net.d. No namespace or root needed.
import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { validateNetConf } from "../../../src/cni/config.js";
import { installCni, loadKubeConfig } from "../../../src/kube/index.js";
import { FakeApiServer, node } from "../../helpers/fake-apiserver.js";

const ROOT = new URL("../../..", import.meta.url).pathname;
const run = promisify(execFile);

describe("kube install-cni: the plugin and a per-node conflist from the Node's pod CIDR", function () {
  this.timeout(60_000);
  let api: FakeApiServer;
  let dir: string, kc: string, binary: string;

  beforeEach(async () => {
    api = new FakeApiServer("install-token");
    await api.start();
    dir = mkdtempSync(join(tmpdir(), "wasp-install-"));
    kc = join(dir, "kubeconfig");
    writeFileSync(kc, api.kubeconfig());
    mkdirSync(join(dir, "dist"));
    binary = join(dir, "dist", "wasp");
    writeFileSync(binary, "#!/bin/sh\necho fake wasp\n", { mode: 0o700 });
    writeFileSync(join(dir, "dist", "wasp_native.node"), "addon");
    writeFileSync(join(dir, "dist", "wasp-node"), "node", { mode: 0o700 });
  });
  afterEach(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("installs the executable (0755) and its addon, and a conflist the wasp plugin accepts, with the Node's IPv4 and IPv6 pod CIDRs", async () => {
    api.apply("Node", node("node-a", "192.168.50.1", "10.244.7.0/24", { podCIDRv6: "fd00:10:244:7::/64" }));
    const r = await installCni({
      kubeConfig: loadKubeConfig(kc, {}), nodeName: "node-a", binary, binDir: join(dir, "opt/cni/bin"), confDir: join(dir, "etc/cni/net.d"), daemonSocket: "/run/wasp/wasp.sock",
      cniSocket: "/run/wasp/cni.sock",
    });
    assert.equal(r.podCIDR, "10.244.7.0/24");
    assert.equal(readFileSync(join(dir, "opt/cni/bin/wasp"), "utf8"), "#!/bin/sh\necho fake wasp\n");
    assert.equal(statSync(join(dir, "opt/cni/bin/wasp")).mode & 0o777, 0o755);
    assert.equal(readFileSync(join(dir, "opt/cni/bin/wasp_native.node"), "utf8"), "addon");
    assert.equal(readFileSync(join(dir, "opt/cni/bin/wasp-node"), "utf8"), "node", "the front door's wasp-node goes beside it");
    assert.equal(statSync(join(dir, "opt/cni/bin/wasp-node")).mode & 0o777, 0o755);
    const list = JSON.parse(readFileSync(join(dir, "etc/cni/net.d/10-wasp.conflist"), "utf8")) as { cniVersion: string; name: string; plugins: Array<Record<string, unknown>> };
    assert.equal(list.cniVersion, "1.0.0");
    assert.deepEqual(list.plugins.map((p) => p["type"]), ["wasp", "portmap"]);
    // What the plugin itself will get from a runtime: the network's name and version merged into the plugin's entry (CNI spec §"Network configuration lists").
    const v = validateNetConf({ ...list.plugins[0], cniVersion: list.cniVersion, name: list.name });
    assert.ok("config" in v, JSON.stringify(v));
    assert.equal(v.config.podCIDR, "10.244.7.0/24");
    assert.equal(v.config.podCIDRv6, "fd00:10:244:7::/64");
    assert.equal(v.config.cniSocket, "/run/wasp/cni.sock", "every runtime call (podman's cleanup DEL too) finds the daemon by the conflist");
  });

  it("run as wasp-node (the daemon's own executable), it installs the front door beside it as wasp", async () => {
    api.apply("Node", node("node-a", "192.168.50.1", "10.244.7.0/24"));
    await installCni({ kubeConfig: loadKubeConfig(kc, {}), nodeName: "node-a", binary: join(dir, "dist", "wasp-node"), binDir: join(dir, "bin"), confDir: join(dir, "conf") });
    assert.equal(readFileSync(join(dir, "bin/wasp"), "utf8"), "#!/bin/sh\necho fake wasp\n");
    assert.equal(readFileSync(join(dir, "bin/wasp-node"), "utf8"), "node");
  });

  it("waits for the controller manager to assign the pod CIDR, then installs", async () => {
    api.apply("Node", node("node-a", "192.168.50.1", undefined));
    const p = installCni({ kubeConfig: loadKubeConfig(kc, {}), nodeName: "node-a", binary, binDir: join(dir, "bin"), confDir: join(dir, "conf"), waitMs: 20_000 });
    await new Promise((r) => setTimeout(r, 600));
    api.apply("Node", node("node-a", "192.168.50.1", "10.244.9.0/24"));
    const r = await p;
    assert.equal(r.podCIDR, "10.244.9.0/24");
    assert.ok(api.requests.filter((x) => x === "get nodes/node-a").length >= 2, "asked again until the CIDR was there");
  });

  it("gives up with a message naming the node when it never gets a pod CIDR", async () => {
    api.apply("Node", node("node-a", "192.168.50.1", undefined));
    await assert.rejects(installCni({ kubeConfig: loadKubeConfig(kc, {}), nodeName: "node-a", binary, binDir: join(dir, "bin"), confDir: join(dir, "conf"), waitMs: 500 }),
      /Node node-a has no IPv4 pod CIDR yet \(spec\.podCIDR\).*gave up after/);
  });

  it("`wasp daemon --install-cni` does it from the command line and exits 0", async () => {
    api.apply("Node", node("node-b", "192.168.50.2", "10.244.8.0/24"));
    const r = await run(join(ROOT, "bin/wasp-dev"), ["daemon", "--install-cni", "--kubeconfig", kc, "--hostname-override", "node-b",
      "--cni-binary", binary, "--cni-bin-dir", join(dir, "b"), "--cni-conf-dir", join(dir, "c")], { timeout: 30_000 });
    assert.match(r.stderr, /CNI plugin and conflist installed/);
    assert.match(readFileSync(join(dir, "c/10-wasp.conflist"), "utf8"), /"podCIDR": "10\.244\.8\.0\/24"/);
    assert.equal(readFileSync(join(dir, "b/wasp"), "utf8"), "#!/bin/sh\necho fake wasp\n");
  });
});
