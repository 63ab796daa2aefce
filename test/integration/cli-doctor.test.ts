// `wasp doctor` run inside a test node namespace (ip netns exec) with a daemon and a pod: silent on
// the healthy node; then each pitfall is made inside that namespace (or in the test's own IPAM and
// CNI config dirs) and doctor must name it, with its fix, and exit 1; undone, it is silent again.
import { strict as assert } from "node:assert";
import { mkdirSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { Cli, type Run } from "../helpers/cli.js";
import { inNs, ip, spawnInNs, stop, sysctl } from "../helpers/netns.js";
import { NODE_IP, POD_CIDR, Topology, waitFor, type Pod } from "../helpers/topology.js";

describe("wasp doctor: silent on a healthy node, names each pitfall made in a test namespace (integration, needs root)", function () {
  this.timeout(90_000);
  let cli: Cli;
  let t: Topology;
  let pod: Pod;
  let cniDir = "";

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
    mkdirSync(cniDir);
    writeFileSync(join(cniDir, "10-wasp.conflist"), JSON.stringify({
      cniVersion: "1.0.0", name: "waspnet", plugins: [{ type: "wasp", podCIDR: POD_CIDR }],
    }));
    await t.startDaemon();
  });

  after(async () => {
    await t?.destroy();
    cli?.remove();
  });

  it("a healthy node: every check passes, the datapath answers a raw-socket ICMP probe to a VIP, exit 0", async () => {
    const { run, findings } = await doctor();
    assert.equal(run.status, 0, run.stdout + run.stderr);
    for (const [name, f] of Object.entries(findings)) assert.equal(f.level, "ok", `${name}: ${f.detail}`);
    assert.match(findings.daemon!.detail, /ICMP echo to 10\.96\.0\.10 answered by the engine \((echo reply|ICMP unreachable)\) in [\d.]+ ms/);
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
      const text = await cli.run(["doctor", "--socket", t.socketPath, "--ipam-dir", join(t.work, "ipam"), "--cni-conf-dir", cniDir, "--dev-tun", join(t.work, "no-tun")], { ns: t.node });
      assert.equal(text.status, 1);
      assert.match(text.stdout, /^\d+ problems:$/m);
      assert.match(text.stdout, /^ {4}fix: sysctl -w net\.ipv4\.ip_forward=1/m);
    } finally {
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
