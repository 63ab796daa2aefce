// The scale benchmark's rule generators (bench/scale/rules.ts) make what they claim, as text: chain
// names equal to kube-proxy's own (the names in kube-proxy's unit tests), its 1/(n-i) probabilities,
// stale chains deleted on the next sync, and ipvsadm input in ipvsadm's syntax. That the kernel
// accepts the text and reads it back as intended: test/integration/bench-scale-rules.test.ts.
import { strict as assert } from "node:assert";
import {
  changeIndexes, iptablesRestore, iptChains, iptSepChain, iptSvcChain, ipvsEdit, ipvsRestore, nftEndpointChain, nftSvcChain,
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
    assert.ok(s.every((x) => x.backends.length === 2), "every service has 2 endpoints");
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
    assert.ok(idx.every((i) => i >= 0 && i < 499), `indexes outside 0-498 (499 is the target): ${idx.filter((i) => i < 0 || i >= 499)}`);
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

describe("bench/scale rules: iptables-restore input", () => {
  it("a three-endpoint service gets probabilities 1/3, 1/2, then the rest", () => {
    const three: ScaleService = { ...SVC1, backends: ["10.180.0.1", "10.180.0.2", "10.180.0.3"] };
    const text = iptablesRestore([three], "10.0.0.0/8");
    const probs = [...text.matchAll(/--probability (\S+)/g)].map((m) => m[1]);
    assert.deepEqual(probs, ["0.3333333333", "0.5000000000"]);
    const svcJumps = text.split("\n").filter((l) => l.startsWith("-A KUBE-SVC-XPGD46QRK7WJZT7O ") && l.includes("-j KUBE-SEP-"));
    assert.equal(svcJumps.length, 3);
    assert.ok(!svcJumps[2]!.includes("statistic"), `the last endpoint takes the rest, with no statistic match: ${svcJumps[2]}`);
  });

  it("a second full sync declares and deletes (-X) the chain of an endpoint that left, and only that one", () => {
    const s = set(20);
    const t = withChangedBackends(s, [5], 1, "10.244.64.0");
    const text = iptablesRestore(t, "10.244.0.0/16", iptChains(s));
    const gone = iptSepChain(s[5]!, s[5]!.ports[0]!, s[5]!.backends[1]!);
    const lines = text.split("\n");
    assert.deepEqual(lines.filter((l) => l.startsWith("-X ")), [`-X ${gone}`]);
    assert.ok(lines.includes(`:${gone} - [0:0]`), `${gone} is declared (flushed) before it is deleted`);
    assert.ok(lines.includes(`:${iptSepChain(t[5]!, t[5]!.ports[0]!, t[5]!.backends[1]!)} - [0:0]`), "the new endpoint's chain is declared");
  });
});

describe("bench/scale rules: ipvsadm input", () => {
  it("has one virtual server per service port, each followed by its masqueraded real servers", () => {
    const s = set(10);
    const lines = ipvsRestore(s).trim().split("\n");
    const vs = lines.filter((l) => l.startsWith("-A "));
    assert.equal(vs.length, 9 + PORTS.length);
    assert.equal(lines.length, 3 * vs.length);
    assert.ok(lines.includes("-A -u 10.96.0.10:9000 -s rr"), "the target's UDP virtual server");
    assert.ok(lines.includes("-a -u 10.96.0.10:9000 -r 10.244.1.250:9000 -m -w 1"), "the target's second UDP real server");
    for (let i = 0; i < lines.length; i += 3) {
      const m = /^-A (-[tu]) (\S+) -s rr$/.exec(lines[i]!);
      assert.ok(m, `line ${i} is not a virtual server: ${lines[i]}`);
      for (const r of lines.slice(i + 1, i + 3)) assert.match(r, new RegExp(`^-a ${m[1]} ${m[2]!.replace(/\./g, "\\.")} -r \\S+:\\d+ -m -w 1$`));
    }
  });

  it("an endpoint change deletes (-d) the real server that left and adds (-a) the new one, per port of the changed services only", () => {
    const s = set(10);
    const t = withChangedBackends(s, [3, 9], 1, "10.244.64.0");
    const lines = ipvsEdit(s, t).trim().split("\n");
    const edit = (op: string, svc: ScaleService, b: string) => svc.ports.map((p) => `${op} ${p.protocol === "TCP" ? "-t" : "-u"} ${svc.clusterIP}:${p.port} -r ${b}:${p.targetPort}`);
    assert.deepEqual(lines, [
      ...edit("-d", s[3]!, s[3]!.backends[1]!), ...edit("-a", t[3]!, t[3]!.backends[1]!).map((l) => `${l} -m -w 1`),
      // The target: one line each for its two ports, in port order, deletes first.
      `-d -t 10.96.0.10:80 -r ${s[9]!.backends[1]}:8080`, `-a -t 10.96.0.10:80 -r ${t[9]!.backends[1]}:8080 -m -w 1`,
      `-d -u 10.96.0.10:9000 -r ${s[9]!.backends[1]}:9000`, `-a -u 10.96.0.10:9000 -r ${t[9]!.backends[1]}:9000 -m -w 1`,
    ]);
  });

  it("the edits refuse a change of anything but endpoints", () => {
    const s = set(10);
    const moved = s.map((x, i) => (i === 2 ? { ...x, clusterIP: "10.96.9.9" } : x));
    assert.throws(() => ipvsEdit(s, moved), /ipvsEdit: service 2 is svc-3 10\.96\.9\.9, was svc-3 10\.96\.0\.3; only endpoints may change/);
    assert.throws(() => nftUpdate(s, s.slice(1), "10.244.0.0/16"), /nftUpdate changes endpoints only; the service count went from 10 to 9/);
  });
});
