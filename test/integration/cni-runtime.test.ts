// A real container runtime sets up a container's network through dist/wasp: containerd 1.6 +
// `ctr run --cni` (Debian's containerd; go-cni inside ctr execs the plugin from CNI_PATH
// /opt/cni/bin:/usr/lib/cni with the lexically first conflist in /etc/cni/net.d, and DELs with an
// empty CNI_NETNS once the task has exited). containerd runs with private state in a temp dir,
// started by this test inside a test node namespace and stopped by its PID; ctr runs in that
// namespace too, so every link the plugin makes stays out of the root namespace. The rootfs is
// busybox-static copied into a directory (no image). The global paths ctr insists on are created
// for the test and removed afterwards: /opt/cni/bin/wasp and /etc/cni/net.d/00-wasp-t-<pid>.conflist.
// The node is a real one (test/helpers/topology.ts): `wasp daemon` in the node namespace with a
// ClusterIP whose backend is a pod the plugin made; the container reaches that ClusterIP through
// the daemon, and the runtime's CNI calls reach the daemon over its CNI socket (WASP_CNI_SOCKET in
// the runtime's environment, which libcni passes on to the plugin).
// Skipped when containerd, ctr, runc or busybox are not installed (Debian: containerd runc busybox-static).
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ip, stop } from "../helpers/netns.js";
import { Topology, waitFor, type DaemonProc, type Pod } from "../helpers/topology.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const have = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;

/** libcni's result cache (/var/lib/cni/results, no flag moves it): removed when the test made it,
 *  else only the entries of the test's network. */
function cniCache(): () => void {
  const existed = fs.existsSync("/var/lib/cni");
  return () => {
    if (!existed) { fs.rmSync("/var/lib/cni", { recursive: true, force: true }); return; }
    for (const f of fs.existsSync("/var/lib/cni/results") ? fs.readdirSync("/var/lib/cni/results") : []) {
      if (f.startsWith("waspnet-")) fs.rmSync(join("/var/lib/cni/results", f), { force: true });
    }
  };
}

/** A node with the daemon serving ClusterIP 10.96.0.50:80 -> a backend pod's :8080 (answers with
 *  the addresses it saw, then closes), CNI socket beside the control socket. */
async function nodeWithClusterIP(): Promise<{ t: Topology; daemon: DaemonProc; backend: Pod; cniSocket: string }> {
  const t = new Topology();
  const backend = await t.addPod("backend");
  t.writeConfig({
    mode: "tun", node: { name: "node-a", underlayIP: t.nodeIp, podCIDR: t.podCidr },
    serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16",
    services: [{ name: "web", clusterIP: "10.96.0.50", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: backend.ip }] }],
  });
  await t.serve(backend.ns, [8080]);
  const daemon = await t.startDaemon();
  const cniSocket = join(t.work, "run", "cni.sock");
  assert.ok(fs.existsSync(cniSocket), "the daemon's CNI socket");
  return { t, daemon, backend, cniSocket };
}

/** What the container runs: its address and routes, a ping of the node, then the ClusterIP. */
const CONTAINER_SCRIPT = "ip addr show eth0; ip route; ping -c2 -W2 10.244.1.1; echo; nc -w 5 10.96.0.50 80 </dev/null; echo";

/** The container's eth0 address and what the backend saw of its connection to the ClusterIP. */
function checkContainerOutput(out: string, backend: Pod): void {
  const mine = /inet (10\.244\.1\.\d+)\/32/.exec(out);
  assert.ok(mine, out);
  assert.match(out, /default via 169\.254\.1\.1 dev eth0/, out);
  assert.match(out, /2 packets transmitted, 2 packets received/, out);
  const line = out.split("\n").find((l) => l.startsWith("{"));
  assert.ok(line, `no answer from the ClusterIP:\n${out}`);
  const seen = JSON.parse(line) as { local: string; remote: string };
  assert.equal(seen.local, backend.ip, "DNAT to the backend pod");
  assert.equal(seen.remote, mine[1], "pod to ClusterIP keeps the pod's source address");
}

