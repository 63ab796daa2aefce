// The scale benchmark's rule sets (bench/scale/rules.ts) as the kernel takes them (integration,
// needs root): iptables-restore and nft accept the input inside a test namespace, and read back
// (iptables-save, nft -j list) the chain counts, the 1/n probabilities, the verdict map and the
// updates are what the bench relies on. The text alone: test/unit/bench/scale-rules.test.ts.
import { strict as assert } from "node:assert";
import { deleteNs, inNs, makeNs, sh } from "../helpers/netns.js";
import { iptablesRestore, iptChains, iptSepChain, nftEndpointChain, nftRuleset, nftSvcChain, nftUpdate, serviceSet, withChangedBackends } from "../../bench/scale/rules.js";

const PORTS = [
  { name: "http", port: 80, protocol: "TCP" as const, targetPort: 8080 },
  { name: "stream", port: 9000, protocol: "UDP" as const, targetPort: 9000 },
];
const set = (count: number) =>
  serviceSet({ count, serviceBase: "10.96.0.0", targetBackends: ["10.244.1.5", "10.244.1.250"], fillerBackendBase: "10.244.128.0", targetPorts: PORTS });

describe("bench/scale rules: accepted and read back by the kernel (integration, needs root)", function () {
  this.timeout(120000);
  let ns = "";
  before(() => { ns = makeNs("scale"); });
  after(() => deleteNs(ns));
  const restore = (tool: string, text: string) => sh("ip", ["netns", "exec", ns, tool, "--noflush"], text);
  const nft = (text: string) => sh("ip", ["netns", "exec", ns, "nft", "-f", "-"], text);
  /** Empties the x_tables nat and filter tables again, so each test loads into a clean namespace. */
  const flushLegacy = () => {
    for (const table of ["nat", "filter"]) for (const op of ["-F", "-X"]) inNs(ns, "iptables-legacy", "-t", table, op);
  };
  const nftChainNames = () => (JSON.parse(inNs(ns, "nft", "-j", "list", "chains", "ip")) as { nftables: Array<{ chain?: { name: string } }> })
    .nftables.flatMap((x) => (x.chain ? [x.chain.name] : []));

  it("iptables-restore --test accepts the full sync (nf_tables and legacy backends)", () => {
    const text = iptablesRestore(set(50), "10.244.0.0/16");
    inNs(ns, "iptables-nft-restore", "--test", "--noflush"); // empty input: the tool runs here
    sh("ip", ["netns", "exec", ns, "iptables-nft-restore", "--test", "--noflush"], text);
    sh("ip", ["netns", "exec", ns, "iptables-legacy-restore", "--test", "--noflush"], text);
  });

  it("loaded, has one KUBE-SVC per service port, one KUBE-SEP per endpoint, the target last in KUBE-SERVICES", () => {
    restore("iptables-legacy-restore", iptablesRestore(set(200), "10.244.0.0/16"));
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
      for (const l of stat) assert.ok(Math.abs(Number(/--probability (\S+)/.exec(l)![1]) - 0.5) < 1e-6, `probability 0.5 expected: ${l}`);
      assert.equal(saved.split("\n").filter((l) => l.includes("-j DNAT")).length, 2 * ports);
    } finally {
      flushLegacy();
    }
  });

  it("a second full sync leaves the chain of the endpoint that left gone and the new endpoint's in place", () => {
    const s = set(20);
    const t = withChangedBackends(s, [5], 1, "10.244.64.0");
    restore("iptables-legacy-restore", iptablesRestore(s, "10.244.0.0/16"));
    restore("iptables-legacy-restore", iptablesRestore(t, "10.244.0.0/16", iptChains(s)));
    try {
      const saved = inNs(ns, "iptables-legacy-save", "-t", "nat");
      const gone = iptSepChain(s[5]!, s[5]!.ports[0]!, s[5]!.backends[1]!), added = iptSepChain(t[5]!, t[5]!.ports[0]!, t[5]!.backends[1]!);
      assert.ok(!saved.includes(gone), `${gone} was deleted`);
      assert.ok(saved.includes(added), `${added} exists`);
    } finally {
      flushLegacy();
    }
  });

  it("nft -c accepts the ruleset; loaded, service-ips maps every service port to its chain", () => {
    const s = set(300);
    const text = nftRuleset(s, "10.96.0.0/16", "10.244.0.0/16");
    sh("ip", ["netns", "exec", ns, "nft", "-c", "-f", "-"], text);
    nft(text);
    try {
      const j = JSON.parse(inNs(ns, "nft", "-j", "list", "map", "ip", "kube-proxy", "service-ips")) as { nftables: Array<{ map?: { elem?: unknown[] } }> };
      const elems = j.nftables.find((x) => x.map)!.map!.elem!;
      assert.equal(elems.length, 299 + PORTS.length);
      const names = nftChainNames();
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
    nft(nftRuleset(s, "10.96.0.0/16", "10.244.0.0/16"));
    try {
      nft(nftUpdate(s, t, "10.244.0.0/16"));
      const names = nftChainNames();
      const p = s[10]!.ports[0]!;
      assert.ok(!names.includes(nftEndpointChain(s[10]!, p, s[10]!.backends[1]!)), "the old endpoint chain is deleted");
      assert.ok(names.includes(nftEndpointChain(t[10]!, p, t[10]!.backends[1]!)), "the new endpoint chain exists");
      assert.equal(names.filter((n) => n.startsWith("endpoint-")).length, 2 * (49 + PORTS.length));
      const listed = inNs(ns, "nft", "list", "chain", "ip", "kube-proxy", nftSvcChain(t[10]!, p));
      assert.ok(listed.includes(`__${t[10]!.backends[1]}/8080`), `the service chain jumps to the new endpoint: ${listed}`);
      assert.equal((listed.match(/numgen/g) ?? []).length, 1, "the service chain was flushed, not appended to");
    } finally {
      inNs(ns, "nft", "delete", "table", "ip", "kube-proxy");
    }
  });
});
