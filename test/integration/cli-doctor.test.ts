// `wasp doctor` run inside a test node namespace (ip netns exec) with a daemon and a pod: silent on
// the healthy node; then each pitfall is made inside that namespace (or in the test's own IPAM and
// CNI config dirs) and doctor must name it, with its fix, and exit 1; undone, it is silent again.
import { strict as assert } from "node:assert";
import { execFileSync, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { Cli, type Run } from "../helpers/cli.js";
import { execPlugin } from "../helpers/cni-driver.js";
import { deleteNs, inNs, ip, makeNs, spawnInNs, stop, sysctl } from "../helpers/netns.js";
import { NODE_IP, POD_CIDR, Topology, waitFor, type Pod } from "../helpers/topology.js";

describe("wasp doctor: silent on a healthy node, names each pitfall made in a test namespace (integration, needs root)", function () {
  this.timeout(90_000);
  let cli: Cli;
  let t: Topology;
  let pod: Pod;
  let cniDir = "";
  let cniSocket = "";
  const conflist = (over: Record<string, unknown> = {}) => JSON.stringify({
    cniVersion: "1.0.0", name: "waspnet", plugins: [{ type: "wasp", podCIDR: POD_CIDR, dataDir: join(t.work, "ipam"), cniSocket, ...over }],
  });

  const config = {
    mode: "tun",
    node: { name: "node-a", underlayIP: NODE_IP, podCIDR: POD_CIDR },
    serviceCIDR: "10.96.0.0/16",
    clusterCIDR: "10.244.0.0/16",
    services: [{ name: "web", clusterIP: "10.96.0.10", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [] as Array<{ ip: string }> }],
  };

  const doctor = async (...extra: string[]): Promise<{ run: Run; findings: Record<string, { level: string; detail: string; fix?: string }> }> => {
    const run = await cli.run(["doctor", "--json", "--socket", t.socketPath, "--ipam-dir", join(t.work, "ipam"), "--cni-conf-dir", cniDir, ...extra], { ns: t.node });
    let j: any;
    try { j = JSON.parse(run.stdout); } catch { throw new Error(`doctor printed no JSON (exit ${run.status}): ${run.stdout}${run.stderr}`); }
    return { run, findings: Object.fromEntries(j.findings.map((f: any) => [f.check, f])) };
  };

  before(async () => {
    cli = await Cli.build();
    t = new Topology();
    pod = await t.addPod("pod");
    config.services[0]!.backends = [{ ip: pod.ip }];
    t.writeConfig(config);
    cniDir = join(t.work, "net.d");
    cniSocket = join(t.work, "run", "cni.sock");
    mkdirSync(cniDir);
    writeFileSync(join(cniDir, "10-wasp.conflist"), conflist());
    await t.startDaemon();
  });

  after(async () => {
    await t?.destroy();
    cli?.remove();
  });

  it("a healthy node: every check passes, the datapath answers a TCP connection to a service through the engine, exit 0; the run adds no drop to the daemon's counters", async () => {
    const drops = async () => Object.values(JSON.parse((await cli.run(["counters", "--json", "--socket", t.socketPath])).stdout).drops as Record<string, number>).reduce((a, b) => a + b, 0);
    const before = await drops();
    const { run, findings } = await doctor();
    assert.equal(run.status, 0, run.stdout + run.stderr);
    for (const [name, f] of Object.entries(findings)) assert.equal(f.level, "ok", `${name}: ${f.detail}`);
    assert.match(findings.daemon!.detail, /a TCP connection to 10\.96\.0\.10:80 went through the engine both ways \(refused by the backend: nothing listens on its port\) in [\d.]+ ms/);
    assert.match(findings.daemon!.detail, /, 1 service entry, /);
    assert.match(findings["CNI socket"]!.detail, new RegExp(`dist/wasp reaches the daemon at ${cniSocket} \\(.*10-wasp\\.conflist\\)`));
    assert.equal(findings["wasp networks"]!.detail, `1 wasp network (waspnet: 10.244.1.0/24 in ${join(t.work, "ipam")}), one IPAM store per pod CIDR`);
    assert.equal(await drops(), before, "doctor's own probe added a drop");
    assert.match(findings["IPAM records"]!.detail, /1 address allocated under .*, each routed to a live pod/);
    assert.match(findings.offload!.detail, /the kernel has conntrack, NAT and ctnetlink for offload mode; the daemon runs offload mode/);
    const text = await cli.run(["doctor", "--socket", t.socketPath, "--ipam-dir", join(t.work, "ipam"), "--cni-conf-dir", cniDir], { ns: t.node });
    assert.equal(text.status, 0);
    assert.match(text.stdout, /^CHECK +RESULT +DETAIL$/m);
    assert.match(text.stdout, /^no problem found$/m);
  });

  it("each pitfall made in the namespace is named with its fix, exit 1; undone, doctor is silent again", async () => {
    const overlap = join(t.work, "overlap.json");
    writeFileSync(overlap, JSON.stringify({ ...config, serviceCIDR: "10.244.128.0/17" }));
    const stale = join(t.work, "ipam", "waspnet", "10.244.1.200");
    let squatter: ChildProcess | undefined;
    try {
      sysctl(t.node, "net.ipv4.ip_forward", 0);
      sysctl(t.node, "net.ipv4.conf.wasp0.rp_filter", 1);
      ip(t.node, "link", "set", "eth0", "mtu", "1400");
      inNs(t.node, "iptables", "-t", "nat", "-N", "KUBE-SERVICES");
      inNs(t.node, "iptables", "-P", "FORWARD", "DROP");
      ip(t.node, "route", "add", "10.96.7.0/24", "dev", "eth0");
      writeFileSync(stale, "0123456789abcdef\neth0");
      // a conflist that misspells mtu and leaves cniSocket out, and a second network on the same podCIDR with its own store
      writeFileSync(join(cniDir, "10-wasp.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "waspnet", plugins: [{ type: "wasp", podCIDR: POD_CIDR, dataDir: join(t.work, "ipam"), mut: 1400 }] }));
      writeFileSync(join(cniDir, "20-other.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "othernet", plugins: [{ type: "wasp", podCIDR: POD_CIDR, cniSocket, dataDir: join(t.work, "ipam2") }] }));
      squatter = spawnInNs(t.node, process.execPath, ["-e",
        'const s = require("node:dgram").createSocket("udp4"); s.bind(8472, "0.0.0.0", () => console.log("bound"));']);
      let out = "";
      squatter.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
      await waitFor(() => out.includes("bound"), "the squatter to bind UDP 8472");

      const { run, findings } = await doctor("--config", overlap, "--dev-tun", join(t.work, "no-tun"));
      assert.equal(run.status, 1, run.stdout + run.stderr);
      const f = (name: string, detail: RegExp, fix: RegExp) => {
        assert.equal(findings[name]?.level, "fail", `${name}: ${JSON.stringify(findings[name])}`);
        assert.match(findings[name]!.detail, detail);
        assert.match(findings[name]!.fix ?? "", fix);
      };
      f("ip forwarding", /net\.ipv4\.ip_forward = 0/, /sysctl -w net\.ipv4\.ip_forward=1/);
      f("rp_filter", /strict reverse-path filtering \(1\) on wasp0/, /rp_filter=0/);
      f("/dev/net/tun", /no-tun: ENOENT/, /modprobe tun/);
      f("pod MTU vs underlay MTU", /config says underlayMTU 1500 but eth0 has MTU 1400.*gives pods MTU 1450, more than eth0's MTU 1400 - 50 \(VXLAN\) = 1350.*pod veths with MTU above 1350/, /"mtu": 1350/);
      f("config", /overlap\.json is invalid \(2 problems\): .*serviceCIDR is "10\.244\.128\.0\/17", overlapping clusterCIDR/, /correct .*overlap\.json/);
      f("CIDR overlaps", /serviceCIDR 10\.96\.0\.0\/16 overlaps route 10\.96\.7\.0\/24 dev eth0/, /addresses of their own/);
      f("kube-proxy leftovers", /iptables-save: chains KUBE-SERVICES/, /kube-proxy --cleanup/);
      assert.equal(findings["FORWARD firewall"]?.level, "warn", JSON.stringify(findings["FORWARD firewall"]));
      assert.match(findings["FORWARD firewall"]!.detail, /iptables FORWARD policy DROP and no rule accepting wasp0 or wasp0tnl/);
      assert.match(findings["FORWARD firewall"]!.fix ?? "", /iptables -I FORWARD -i wasp0tnl -j ACCEPT/);
      f("IPAM records", /1 of 2 records belong to containers that no longer exist.*waspnet\/10\.244\.1\.200 \(container 0123456789ab\)/, /CNI GC.*rm .*10\.244\.1\.200/);
      f("VXLAN port", /UDP 8472 is taken by node \(pid \d+\)/, /another vxlan\.port/);
      f("wasp networks", /10-wasp\.conflist: mut is not a field the wasp plugin reads; did you mean mtu\?.*10-wasp\.conflist \(network waspnet\) and .*20-other\.conflist \(network othernet\) share pod addresses \(10\.244\.1\.0\/24\) but keep them in two IPAM stores/,
        /same name and dataDir \(one store\), or disjoint podCIDRs/);
      assert.equal(findings["CNI socket"]?.level, "warn", JSON.stringify(findings["CNI socket"]));
      assert.match(findings["CNI socket"]!.detail, /10-wasp\.conflist names no cniSocket, so dist\/wasp asks \/run\/wasp\/cni\.sock, but the daemon's CNI socket is .*cni\.sock: a runtime call without WASP_CNI_SOCKET \(podman's cleanup DEL\) runs in wasp-node/);
      assert.match(findings["CNI socket"]!.fix ?? "", /add "cniSocket": ".*cni\.sock" to the wasp plugin's entry in .*10-wasp\.conflist/);
      const text = await cli.run(["doctor", "--socket", t.socketPath, "--ipam-dir", join(t.work, "ipam"), "--cni-conf-dir", cniDir, "--dev-tun", join(t.work, "no-tun")], { ns: t.node });
      assert.equal(text.status, 1);
      assert.match(text.stdout, /^\d+ problems:$/m);
      assert.match(text.stdout, /^ {4}fix: sysctl -w net\.ipv4\.ip_forward=1/m);
    } finally {
      writeFileSync(join(cniDir, "10-wasp.conflist"), conflist());
      rmSync(join(cniDir, "20-other.conflist"), { force: true });
      if (squatter) await stop(squatter);
      rmSync(stale, { force: true });
      try { inNs(t.node, "iptables", "-t", "nat", "-X", "KUBE-SERVICES"); } catch { /* not made */ }
      try { inNs(t.node, "iptables", "-P", "FORWARD", "ACCEPT"); } catch { /* not made */ }
      try { ip(t.node, "route", "del", "10.96.7.0/24", "dev", "eth0"); } catch { /* not made */ }
      ip(t.node, "link", "set", "eth0", "mtu", "1500");
      sysctl(t.node, "net.ipv4.conf.wasp0.rp_filter", 0);
      sysctl(t.node, "net.ipv4.ip_forward", 1);
    }
    const again = await doctor();
    assert.equal(again.run.status, 0, again.run.stdout);
  });

  it("a pod added through the front door (dist/wasp, compiled here) without WASP_CNI_SOCKET reaches the daemon by the conflist's cniSocket; status counts it; doctor finds that network's IPAM store without --ipam-dir, and a call that found no daemon is named", async () => {
    const fd = join(t.work, "front");
    mkdirSync(fd);
    execFileSync("cc", ["-O2", "-o", join(fd, "wasp"), join(new URL("../../native/front/wasp-front.c", import.meta.url).pathname)]);
    symlinkSync(new URL("../../bin/wasp-dev", import.meta.url).pathname, join(fd, "wasp-node"));
    const store = join(t.work, "ipam");
    const conf = { cniVersion: "1.0.0", name: "waspnet", type: "wasp", podCIDR: POD_CIDR, dataDir: store, cniSocket };
    const pod2 = makeNs("front");
    try {
      const add = await execPlugin(join(fd, "wasp"), { command: "ADD", containerId: "cid-front", netns: `/var/run/netns/${pod2}`, ifname: "eth0", path: fd, config: conf, nodeNs: t.node, extraEnv: { WASP_CNI_SOCKET: "" } });
      assert.equal(add.exitCode, 0, add.stdout + add.stderr);
      const st = JSON.parse((await cli.run(["status", "--json", "--socket", t.socketPath])).stdout);
      assert.equal(st.cni.socket, cniSocket);
      assert.ok(st.cni.answered >= 1, `the daemon answered the ADD: ${JSON.stringify(st.cni)}`);
      assert.deepEqual(st.cni.networks.map((n: { name: string; dataDir: string }) => [n.name, n.dataDir]), [["waspnet", store]]);
      const statusText = await cli.run(["status", "--socket", t.socketPath]);
      assert.match(statusText.stdout, new RegExp(`^cni socket: +${cniSocket}: \\d+ calls? answered, 0 declined$`, "m"));
      // no --ipam-dir and no --cni-conf-dir: the store comes from the networks the daemon served
      const run = await cli.run(["doctor", "--json", "--socket", t.socketPath], { ns: t.node });
      const ipam = JSON.parse(run.stdout).findings.find((x: any) => x.check === "IPAM records");
      assert.match(ipam.detail, new RegExp(`allocated under .*${store}`), ipam.detail);
      // a DEL whose config names a socket where nothing listens runs in wasp-node, which records it beside that socket
      const lost = join(t.work, "run", "elsewhere.sock");
      const del = await execPlugin(join(fd, "wasp"), { command: "DEL", containerId: "cid-front", netns: `/var/run/netns/${pod2}`, ifname: "eth0", path: fd, config: { ...conf, cniSocket: lost }, nodeNs: t.node, extraEnv: { WASP_CNI_SOCKET: "" } });
      assert.equal(del.exitCode, 0, del.stdout + del.stderr);
      const rec = JSON.parse(execFileSync("tail", ["-n", "1", join(t.work, "run", "cni-fallback.log")], { encoding: "utf8" }));
      assert.deepEqual([rec.command, rec.containerId, rec.socket, rec.why], ["DEL", "cid-front", lost, `no daemon answers at ${lost} (ENOENT: no socket)`]);
      const again = JSON.parse((await cli.run(["doctor", "--json", "--socket", t.socketPath, "--cni-conf-dir", cniDir], { ns: t.node })).stdout);
      const sockFinding = again.findings.find((x: any) => x.check === "CNI socket");
      assert.equal(sockFinding.level, "warn", JSON.stringify(sockFinding));
      assert.match(sockFinding.detail, /1 call since the daemon started found no daemon and ran in wasp-node \(last: DEL of cid-front at .*: no daemon answers at .*elsewhere\.sock/);
    } finally {
      deleteNs(pod2);
      rmSync(join(t.work, "run", "cni-fallback.log"), { force: true });
    }
  });

  it("without a daemon: the daemon check fails naming the socket and how to start it, exit 1", async () => {
    const missing = join(t.work, "gone.sock");
    const run = await cli.run(["doctor", "--json", "--socket", missing, "--ipam-dir", join(t.work, "ipam"), "--cni-conf-dir", cniDir], { ns: t.node });
    assert.equal(run.status, 1);
    const d = JSON.parse(run.stdout).findings.find((x: any) => x.check === "daemon");
    assert.equal(d.level, "fail");
    assert.ok(d.detail.includes(`no control socket at ${missing}`), d.detail);
    assert.match(d.fix, /wasp daemon --config FILE/);
  });
});