/** Whether the daemon's log names a CNI call of this command (the fast path took it). */
const daemonAnswered = (d: DaemonProc, command: string) =>
  d.lines().some((l) => l.msg === "cni call" && l.command === command);

describe("container runtime: containerd + ctr run --cni wires a container through dist/wasp (integration, needs root)", function () {
  this.timeout(180_000);
  let work = "", node = "", sock = "", cniSocket = "";
  let t: Topology | undefined, daemon: DaemonProc, backend: Pod;
  let containerd: ChildProcess | undefined;
  let log = "";
  const made: string[] = []; // global paths this test created, removed in reverse order
  const conflist = `/etc/cni/net.d/00-wasp-t-${process.pid}.conflist`;
  const ctrNs = `wasp-t-${process.pid}`;
  // containerd's runc shim keeps its state under /run/containerd whatever the config says
  const runDirExisted = fs.existsSync("/run/containerd");
  const dropCniCache = cniCache();

  before(async function () {
    if (!["containerd", "ctr", "runc", "busybox"].every(have)) this.skip();
    if (fs.existsSync("/opt/cni/bin/wasp")) this.skip(); // someone else's wasp there: leave it alone
    if (!fs.existsSync(join(ROOT, "dist/wasp"))) {
      execFileSync("npm", ["run", "--silent", "build:sea"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    }
    work = fs.mkdtempSync(join(tmpdir(), "wasp-ctr-"));

    // busybox rootfs
    const rootfs = join(work, "rootfs");
    for (const d of ["bin", "proc", "sys", "dev", "etc", "tmp", "run"]) fs.mkdirSync(join(rootfs, d), { recursive: true });
    fs.copyFileSync(execFileSync("sh", ["-c", "command -v busybox"], { encoding: "utf8" }).trim(), join(rootfs, "bin/busybox"));
    fs.chmodSync(join(rootfs, "bin/busybox"), 0o755);
    for (const a of ["sh", "ip", "ping", "cat", "sleep"]) fs.symlinkSync("busybox", join(rootfs, "bin", a));
    fs.writeFileSync(join(rootfs, "etc/passwd"), "root:x:0:0:root:/:/bin/sh\n");
    fs.writeFileSync(join(rootfs, "etc/group"), "root:x:0:\n");

    ({ t, daemon, backend, cniSocket } = await nodeWithClusterIP());
    node = t.node;

    // the plugin and its conflist where ctr looks
    for (const d of ["/opt/cni", "/opt/cni/bin", "/etc/cni", "/etc/cni/net.d"]) {
      if (!fs.existsSync(d)) { fs.mkdirSync(d); made.push(d); }
    }
    for (const f of ["wasp_native.node", "wasp-node", "wasp"]) { // as installed: the front door and what it runs
      if (fs.existsSync(`/opt/cni/bin/${f}`)) continue;
      fs.copyFileSync(join(ROOT, "dist", f), `/opt/cni/bin/${f}`);
      made.push(`/opt/cni/bin/${f}`);
      fs.chmodSync(`/opt/cni/bin/${f}`, 0o755);
    }
    fs.writeFileSync(conflist, JSON.stringify({ cniVersion: "1.0.0", name: "waspnet",
      plugins: [{ type: "wasp", podCIDR: t.podCidr, dataDir: join(t.work, "ipam") }] }));
    made.push(conflist);
    const first = fs.readdirSync("/etc/cni/net.d").filter((f) => /\.(conflist|conf|json)$/.test(f)).sort()[0];
    assert.equal(`/etc/cni/net.d/${first}`, conflist, "ctr takes the lexically first conflist");

    // containerd with private state, in the node namespace (nsenter execs it: the PID is containerd's)
    const cd = join(work, "ctrd");
    fs.mkdirSync(cd);
    sock = join(cd, "containerd.sock");
    fs.writeFileSync(join(cd, "config.toml"), [
      "version = 2", `root = "${cd}/root"`, `state = "${cd}/state"`, 'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]", `  address = "${sock}"`, "[ttrpc]", `  address = "${sock}.ttrpc"`,
      '[plugins."io.containerd.internal.v1.opt"]', `  path = "${cd}/opt"`, ""].join("\n")); // not /opt/containerd
    containerd = spawn("nsenter", [`--net=/var/run/netns/${node}`, "containerd", "--config", join(cd, "config.toml")],
      { stdio: ["ignore", "pipe", "pipe"] });
    containerd.stdout!.on("data", (d: Buffer) => { log += d.toString(); });
    containerd.stderr!.on("data", (d: Buffer) => { log += d.toString(); });
    await waitFor(() => containerd!.exitCode !== null ||
      spawnSync("ctr", ["-a", sock, "version"], { stdio: "ignore", timeout: 5000 }).status === 0, "containerd to serve", 30_000);
    assert.equal(containerd.exitCode, null, log);
  });

  after(async () => {
    if (containerd) await stop(containerd);
    fs.rmSync(runDirExisted ? `/run/containerd/runc/${ctrNs}` : "/run/containerd", { recursive: true, force: true });
    dropCniCache();
    for (const p of made.reverse()) {
      try {
        if (fs.statSync(p).isDirectory()) fs.rmdirSync(p); // only if empty: never anyone else's files
        else fs.rmSync(p);
      } catch { /* gone, or not empty */ }
    }
    await t?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it("the container gets eth0 10.244.1.x/32 with 'default via 169.254.1.1', pings the node and reaches a ClusterIP through the daemon, which also answered ADD and DEL; after --rm its lease and host veth are gone", async () => {
    const id = `wasp-t-${process.pid}`;
    const r = spawnSync("nsenter", [`--net=/var/run/netns/${node}`, "ctr", "-a", sock, "-n", ctrNs, "run", "--rm", "--cni",
      "--rootfs", join(work, "rootfs"), id, "/bin/sh", "-c", CONTAINER_SCRIPT],
    { encoding: "utf8", timeout: 120_000, env: { ...process.env, WASP_CNI_SOCKET: cniSocket } });
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 0, `${out}\ncontainerd:\n${log.slice(-3000)}`);
    checkContainerOutput(out, backend);
    // spawnSync held this event loop: the daemon's log lines come in now
    await waitFor(() => daemonAnswered(daemon, "ADD") && daemonAnswered(daemon, "DEL"), `the daemon's log of ctr's ADD and DEL`, 5000)
      .catch((e: Error) => assert.fail(`${e.message}:\n${daemon.log().slice(-3000)}`));
    // DEL came with an empty CNI_NETNS (the task had exited): the lease and the host side are gone anyway
    const leases = fs.readdirSync(join(t!.work, "ipam", "waspnet")).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
    assert.deepEqual(leases, [backend.ip], "only the backend pod's lease is left");
    assert.equal(JSON.parse(ip(node, "-j", "link", "show")).map((l: { ifname: string }) => l.ifname)
      .filter((n: string) => /^wasp[0-9a-f]{11}$/.test(n)).length, 1, "only the backend pod's host veth is left");
  });
});

// podman 4.3 with its CNI backend, everything redirected into a temp dir through CONTAINERS_CONF
// (cni_plugin_dirs, network_config_dir, storage): no global path is touched. podman validates a
// conflist by running VERSION with CNI_NETNS=dummy; a plugin that refuses that call gets its network
// dropped and podman silently runs the container on its built-in 10.88.0.0/16 network instead, so
// the assertions name wasp's own addressing (/32, default via 169.254.1.1), never just a ping.
describe("container runtime: podman (CNI backend) wires a container through dist/wasp (integration, needs root)", function () {
  this.timeout(180_000);
  let work = "", node = "", cniSocket = "";
  let t: Topology | undefined, daemon: DaemonProc, backend: Pod;

  before(async function () {
    if (!["podman", "runc", "busybox", "nsenter"].every(have)) this.skip();
    if (!fs.existsSync(join(ROOT, "dist/wasp"))) {
      execFileSync("npm", ["run", "--silent", "build:sea"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    }
    // podman's own probe: a plugin that refuses it is silently replaced by podman's bridge.
    const probe = spawnSync(join(ROOT, "dist/wasp"), [], { input: '{"cniVersion":"1.0.0"}', encoding: "utf8",
      env: { ...process.env, CNI_COMMAND: "VERSION", CNI_CONTAINERID: "", CNI_NETNS: "dummy", CNI_IFNAME: "dummy", CNI_PATH: "dummy" } });
    assert.equal(probe.status, 0, `wasp refuses podman's VERSION probe with CNI_NETNS=dummy: ${probe.stdout.trim()}`);
    ({ t, daemon, backend, cniSocket } = await nodeWithClusterIP());
    node = t.node;
    work = fs.mkdtempSync(join(tmpdir(), "wasp-podman-"));
    const rootfs = join(work, "rootfs");
    for (const d of ["bin", "proc", "sys", "dev", "etc", "tmp", "run"]) fs.mkdirSync(join(rootfs, d), { recursive: true });
    fs.copyFileSync(execFileSync("sh", ["-c", "command -v busybox"], { encoding: "utf8" }).trim(), join(rootfs, "bin/busybox"));
    fs.chmodSync(join(rootfs, "bin/busybox"), 0o755);
    for (const a of ["sh", "ip", "ping", "cat"]) fs.symlinkSync("busybox", join(rootfs, "bin", a));
    fs.writeFileSync(join(rootfs, "etc/passwd"), "root:x:0:0:root:/:/bin/sh\n");
    fs.writeFileSync(join(rootfs, "etc/group"), "root:x:0:\n");
    for (const d of ["bin", "net.d", "tmp"]) fs.mkdirSync(join(work, d));
    for (const f of ["wasp", "wasp-node", "wasp_native.node"]) {
      fs.copyFileSync(join(ROOT, "dist", f), join(work, "bin", f));
      fs.chmodSync(join(work, "bin", f), 0o755);
    }
    fs.writeFileSync(join(work, "containers.conf"), [
      "[containers]", 'netns = "bridge"', "[network]", 'network_backend = "cni"',
      `cni_plugin_dirs = ["${work}/bin", "/usr/lib/cni"]`, `network_config_dir = "${work}/net.d"`, 'default_network = "waspnet"',
      "[engine]", 'cgroup_manager = "cgroupfs"', 'events_logger = "file"', `events_logfile_path = "${work}/events.log"`,
      `tmp_dir = "${work}/tmp"`, ""].join("\n"));
    fs.writeFileSync(join(work, "net.d/50-waspnet.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "waspnet",
      plugins: [{ type: "wasp", podCIDR: t.podCidr, dataDir: join(t.work, "ipam") }] }));
  });
  const runcRootExisted = fs.existsSync("/run/runc"); // runc's default state dir, used by podman
  const dropCniCache = cniCache();
  after(async () => {
    await t?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
    if (!runcRootExisted) try { fs.rmdirSync("/run/runc"); } catch { /* absent or in use */ }
    dropCniCache();
  });

  it("podman run --network waspnet: eth0 10.244.1.x/32, 'default via 169.254.1.1', pings the node and reaches a ClusterIP through the daemon, which also answered the ADD; --rm releases the lease", async () => {
    const r = spawnSync("nsenter", [`--net=/var/run/netns/${node}`, "podman", "--root", join(work, "root"), "--runroot", join(work, "run"),
      "--storage-driver", "vfs", "--runtime", "runc", "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
      "--network", "waspnet", "--rootfs", join(work, "rootfs"), "/bin/sh", "-c", CONTAINER_SCRIPT],
    { encoding: "utf8", timeout: 120_000, env: { ...process.env, CONTAINERS_CONF: join(work, "containers.conf"), WASP_CNI_SOCKET: cniSocket } });
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 0, out);
    checkContainerOutput(out, backend);
    // spawnSync held this event loop: the daemon's log lines come in now
    // (podman's DEL comes from `podman container cleanup`, which conmon starts without this
    // environment: it finds no daemon at the default socket and runs the plugin in wasp-node)
    await waitFor(() => daemonAnswered(daemon, "ADD"), "the daemon's log of podman's ADD", 5000)
      .catch((e: Error) => assert.fail(`${e.message}:\n${daemon.log().slice(-3000)}`));
    const leases = fs.readdirSync(join(t!.work, "ipam", "waspnet")).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
    assert.deepEqual(leases, [backend.ip], "only the backend pod's lease is left");
  });
});
