// The scale benchmark's rule generators (bench/scale/rules.ts) make what they claim: chain names
// equal to kube-proxy's own (the names in kube-proxy's unit tests), input that iptables-restore and
// nft accept inside a namespace, and, read back from the kernel (iptables-save, nft -j list), the
// chain counts, the 1/n probabilities and the verdict map the bench relies on.
import { strict as assert } from "node:assert";
import { deleteNs, inNs, makeNs, sh } from "../../helpers/netns.js";
import {
  changeIndexes, iptablesRestore, iptChains, iptSepChain, iptSvcChain, ipvsRestore, nftEndpointChain, nftRuleset, nftSvcChain,
  nftUpdate, probability, serviceSet, withChangedBackends, type ScaleService,
} from "../../../bench/scale/rules.js";

const PORTS = [
  { name: "http", port: 80, protocol: "TCP" as const, targetPort: 8080 },
  { name: "stream", port: 9000, protocol: "UDP" as const, targetPort: 9000 },
];
const set = (count: number) =>
  serviceSet({ count, serviceBase: "10.96.0.0", targetBackends: ["10.244.1.5", "10.244.1.250"], fillerBackendBase: "10.244.128.0", targetPorts: PORTS });

/** kube-proxy's ns1/svc1 port p80 -> 10.180.0.1:80, as in its proxier tests. */
const SVC1: ScaleService = {
  namespace: "ns1", name: "svc1", clusterIP: "172.30.0.41",
  ports: [{ name: "p80", port: 80, protocol: "TCP", targetPort: 80 }], backends: ["10.180.0.1"],
};

describe("bench/scale rules: the service set", () => {
  it("makes N services with 2 endpoints each, distinct VIPs, and the target last", () => {
    const s = set(1000);
    assert.equal(s.length, 1000);
    assert.ok(s.every((x) => x.backends.length === 2));
    assert.equal(new Set(s.map((x) => x.clusterIP)).size, 1000);
    assert.equal(s[999]!.name, "target");
    assert.deepEqual(s[999]!.backends, ["10.244.1.5", "10.244.1.250"]);
    assert.equal(s[999]!.clusterIP, "10.96.3.232"); // 10.96.0.0 + 1000
  });

  it("changes the second endpoint of exactly the chosen services, never the target", () => {
    const s = set(500);
    const idx = changeIndexes(500, 100);
    assert.equal(idx.length, 100);
    assert.equal(new Set(idx).size, 100);
    assert.ok(idx.every((i) => i >= 0 && i < 499));
    const t = withChangedBackends(s, idx, 1, "10.244.64.0");
    const changed = t.filter((x, i) => x.backends.join() !== s[i]!.backends.join()).length;
    assert.equal(changed, 100);
    assert.deepEqual(t[499], s[499]);
    assert.deepEqual(changeIndexes(1, 100), []);
  });

  it("refuses a service count below 1", () => {
    assert.throws(() => set(0), /service count is 0/);
  });
});

describe("bench/scale rules: names as kube-proxy makes them", () => {
  // Expected names: kubernetes pkg/proxy/iptables/proxier_test.go and pkg/proxy/nftables/proxier_test.go.
  it("KUBE-SVC and KUBE-SEP names equal kube-proxy's for ns1/svc1:p80 -> 10.180.0.1:80", () => {
    assert.equal(iptSvcChain(SVC1, SVC1.ports[0]!), "KUBE-SVC-XPGD46QRK7WJZT7O");
    assert.equal(iptSepChain(SVC1, SVC1.ports[0]!, "10.180.0.1"), "KUBE-SEP-SXIVWICOYRO3J4NJ");
  });

  it("nftables service and endpoint chain names equal kube-proxy's", () => {
    assert.equal(nftSvcChain(SVC1, SVC1.ports[0]!), "service-ULMVA6XW-ns1/svc1/tcp/p80");
    assert.equal(nftEndpointChain(SVC1, SVC1.ports[0]!, "10.180.0.1"), "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80");
  });

  it("writes probabilities 1/(n-i) with ten decimals, as kube-proxy's %0.10f", () => {
    assert.equal(probability(2), "0.5000000000");
    assert.equal(probability(3), "0.3333333333");
  });
});

