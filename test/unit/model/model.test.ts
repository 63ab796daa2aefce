import { strict as assert } from "node:assert";
import fc from "fast-check";
import { defaultConfig, validateConfig, type Config } from "../../../src/config/index.js";
import {
  applyDelta, buildModel, updateModel, deriveVtepMac, localVtepMac, localEndpointTest, diffModel, fullDelta, IdAllocator, isEmptyDelta, orderBackends,
  PROTO, RouteKind, Select, ServiceFlag, ServiceKind, type Model, type ServiceEntry,
} from "../../../src/model/index.js";
import { configArb } from "../../helpers/arbitrary.js";

function cfg(raw: Record<string, any>): Config {
  const r = validateConfig(raw);
  if ("problems" in r) assert.fail(JSON.stringify(r.problems, null, 1));
  return r.config;
}

function base(): Record<string, any> {
  return {
    node: { name: "n1", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" },
    services: [
      { name: "a", clusterIP: "10.96.0.1", ports: [{ port: 80, targetPort: 8080 }], backends: [{ ip: "10.244.1.10" }, { ip: "10.244.2.10" }] },
      { name: "b", clusterIP: "10.96.0.2", ports: [{ port: 53, protocol: "UDP" }], backends: [{ ip: "10.244.1.20" }] },
      { name: "c", clusterIP: "10.96.0.3", ports: [{ port: 443 }], backends: [{ ip: "10.244.2.30" }] },
    ],
    nodes: [{ name: "n2", underlayIP: "10.99.0.2", podCIDR: "10.244.2.0/24" }],
  };
}

const svc = (m: Model, key: string): ServiceEntry => {
  const e = m.services.get(key);
  assert.ok(e, `no entry ${key}; have ${[...m.services.keys()].join(", ")}`);
  return e;
};
const backendsOf = (e: ServiceEntry) => e.backends.map((b) => `${b.addr}:${b.port}`);

/** What the engine would hold: everything but object identity. */
function engineView(m: Model) {
  const s = [...m.services.values()].map((e) => ({ key: e.key, id: e.id, sig: e.sig, addr: e.addr })).sort((a, b) => a.key.localeCompare(b.key));
  const r = [...m.routes.values()].map((x) => ({ key: x.key, sig: x.sig })).sort((a, b) => a.key.localeCompare(b.key));
  // echo markers with the entries on each address (applyDelta: 0 for a marker the ops left without one)
  const v = [...(m.vips ?? new Map<string, number>())].sort((a, b) => a[0].localeCompare(b[0]));
  return { s, r, l: [...m.localAddrs].sort(), v };
}

describe("model", () => {
  describe("buildModel", () => {
    it("turns the demo config into five entries, one Local route and the node address", () => {
      const m = buildModel(defaultConfig());
      assert.deepEqual([...m.services.keys()], ["10.96.0.10:80/TCP", "10.96.0.53:53/UDP", "10.96.0.53:53/TCP", "10.96.0.11:80/TCP", "0.0.0.0:30080/TCP"]);
      assert.deepEqual([...m.services.values()].map((e) => e.id), [0, 1, 2, 3, 4]);
      const web = svc(m, "10.96.0.10:80/TCP");
      assert.deepEqual(backendsOf(web), ["10.244.1.10:8080", "10.244.1.11:8080"]);
      assert.equal(web.kind, ServiceKind.ClusterIp);
      assert.equal(web.eligible, 2);
      assert.deepEqual(backendsOf(svc(m, "10.96.0.53:53/UDP")), ["10.244.1.12:53"]);
      const np = svc(m, "0.0.0.0:30080/TCP");
      assert.equal(np.kind, ServiceKind.NodePort);
      assert.equal(np.flags, ServiceFlag.ANY_LOCAL_ADDR | ServiceFlag.MASQUERADE_EXTERNAL);
      assert.equal(np.addr, "0.0.0.0", "the unspecified address of its family");
      assert.equal(np.family, 4);
      assert.deepEqual(backendsOf(np), ["10.244.1.10:8080", "10.244.1.11:8080"]);
      assert.deepEqual([...m.routes.keys()], ["10.244.1.0/24"]);
      assert.equal(m.routes.get("10.244.1.0/24")!.kind, RouteKind.Local);
      assert.deepEqual([...m.localAddrs], ["10.99.0.1"]);
    });

    it("routes other nodes' pod CIDRs through VXLAN with their underlay IP and a MAC derived from it", () => {
      const raw = base();
      raw.nodes.push({ name: "n3", underlayIP: "10.99.0.3", podCIDR: "10.244.3.0/24", vtepMAC: "AA:BB:CC:DD:EE:F0" });
      const m = buildModel(cfg(raw));
      const r2 = m.routes.get("10.244.2.0/24")!;
      assert.deepEqual([r2.kind, r2.nodeId, r2.underlay, r2.vtepMac, r2.prefixLen128], [RouteKind.Remote, 1, 0x0a630002, "02:0a:63:00:02:01", 120]);
      const r3 = m.routes.get("10.244.3.0/24")!;
      assert.deepEqual([r3.nodeId, r3.vtepMac], [2, "aa:bb:cc:dd:ee:f0"]);
    });

    it("derives a locally administered unicast VTEP MAC 02:<underlay IPv4>:01", () => {
      assert.equal(deriveVtepMac("192.168.10.254"), "02:c0:a8:0a:fe:01");
      const first = parseInt(deriveVtepMac("10.0.0.1").slice(0, 2), 16);
      assert.equal(first & 0b11, 0b10); // IEEE 802: U/L bit set, I/G bit clear
    });

    it("gives this node the configured VTEP MAC, else the derived one", () => {
      assert.equal(localVtepMac({ underlayIP: "10.99.0.1" }), "02:0a:63:00:01:01");
      assert.equal(localVtepMac({ underlayIP: "10.99.0.1", vtepMAC: "02:AA:00:00:00:01" }), "02:aa:00:00:00:01");
    });

    it("falls back to serving terminating endpoints when none is ready, as kube-proxy does", () => {
      const raw = base();
      raw.services[0].backends = [
        { ip: "10.244.1.10", ready: false, serving: true, terminating: true },
        { ip: "10.244.1.11", ready: false, serving: false, terminating: true }, // neither: left out
        { ip: "10.244.1.12", ready: false, serving: true, terminating: true },
      ];
      const e = svc(buildModel(cfg(raw)), "10.96.0.1:80/TCP");
      assert.deepEqual(backendsOf(e), ["10.244.1.10:8080", "10.244.1.12:8080"]);
      assert.equal(e.eligible, 2);
    });

    it("sends new flows to ready endpoints only and keeps serving terminating ones after them for their flows", () => {
      const raw = base();
      raw.services[0].backends = [
        { ip: "10.244.1.10", ready: false, serving: true, terminating: true },
        { ip: "10.244.1.11", ready: true },
        { ip: "10.244.1.12", ready: false },                                      // not ready, not terminating: left out
        { ip: "10.244.1.13", ready: true, terminating: true, serving: false },   // terminating and not serving: left out
      ];
      const e = svc(buildModel(cfg(raw)), "10.96.0.1:80/TCP");
      assert.deepEqual(backendsOf(e), ["10.244.1.11:8080", "10.244.1.10:8080"]);
      assert.equal(e.eligible, 1);
    });

    it("orderBackends keeps the given order within each group", () => {
      const E = (id: number, ready: boolean, serving: boolean, terminating: boolean) => ({ id, ready, serving, terminating });
      const r = orderBackends([E(1, false, true, true), E(2, true, true, false), E(3, false, true, true), E(4, true, true, false)]);
      assert.deepEqual([r.backends.map((b) => b.id), r.eligible], [[2, 4, 1, 3], 2]);
      assert.deepEqual(orderBackends([E(1, false, false, false)]), { backends: [], eligible: 0 });
    });

    it("externalTrafficPolicy Local keeps node-local backends and the client source on NodePort entries only", () => {
      const raw = base();
      Object.assign(raw.services[0], { type: "NodePort", externalTrafficPolicy: "Local" });
      raw.services[0].ports[0].nodePort = 30080;
      raw.services[0].backends = [{ ip: "10.244.1.10", nodeName: "n1" }, { ip: "10.244.2.10", nodeName: "n2" }];
      const m = buildModel(cfg(raw));
      const np = svc(m, "0.0.0.0:30080/TCP");
      assert.deepEqual(backendsOf(np), ["10.244.1.10:8080"]);
      assert.equal(np.flags & ServiceFlag.MASQUERADE_EXTERNAL, 0);
      assert.deepEqual(backendsOf(svc(m, "10.96.0.1:80/TCP")), ["10.244.1.10:8080", "10.244.2.10:8080"]);
    });

    it("internalTrafficPolicy Local keeps only the backends whose nodeName is this node on the ClusterIP entry", () => {
      const raw = base();
      raw.services[0].internalTrafficPolicy = "Local";
      raw.services[0].backends = [{ ip: "10.244.1.10", nodeName: "n1" }, { ip: "10.244.2.10", nodeName: "n2" }, { ip: "10.99.0.1", nodeName: "n1" }, { ip: "10.99.0.2", nodeName: "n2" }];
      assert.deepEqual(backendsOf(svc(buildModel(cfg(raw)), "10.96.0.1:80/TCP")), ["10.244.1.10:8080", "10.99.0.1:8080"]);
    });

    it("an endpoint without nodeName is not local even with an address in this node's pod CIDR (kube-proxy: IsLocal is nodeName == this node)", () => {
      const raw = base();
      Object.assign(raw.services[0], { type: "NodePort", externalTrafficPolicy: "Local", internalTrafficPolicy: "Local" });
      raw.services[0].ports[0].nodePort = 30080;
      raw.services[0].backends = [{ ip: "10.244.1.10" }, { ip: "10.244.1.11", nodeName: "n1" }, { ip: "10.244.1.12", nodeName: "n2" }];
      const m = buildModel(cfg(raw));
      assert.deepEqual(backendsOf(svc(m, "10.96.0.1:80/TCP")), ["10.244.1.11:8080"], "ClusterIP under internalTrafficPolicy Local");
      assert.deepEqual(backendsOf(svc(m, "0.0.0.0:30080/TCP")), ["10.244.1.11:8080"], "NodePort under externalTrafficPolicy Local");
      assert.deepEqual(localEndpointTest(cfg(raw).node)({}), false, "no nodeName: remote");
    });

    it("a Local policy with no endpoint on this node but some elsewhere marks the entry drop-when-empty; with none anywhere it rejects", () => {
      const raw = base();
      Object.assign(raw.services[0], { type: "NodePort", externalTrafficPolicy: "Local", internalTrafficPolicy: "Local" });
      raw.services[0].ports[0].nodePort = 30080;
      raw.services[0].backends = [{ ip: "10.244.2.10" }];
      let m = buildModel(cfg(raw));
      // Both policies Local: nothing on this node can reach the endpoint, so kube-proxy rejects.
      assert.equal(svc(m, "0.0.0.0:30080/TCP").flags & ServiceFlag.DROP_WHEN_EMPTY, 0);
      raw.services[0].externalTrafficPolicy = "Cluster";
      m = buildModel(cfg(raw));
      const cip = svc(m, "10.96.0.1:80/TCP"), np = svc(m, "0.0.0.0:30080/TCP");
      assert.deepEqual([cip.eligible, cip.flags & ServiceFlag.DROP_WHEN_EMPTY], [0, ServiceFlag.DROP_WHEN_EMPTY]);
      assert.deepEqual([np.eligible, np.flags & ServiceFlag.DROP_WHEN_EMPTY], [1, 0]);
      raw.services[0].backends = [];
      assert.equal(svc(buildModel(cfg(raw)), "10.96.0.1:80/TCP").flags & ServiceFlag.DROP_WHEN_EMPTY, 0);
    });

    it("makes ExternalIp and LoadBalancer entries with the external masquerade flag", () => {
      const raw = base();
      Object.assign(raw.services[0], { type: "LoadBalancer", externalIPs: ["192.0.2.10"], loadBalancerIPs: ["198.51.100.1"] });
      const m = buildModel(cfg(raw));
      assert.equal(svc(m, "192.0.2.10:80/TCP").kind, ServiceKind.ExternalIp);
      assert.equal(svc(m, "198.51.100.1:80/TCP").kind, ServiceKind.LoadBalancer);
      assert.equal(svc(m, "198.51.100.1:80/TCP").flags, ServiceFlag.MASQUERADE_EXTERNAL);
    });

    it("sets the affinity flag and timeout for ClientIP, and Maglev selection with the configured size", () => {
      const raw = base();
      raw.services[0].sessionAffinity = "ClientIP";
      raw.services[0].sessionAffinityConfig = { clientIP: { timeoutSeconds: 600 } };
      raw.loadBalancing = { mode: "maglev", maglevTableSize: 16381 };
      const e = svc(buildModel(cfg(raw)), "10.96.0.1:80/TCP");
      assert.equal(e.flags & ServiceFlag.AFFINITY, ServiceFlag.AFFINITY);
      assert.deepEqual([e.affinitySec, e.select, e.maglevSize], [600, Select.Maglev, 16381]);
      const b = svc(buildModel(cfg(raw)), "10.96.0.2:53/UDP");
      assert.deepEqual([b.flags & ServiceFlag.AFFINITY, b.affinitySec], [0, 0]);
    });

    describe("topology-aware routing (kube-proxy's pkg/proxy/topology.go: hints are all or nothing)", () => {
      // Four ready endpoints: two hinted for zone-a (one of them for node n1 as well), one for zone-b, one for zone-c.
      const hinted = (zone?: string) => {
        const raw = base();
        if (zone !== undefined) raw.node.zone = zone;
        Object.assign(raw.services[0], { type: "NodePort" });
        raw.services[0].ports[0].nodePort = 30080;
        raw.services[0].backends = [
          { ip: "10.244.2.10", nodeName: "n2", hints: { forZones: ["zone-a"] } },
          { ip: "10.244.2.11", nodeName: "n2", hints: { forZones: ["zone-b"] } },
          { ip: "10.244.1.10", nodeName: "n1", hints: { forZones: ["zone-a"] } },
          { ip: "10.244.2.12", nodeName: "n2", hints: { forZones: ["zone-c"] } },
        ];
        return raw;
      };
      const chosen = (raw: Record<string, any>, key = "10.96.0.1:80/TCP") => {
        const e = svc(buildModel(cfg(raw)), key);
        return { eligible: backendsOf(e).slice(0, e.eligible), all: backendsOf(e).sort() };
      };
      const ALL = ["10.244.1.10:8080", "10.244.2.10:8080", "10.244.2.11:8080", "10.244.2.12:8080"];

      it("every ready endpoint hinted for a zone: new flows go only to those hinted for this node's zone (ClusterIP and NodePort); the others stay to keep their flows", () => {
        const r = chosen(hinted("zone-a"));
        assert.deepEqual(r.eligible, ["10.244.2.10:8080", "10.244.1.10:8080"]);
        assert.deepEqual(r.all, ALL, "the out-of-zone endpoints follow, not eligible");
        assert.deepEqual(chosen(hinted("zone-a"), "0.0.0.0:30080/TCP").eligible, ["10.244.2.10:8080", "10.244.1.10:8080"]);
        assert.deepEqual(chosen(hinted("zone-b")).eligible, ["10.244.2.11:8080"]);
      });

      it("falls back to every endpoint when one ready endpoint has no hint, when no endpoint is hinted for this zone, or when the node has no zone label", () => {
        const missing = hinted("zone-a");
        delete missing.services[0].backends[3].hints;
        assert.deepEqual(chosen(missing).eligible.sort(), ALL);
        assert.deepEqual(chosen(hinted("zone-d")).eligible.sort(), ALL);
        assert.deepEqual(chosen(hinted()).eligible.sort(), ALL);
      });

      it("a not-ready endpoint's missing hint does not count; a terminating fallback ignores topology", () => {
        const raw = hinted("zone-a");
        raw.services[0].backends.push({ ip: "10.244.2.13", nodeName: "n2", ready: false });
        assert.deepEqual(chosen(raw).eligible, ["10.244.2.10:8080", "10.244.1.10:8080"]);
        for (const b of raw.services[0].backends) Object.assign(b, { ready: false, serving: true, terminating: true });
        assert.equal(chosen(raw).eligible.length, 5, "no ready endpoint: every serving terminating one");
      });

      it("PreferSameNode: every ready endpoint hinted for a node and one for this node: only this node's; a node hint missing: zones decide", () => {
        const raw = hinted("zone-b");
        raw.services[0].backends.forEach((b: any, i: number) => { b.hints.forNodes = [i === 2 ? "n1" : "n2"]; });
        assert.deepEqual(chosen(raw).eligible, ["10.244.1.10:8080"]);
        delete raw.services[0].backends[0].hints.forNodes;
        assert.deepEqual(chosen(raw).eligible, ["10.244.2.11:8080"], "back to the zone hints (zone-b)");
      });

      it("a Local traffic policy ignores the hints (this node's endpoints), and a change of the node's zone rebuilds the entries", () => {
        const raw = hinted("zone-b");
        raw.services[0].internalTrafficPolicy = "Local";
        assert.deepEqual(chosen(raw).eligible, ["10.244.1.10:8080"]);
        const a = cfg(hinted("zone-a")), b = cfg(hinted("zone-b"));
        const { model, delta } = updateModel(a, b, buildModel(a));
        assert.deepEqual(backendsOf(svc(model, "10.96.0.1:80/TCP")).slice(0, 1), ["10.244.2.11:8080"]);
        assert.ok(delta.upsertServices.some((e) => e.key === "10.96.0.1:80/TCP"), "the entry is upserted");
      });
    });

    it("an SCTP port makes entries keyed by protocol 132 (ClusterIP and NodePort), beside TCP and UDP ones on the same port", () => {
      const raw = base();
      Object.assign(raw.services[0], { type: "NodePort" });
      raw.services[0].ports = [{ name: "t", port: 80, targetPort: 8080, nodePort: 30080 }, { name: "s", port: 80, protocol: "SCTP", targetPort: 8080, nodePort: 30080 }];
      const m = buildModel(cfg(raw));
      assert.deepEqual([svc(m, "10.96.0.1:80/SCTP").protocol, PROTO.SCTP], ["SCTP", 132]);
      assert.deepEqual(backendsOf(svc(m, "0.0.0.0:30080/SCTP")), ["10.244.1.10:8080", "10.244.2.10:8080"]);
    });

    it("loadBalancerSourceRanges go to the LoadBalancer IPs' entries only, each its family's ranges; ClusterIP, externalIP and NodePort entries take every source", () => {
      const raw = base();
      raw.serviceCIDRv6 = "fd00:96::/112";
      Object.assign(raw.services[0], {
        type: "LoadBalancer", clusterIPs: ["10.96.0.1", "fd00:96::1"], externalIPs: ["192.0.2.10"], loadBalancerIPs: ["198.51.100.1", "2001:db8::1"],
        loadBalancerSourceRanges: ["203.0.113.0/24", "2001:db8:5::/48"],
      });
      delete raw.services[0].clusterIP;
      raw.services[0].ports[0].nodePort = 30080;
      const m = buildModel(cfg(raw));
      const ranges = (key: string) => svc(m, key).sourceRanges.map((r) => `${r.text} (${r.prefixLen128})`);
      assert.deepEqual(ranges("198.51.100.1:80/TCP"), ["203.0.113.0/24 (120)"]);
      assert.deepEqual(ranges("[2001:db8::1]:80/TCP"), ["2001:db8:5::/48 (48)"]);
      for (const k of ["10.96.0.1:80/TCP", "192.0.2.10:80/TCP", "0.0.0.0:30080/TCP"]) assert.deepEqual(ranges(k), [], k);
    });

    it("a source range that holds the node's IP lets the node's own connections through: the LoadBalancer IP itself (kube-proxy's allowFromNode) and wasp0's address", () => {
      const raw = base();
      Object.assign(raw.services[0], { type: "LoadBalancer", loadBalancerIPs: ["198.51.100.1"], loadBalancerSourceRanges: ["10.99.0.0/16"] });
      const lb = svc(buildModel(cfg(raw)), "198.51.100.1:80/TCP");
      assert.deepEqual(lb.sourceRanges.map((r) => r.text), ["10.99.0.0/16", "198.51.100.1/32", "10.244.1.1/32"]);
      raw.services[0].loadBalancerSourceRanges = ["203.0.113.0/24"];
      assert.deepEqual(svc(buildModel(cfg(raw)), "198.51.100.1:80/TCP").sourceRanges.map((r) => r.text), ["203.0.113.0/24"]);
    });

    it("gives every ClusterIP, externalIP and LoadBalancer IP with an entry one echo marker (Model.vips, entries counted), a NodePort none", () => {
      const raw = base();
      Object.assign(raw.services[0], { type: "LoadBalancer", externalIPs: ["192.0.2.10"], loadBalancerIPs: ["198.51.100.1"] });
      raw.services[0].ports = [{ name: "http", port: 80, targetPort: 8080, nodePort: 30080 }, { name: "dns", port: 53, protocol: "UDP", nodePort: 30053 }];
      const m = buildModel(cfg(raw));
      assert.deepEqual([...m.vips!].sort(), [["10.96.0.1", 2], ["10.96.0.2", 1], ["10.96.0.3", 1], ["192.0.2.10", 2], ["198.51.100.1", 2]]);
      const d = fullDelta(m);
      assert.deepEqual([...d.addVips].sort(), ["10.96.0.1", "10.96.0.2", "10.96.0.3", "192.0.2.10", "198.51.100.1"]);
    });

    it("a reload adds the marker of an address with its first entry and deletes it with its last, both incrementally and by diff", () => {
      const a = cfg(base());
      const m0 = buildModel(a);
      const raw = base();
      raw.services.splice(1, 1); // 10.96.0.2 goes
      raw.services[0].ports.push({ name: "x", port: 81, targetPort: 8081 }); // 10.96.0.1 gets a second entry
      raw.services[0].ports[0].name = "http";
      raw.services.push({ name: "d", clusterIP: "10.96.0.4", ports: [{ port: 80 }], backends: [] });
      const b = cfg(raw);
      for (const { delta, model } of [updateModel(a, b, m0), { model: buildModel(b, m0), delta: diffModel(m0, buildModel(b, m0)) }]) {
        assert.deepEqual([delta.addVips, delta.deleteVips], [["10.96.0.4"], ["10.96.0.2"]]);
        assert.deepEqual(model.vips!.get("10.96.0.1"), 2);
      }
    });

    it("puts IPv6 backends on the IPv6 entry and IPv4 ones on the IPv4 entry of a dual-stack service", () => {
      const raw = base();
      raw.serviceCIDRv6 = "fd00:96::/112";
      raw.services[0].clusterIPs = ["10.96.0.1", "fd00:96::1"];
      delete raw.services[0].clusterIP;
      raw.services[0].backends = [{ ip: "10.244.1.10" }, { ip: "fd00:10:244:1::a" }];
      const m = buildModel(cfg(raw));
      assert.deepEqual(backendsOf(svc(m, "10.96.0.1:80/TCP")), ["10.244.1.10:8080"]);
      assert.deepEqual(backendsOf(svc(m, "[fd00:96::1]:80/TCP")), ["fd00:10:244:1::a:8080"]);
    });

    it("gives a dual-stack NodePort service one NodePort entry per family, each with that family's backends", () => {
      const raw = base();
      raw.serviceCIDRv6 = "fd00:96::/112";
      Object.assign(raw.services[0], { type: "NodePort", clusterIPs: ["fd00:96::1", "10.96.0.1"] });
      delete raw.services[0].clusterIP;
      raw.services[0].ports[0].nodePort = 30080;
      raw.services[0].backends = [{ ip: "10.244.1.10" }, { ip: "fd00:10:244:1::a" }];
      const m = buildModel(cfg(raw));
      assert.deepEqual(backendsOf(svc(m, "0.0.0.0:30080/TCP")), ["10.244.1.10:8080"]);
      assert.deepEqual(backendsOf(svc(m, "[::]:30080/TCP")), ["fd00:10:244:1::a:8080"]);
    });

    it("programmes nothing for headless and ExternalName services", () => {
      const raw = base();
      raw.services = [{ name: "h", clusterIP: "None", ports: [{ port: 80 }], backends: [{ ip: "10.244.1.1" }] }, { name: "x", type: "ExternalName", externalName: "example.org" }];
      assert.equal(buildModel(cfg(raw)).services.size, 0);
    });
  });

  describe("diffModel", () => {
    it("a change of one service's backends diffs to one upsert", () => {
      const raw = base();
      const a = buildModel(cfg(raw));
      raw.services[1].backends.push({ ip: "10.244.1.21" });
      const b = buildModel(cfg(raw), a);
      const d = diffModel(a, b);
      assert.deepEqual(d.upsertServices.map((e) => e.key), ["10.96.0.2:53/UDP"]);
      assert.deepEqual([d.deleteServices, d.upsertRoutes, d.deleteRoutes, d.addLocalAddrs, d.deleteLocalAddrs], [[], [], [], [], []]);
      assert.equal(d.upsertServices[0]!.id, svc(a, "10.96.0.2:53/UDP").id);
    });

    it("an unchanged reload diffs to nothing and reuses the previous entries", () => {
      const a = buildModel(cfg(base()));
      const b = buildModel(cfg(base()), a);
      assert.ok(isEmptyDelta(diffModel(a, b)), "an unchanged reload has an empty delta");
      for (const [k, e] of b.services) assert.equal(e, a.services.get(k));
    });

    it("a reload keeps the ids of unchanged entries and gives a new entry the lowest freed id", () => {
      const raw = base();
      const a = buildModel(cfg(raw));
      assert.deepEqual([...a.services.values()].map((e) => [e.key, e.id]), [["10.96.0.1:80/TCP", 0], ["10.96.0.2:53/UDP", 1], ["10.96.0.3:443/TCP", 2]]);
      raw.services.splice(1, 1);                                                           // frees id 1
      raw.services.unshift({ name: "new", clusterIP: "10.96.0.9", ports: [{ port: 80 }] }); // first in the file
      const b = buildModel(cfg(raw), a);
      assert.deepEqual([...b.services.values()].map((e) => [e.key, e.id]), [["10.96.0.9:80/TCP", 1], ["10.96.0.1:80/TCP", 0], ["10.96.0.3:443/TCP", 2]]);
      const d = diffModel(a, b);
      assert.deepEqual(d.deleteServices.map((k) => k.key), ["10.96.0.2:53/UDP"]);
      assert.deepEqual(d.upsertServices.map((k) => k.key), ["10.96.0.9:80/TCP"]);
    });

    it("a removed node deletes its route, an added one gets the lowest free node id, the others keep theirs", () => {
      const raw = base();
      raw.nodes.push({ name: "n3", underlayIP: "10.99.0.3", podCIDR: "10.244.3.0/24" });
      const a = buildModel(cfg(raw));
      raw.nodes.shift(); // n2 (id 1) goes
      raw.services.forEach((s: any) => { s.backends = []; });
      raw.nodes.push({ name: "n4", underlayIP: "10.99.0.4", podCIDR: "10.244.4.0/24" });
      const b = buildModel(cfg(raw), a);
      const d = diffModel(a, b);
      assert.deepEqual(d.deleteRoutes.map((r) => r.key), ["10.244.2.0/24"]);
      assert.deepEqual(d.upsertRoutes.map((r) => [r.key, r.nodeId]), [["10.244.4.0/24", 1]]);
      assert.equal(b.nodeIds.get("n3"), 2);
    });

    it("a change of node addresses diffs to local address adds and deletes only", () => {
      const raw = base();
      const a = buildModel(cfg(raw));
      raw.node.nodeAddresses = ["192.0.2.1"];
      const d = diffModel(a, buildModel(cfg(raw), a));
      assert.deepEqual([d.addLocalAddrs, d.deleteLocalAddrs, d.upsertServices.length, d.upsertRoutes.length], [["192.0.2.1"], ["10.99.0.1"], 0, 0]);
    });

    it("a full delta clears and upserts everything", () => {
      const m = buildModel(defaultConfig());
      const d = fullDelta(m);
      assert.equal(d.clear, true);
      assert.deepEqual(engineView(applyDelta(buildModel(cfg(base())), d)), engineView(m));
    });

    it("diff(a, b) applied to a gives b, for random configs a and b", () => {
      fc.assert(fc.property(configArb, configArb, (ca, cb) => {
        const a = buildModel(ca);
        const b = buildModel(cb, a);
        assert.deepEqual(engineView(applyDelta(a, diffModel(a, b))), engineView(b));
      }), { seed: 1624, numRuns: 150 });
    });

    it("a rebuild that reuses unchanged service objects (the draft cache) gives the tables a build from copies gives, for random configs", () => {
      fc.assert(fc.property(configArb, configArb, (ca, cb) => {
        const a = buildModel(ca);
        // What the config sources do: a service whose text did not change is the same object.
        const byText = new Map(ca.services.map((s) => [JSON.stringify(s), s]));
        const reused = { ...cb, services: cb.services.map((s) => byText.get(JSON.stringify(s)) ?? s) };
        const copies = { ...cb, services: cb.services.map((s) => structuredClone(s)) };
        const withCache = buildModel(reused, a);
        assert.deepEqual(engineView(withCache), engineView(buildModel(copies, a)));
        assert.deepEqual(engineView(applyDelta(a, diffModel(a, withCache))), engineView(withCache));
      }), { seed: 2024, numRuns: 150 });
    });

    it("updateModel (only the services that came or went are built) gives the tables and delta of a full rebuild, for random configs", () => {
      fc.assert(fc.property(configArb, configArb, (ca, cb) => {
        const a = buildModel(ca);
        // cb's services over ca's settings, unchanged ones as the same objects: the incremental path.
        const byText = new Map(ca.services.map((s) => [JSON.stringify(s), s]));
        const next = { ...ca, services: cb.services.map((s) => byText.get(JSON.stringify(s)) ?? s) };
        const { model, delta } = updateModel(ca, next, a);
        const full = buildModel({ ...next, services: next.services.map((s) => structuredClone(s)) }, a);
        assert.deepEqual(engineView(model), engineView(full));
        assert.deepEqual(engineView(applyDelta(a, delta)), engineView(model));
        const ids = [...model.services.values()].map((e) => e.id);
        assert.equal(new Set(ids).size, ids.length, "duplicate id");
      }), { seed: 77, numRuns: 200 });
    });

    it("updateModel with a change set relative to the previous config gives the tables and delta of a full rebuild, for random configs", () => {
      fc.assert(fc.property(configArb, configArb, (ca, cb) => {
        const a = buildModel(ca);
        const byText = new Map(ca.services.map((s) => [JSON.stringify(s), s]));
        const next = { ...ca, services: cb.services.map((s) => byText.get(JSON.stringify(s)) ?? s) };
        const after = new Set(next.services), before = new Set(ca.services);
        const changes = { since: ca, came: next.services.filter((s) => !before.has(s)), gone: ca.services.filter((s) => !after.has(s)), settingsChanged: false };
        const { model, delta } = updateModel(ca, next, a, changes);
        const full = buildModel({ ...next, services: next.services.map((s) => structuredClone(s)) }, a);
        assert.deepEqual(engineView(model), engineView(full));
        assert.deepEqual(engineView(applyDelta(a, delta)), engineView(model));
      }), { seed: 78, numRuns: 150 });
    });

    it("a change set is taken as given (no identity diff) when it is relative to the previous config, and ignored when relative to another", () => {
      const c0 = cfg(base());
      const s0 = c0.services[0]!, moved = { ...s0, backends: s0.backends.slice(0, 1) };
      const c1 = { ...c0, services: [moved, ...c0.services.slice(1)] };
      const a = buildModel(c0);
      // the set leaves the changed service out: a model that trusts it changes nothing
      const trusted = updateModel(c0, c1, a, { since: c0, came: [], gone: [], settingsChanged: false });
      assert.ok(isEmptyDelta(trusted.delta), "the change set said nothing changed");
      // relative to some other config: the identity diff finds the change
      const other = { ...c0 };
      const diffed = updateModel(c0, c1, a, { since: other, came: [], gone: [], settingsChanged: false });
      assert.equal(diffed.delta.upsertServices.length > 0, true, "the identity diff found the changed service");
    });

    it("ids stay unique and keys keep their ids across a chain of random reloads", () => {
      fc.assert(fc.property(fc.array(configArb, { minLength: 2, maxLength: 5 }), (configs) => {
        let prev = buildModel(configs[0]!);
        for (const c of configs.slice(1)) {
          const next = buildModel(c, prev);
          const ids = [...next.services.values()].map((e) => e.id);
          assert.equal(new Set(ids).size, ids.length, "duplicate id");
          assert.ok(Math.max(-1, ...ids) < Math.max(next.services.size, prev.services.size) + prev.services.size, "ids stay dense");
          for (const [k, e] of next.services) {
            const old = prev.services.get(k);
            if (old) assert.equal(e.id, old.id, `${k} changed id`);
          }
          prev = next;
        }
      }), { seed: 7, numRuns: 150 });
    });
  });

  describe("IdAllocator", () => {
    it("hands out the lowest id not reserved", () => {
      const ids = new IdAllocator(0);
      ids.reserve(0);
      ids.reserve(2);
      assert.deepEqual([ids.allocate(), ids.allocate(), ids.allocate()], [1, 3, 4]);
    });
  });
});