describe("bench/scale rules: accepted and read back by the kernel", function () {
  this.timeout(120000);
  let ns = "";
  before(() => { ns = makeNs("scale"); });
  after(() => deleteNs(ns));

  it("iptables-restore --test accepts the full sync (nf_tables and legacy backends)", () => {
    const text = iptablesRestore(set(50), "10.244.0.0/16");
    inNs(ns, "iptables-nft-restore", "--test", "--noflush"); // empty input: the tool runs here
    sh("ip", ["netns", "exec", ns, "iptables-nft-restore", "--test", "--noflush"], text);
    sh("ip", ["netns", "exec", ns, "iptables-legacy-restore", "--test", "--noflush"], text);
  });

  it("loaded, has one KUBE-SVC per service port, one KUBE-SEP per endpoint, the target last in KUBE-SERVICES", () => {
    const s = set(200);
    sh("ip", ["netns", "exec", ns, "iptables-legacy-restore", "--noflush"], iptablesRestore(s, "10.244.0.0/16"));
    try {
      const saved = inNs(ns, "iptables-legacy-save", "-t", "nat");
      const chains = saved.split("\n").filter((l) => l.startsWith(":KUBE-"));
      const ports = 199 + PORTS.length;
      assert.equal(chains.filter((l) => l.startsWith(":KUBE-SVC-")).length, ports);
      assert.equal(chains.filter((l) => l.startsWith(":KUBE-SEP-")).length, 2 * ports);
      const svcRules = saved.split("\n").filter((l) => l.startsWith("-A KUBE-SERVICES "));
      // The target's ports are met last, then only the NodePort jump that kube-proxy keeps last.
      assert.match(svcRules[svcRules.length - 2]!, /10\.96\.0\.200\/32 .*--dport 9000/);
      assert.match(svcRules[svcRules.length - 1]!, /KUBE-NODEPORTS/);
      // The kernel stores the probability as a 32-bit fraction; iptables-save prints it back.
      const stat = saved.split("\n").filter((l) => l.includes("--probability"));
      assert.equal(stat.length, ports);
      for (const l of stat) assert.ok(Math.abs(Number(/--probability (\S+)/.exec(l)![1]) - 0.5) < 1e-6, l);
      assert.equal(saved.split("\n").filter((l) => l.includes("-j DNAT")).length, 2 * ports);
    } finally {
      inNs(ns, "iptables-legacy", "-t", "nat", "-F");
      inNs(ns, "iptables-legacy", "-t", "nat", "-X");
      inNs(ns, "iptables-legacy", "-t", "filter", "-F");
      inNs(ns, "iptables-legacy", "-t", "filter", "-X");
    }
  });

  it("a three-endpoint service gets probabilities 1/3, 1/2, then the rest", () => {
    const three: ScaleService = { ...SVC1, backends: ["10.180.0.1", "10.180.0.2", "10.180.0.3"] };
    const text = iptablesRestore([three], "10.0.0.0/8");
    const probs = [...text.matchAll(/--probability (\S+)/g)].map((m) => m[1]);
    assert.deepEqual(probs, ["0.3333333333", "0.5000000000"]);
    const svcJumps = text.split("\n").filter((l) => l.startsWith("-A KUBE-SVC-XPGD46QRK7WJZT7O ") && l.includes("-j KUBE-SEP-"));
    assert.equal(svcJumps.length, 3);
    assert.ok(!svcJumps[2]!.includes("statistic"));
  });

  it("a second full sync deletes the chains of endpoints that left", () => {
    const s = set(20);
    const t = withChangedBackends(s, [5], 1, "10.244.64.0");
    const text = iptablesRestore(t, "10.244.0.0/16", iptChains(s));
    const gone = iptSepChain(s[5]!, s[5]!.ports[0]!, s[5]!.backends[1]!);
    assert.ok(text.includes(`-X ${gone}`));
    sh("ip", ["netns", "exec", ns, "iptables-legacy-restore", "--noflush"], iptablesRestore(s, "10.244.0.0/16"));
    sh("ip", ["netns", "exec", ns, "iptables-legacy-restore", "--noflush"], text);
    try {
      const saved = inNs(ns, "iptables-legacy-save", "-t", "nat");
      assert.ok(!saved.includes(gone));
      assert.ok(saved.includes(iptSepChain(t[5]!, t[5]!.ports[0]!, t[5]!.backends[1]!)));
    } finally {
      inNs(ns, "iptables-legacy", "-t", "nat", "-F");
      inNs(ns, "iptables-legacy", "-t", "nat", "-X");
      inNs(ns, "iptables-legacy", "-t", "filter", "-F");
      inNs(ns, "iptables-legacy", "-t", "filter", "-X");
    }
  });

  it("nft -c accepts the ruleset; loaded, service-ips maps every service port to its chain", () => {
    const s = set(300);
    const text = nftRuleset(s, "10.96.0.0/16", "10.244.0.0/16");
    sh("ip", ["netns", "exec", ns, "nft", "-c", "-f", "-"], text);
    sh("ip", ["netns", "exec", ns, "nft", "-f", "-"], text);
    try {
      const j = JSON.parse(inNs(ns, "nft", "-j", "list", "map", "ip", "kube-proxy", "service-ips")) as { nftables: Array<{ map?: { elem?: unknown[] } }> };
      const elems = j.nftables.find((x) => x.map)!.map!.elem!;
      assert.equal(elems.length, 299 + PORTS.length);
      const chains = JSON.parse(inNs(ns, "nft", "-j", "list", "chains", "ip")) as { nftables: Array<{ chain?: { name: string } }> };
      const names = chains.nftables.flatMap((x) => (x.chain ? [x.chain.name] : []));
      assert.equal(names.filter((n) => /^service-[A-Z2-7]{8}-/.test(n)).length, 299 + PORTS.length);
      assert.equal(names.filter((n) => n.startsWith("endpoint-")).length, 2 * (299 + PORTS.length));
      const target = s[299]!;
      const listed = inNs(ns, "nft", "list", "chain", "ip", "kube-proxy", nftSvcChain(target, target.ports[0]!));
      assert.match(listed, /numgen random mod 2 vmap \{ 0 : goto endpoint-\S+__10\.244\.1\.5\/8080, 1 : goto endpoint-\S+__10\.244\.1\.250\/8080 \}/);
    } finally {
      inNs(ns, "nft", "delete", "table", "ip", "kube-proxy");
    }
  });

  it("the incremental nft update replaces one service's endpoint chain and leaves the others", () => {
    const s = set(50);
    const t = withChangedBackends(s, [10], 1, "10.244.64.0");
    const update = nftUpdate(s, t, "10.244.0.0/16");
    sh("ip", ["netns", "exec", ns, "nft", "-f", "-"], nftRuleset(s, "10.96.0.0/16", "10.244.0.0/16"));
    try {
      sh("ip", ["netns", "exec", ns, "nft", "-f", "-"], update);
      const names = (JSON.parse(inNs(ns, "nft", "-j", "list", "chains", "ip")) as { nftables: Array<{ chain?: { name: string } }> })
        .nftables.flatMap((x) => (x.chain ? [x.chain.name] : []));
      const p = s[10]!.ports[0]!;
      assert.ok(!names.includes(nftEndpointChain(s[10]!, p, s[10]!.backends[1]!)), "the old endpoint chain is deleted");
      assert.ok(names.includes(nftEndpointChain(t[10]!, p, t[10]!.backends[1]!)), "the new endpoint chain exists");
      assert.equal(names.filter((n) => n.startsWith("endpoint-")).length, 2 * (49 + PORTS.length));
      const listed = inNs(ns, "nft", "list", "chain", "ip", "kube-proxy", nftSvcChain(t[10]!, p));
      assert.ok(listed.includes(`__${t[10]!.backends[1]}/8080`));
      assert.equal((listed.match(/numgen/g) ?? []).length, 1, "the service chain was flushed, not appended to");
    } finally {
      inNs(ns, "nft", "delete", "table", "ip", "kube-proxy");
    }
  });
});

describe("bench/scale rules: ipvsadm input", () => {
  it("has one virtual server per service port, each followed by its masqueraded real servers", () => {
    const s = set(10);
    const lines = ipvsRestore(s).trim().split("\n");
    const vs = lines.filter((l) => l.startsWith("-A "));
    assert.equal(vs.length, 9 + PORTS.length);
    assert.equal(lines.length, 3 * vs.length);
    assert.ok(lines.includes("-A -u 10.96.0.10:9000 -s rr"));
    assert.ok(lines.includes("-a -u 10.96.0.10:9000 -r 10.244.1.250:9000 -m -w 1"));
    for (let i = 0; i < lines.length; i += 3) {
      const m = /^-A (-[tu]) (\S+) -s rr$/.exec(lines[i]!);
      assert.ok(m, lines[i]);
      for (const r of lines.slice(i + 1, i + 3)) assert.match(r, new RegExp(`^-a ${m[1]} ${m[2]!.replace(/\./g, "\\.")} -r \\S+:\\d+ -m -w 1$`));
    }
  });
});
