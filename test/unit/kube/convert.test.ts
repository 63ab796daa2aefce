// Kubernetes objects to the internal config's pieces: expectations from the API reference
// (discovery.k8s.io/v1 EndpointConditions: ready/serving nil means true, terminating nil false; a
// Service port matches slice ports by name and protocol) and kube-proxy's handling.
import { strict as assert } from "node:assert";
import { parseCidr, type Cidr } from "../../../src/model/addr.js";
import { convertEndpointSlice, convertNode, convertService, flannelVtepOf, joinService, peerOf, type KubeService, type KubeSlice } from "../../../src/kube/index.js";
import { endpointSlice, node, service } from "../../helpers/fake-apiserver.js";

const ctx = { serviceCIDR: parseCidr("10.96.0.0/16") as Cidr };
const ctx6 = { ...ctx, serviceCIDRv6: parseCidr("fd00:96::/108") as Cidr };
const ok = <T>(r: { ok: T } | { problems: unknown } | { ignored: string }): T => {
  assert.ok("ok" in r, JSON.stringify(r));
  return r.ok;
};

describe("kube convert: Service, EndpointSlice and Node objects", () => {
  it("endpoint conditions: absent ready and serving count as true, absent terminating as false (kube-proxy's endpointslicecache)", () => {
    const s = ok(convertEndpointSlice(endpointSlice("a", "web", [
      { ip: "10.244.1.1", ready: null, serving: null, terminating: null },
      { ip: "10.244.1.2", ready: false, serving: null, terminating: true },
      { ip: "10.244.1.3", ready: false, serving: true, terminating: true },
    ], [{ port: 80 }]))) as KubeSlice;
    assert.deepEqual(s.endpoints.map((e) => [e.ready, e.serving, e.terminating]), [[true, true, false], [false, true, true], [false, true, true]]);
  });

  it("slices without the kubernetes.io/service-name label, and FQDN slices, are not a Service's endpoints", () => {
    const o = endpointSlice("a", "web", [{ ip: "10.244.1.1" }], [{ port: 80 }]);
    delete ((o["metadata"] as Record<string, unknown>)["labels"] as Record<string, unknown>)["kubernetes.io/service-name"];
    assert.deepEqual(convertEndpointSlice(o), { ignored: "no kubernetes.io/service-name label" });
    assert.deepEqual(convertEndpointSlice(endpointSlice("b", "web", [], [], { addressType: "FQDN" })), { ignored: "addressType FQDN" });
  });

  it("joins a Service port to slice ports by name and protocol; its backends listen on the slice port's number; duplicates across slices count once", () => {
    const svc = ok(convertService(service({ name: "web", clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "web" }, { name: "dns", port: 53, protocol: "UDP" }] }), ctx)) as KubeService;
    const a = ok(convertEndpointSlice(endpointSlice("a", "web", [{ ip: "10.244.1.1" }, { ip: "10.244.1.2" }], [{ name: "http", port: 8080 }, { name: "dns", port: 5353, protocol: "UDP" }]))) as KubeSlice;
    const b = ok(convertEndpointSlice(endpointSlice("b", "web", [{ ip: "10.244.1.2" }, { ip: "10.244.1.3" }], [{ name: "http", port: 8080 }, { name: "dns", port: 5353, protocol: "TCP" }]))) as KubeSlice;
    const parts = joinService(svc, [a, b]);
    assert.equal(parts.length, 2);
    assert.deepEqual(parts[0]?.backends.map((x) => `${x.ip}:${x.port}`), ["10.244.1.1:8080", "10.244.1.2:8080", "10.244.1.3:8080"]);
    assert.deepEqual(parts[1]?.backends.map((x) => `${x.ip}:${x.port}`), ["10.244.1.1:5353", "10.244.1.2:5353"], "the TCP dns port of slice b does not match a UDP service port");
  });

  it("an unnamed Service port matches the unnamed slice port", () => {
    const svc = ok(convertService(service({ name: "one", clusterIP: "10.96.0.11", ports: [{ port: 80 }] }), ctx)) as KubeService;
    const sl = ok(convertEndpointSlice(endpointSlice("a", "one", [{ ip: "10.244.1.1" }], [{ port: 9376 }]))) as KubeSlice;
    assert.deepEqual(joinService(svc, [sl])[0]?.backends.map((x) => x.port), [9376]);
  });

  it("headless and ExternalName Services are ignored; IPv6 addresses on an IPv4-only node are skipped with a note; SCTP ports are served like TCP and UDP", () => {
    assert.equal((ok(convertService(service({ name: "h", clusterIP: "None", ports: [{ port: 80 }] }), ctx)) as KubeService).ignored, true);
    assert.equal((ok(convertService(service({ name: "e", type: "ExternalName" }), ctx)) as KubeService).ignored, true);
    const s = ok(convertService(service({ name: "d", clusterIPs: ["10.96.0.12", "fd00:96::12"], ports: [{ name: "a", port: 80 }, { name: "b", port: 9, protocol: "SCTP" }] }), ctx)) as KubeService;
    assert.deepEqual(s.clusterIPs, ["10.96.0.12"]);
    assert.deepEqual(s.ports.map((p) => `${p.port}/${p.protocol}`), ["80/TCP", "9/SCTP"]);
    assert.equal(s.notes.length, 1, s.notes.join("; "));
    const sl = ok(convertEndpointSlice(endpointSlice("d-1", "d", [{ ip: "10.244.1.9" }], [{ name: "b", port: 9999, protocol: "SCTP" }]))) as KubeSlice;
    assert.deepEqual(joinService(s, [sl]).map((x) => x.backends.map((b) => `${b.ip}:${b.port}`)), [[], ["10.244.1.9:9999"]], "the SCTP port joins its slice port");
    const d = ok(convertService(service({ name: "d", clusterIPs: ["10.96.0.12", "fd00:96::12"], ports: [{ port: 80 }] }), ctx6)) as KubeService;
    assert.deepEqual(d.clusterIPs, ["10.96.0.12", "fd00:96::12"], "dual-stack when the node has serviceCIDRv6");
  });

  it("nodePort only on NodePort and LoadBalancer; LoadBalancer ingress IPs except ipMode Proxy; healthCheckNodePort with externalTrafficPolicy Local", () => {
    const lb = service({ name: "lb", type: "LoadBalancer", clusterIP: "10.96.0.13", ports: [{ port: 80, nodePort: 30001 }], externalTrafficPolicy: "Local",
      loadBalancerIngress: [{ ip: "203.0.113.1" }, { ip: "203.0.113.2", ipMode: "Proxy" }, { ip: "203.0.113.3", ipMode: "VIP" }] });
    (lb["spec"] as Record<string, unknown>)["healthCheckNodePort"] = 31999;
    const s = ok(convertService(lb, ctx)) as KubeService;
    assert.deepEqual(s.loadBalancerIPs, ["203.0.113.1", "203.0.113.3"]);
    assert.equal(s.ports[0]?.nodePort, 30001);
    assert.equal(s.healthCheckNodePort, 31999);
    assert.equal(joinService(s, [])[0]?.healthCheckNodePort, 31999);
  });

  it("malformed objects become problems that name the object and the field, never a throw", () => {
    const cases: Array<[unknown, RegExp]> = [
      [null, /Service \(object\)/],
      [{ metadata: { namespace: "default" }, spec: {} }, /metadata\.name is missing/],
      [{ metadata: { name: "x", namespace: "default" } }, /Service default\/x spec is missing/],
      [service({ name: "x", clusterIP: "10.96.0.300", ports: [{ port: 80 }] }), /spec\.clusterIPs\[0\] is "10\.96\.0\.300"; expected an IPv4 or IPv6 address/],
      [service({ name: "x", clusterIP: "10.97.0.1", ports: [{ port: 80 }] }), /outside the service CIDR 10\.96\.0\.0\/16/],
      [service({ name: "x", clusterIP: "10.96.0.1", ports: [{ port: 0 }] }), /spec\.ports\[0\]\.port is 0; a port is 1-65535/],
      [service({ name: "x", clusterIP: "10.96.0.1", ports: [{ port: 80, protocol: "ICMP" }] }), /spec\.ports\[0\]\.protocol is "ICMP"; expected TCP, UDP or SCTP/],
      [service({ name: "x", clusterIP: "10.96.0.1", ports: [] }), /spec\.ports is empty/],
    ];
    for (const [o, re] of cases) {
      const r = convertService(o, ctx);
      assert.ok("problems" in r, JSON.stringify(o));
      assert.match(r.problems.map((p) => `${p.path} ${p.message}`).join("\n"), re);
    }
    const bad = endpointSlice("s", "web", [{ ip: "fd00::1" }], [{ port: 80 }]);
    const r = convertEndpointSlice(bad);
    assert.ok("problems" in r, "an IPv6 address in an IPv4 slice is a problem");
    assert.equal(`${r.problems[0]?.path} ${r.problems[0]?.message}`, 'EndpointSlice default/s endpoints[0].addresses[0] is "fd00::1", an IPv6 address in an IPv4 slice');
    const n = convertNode({ metadata: { name: "n1" }, spec: { podCIDR: "10.244.1.5/24" } });
    assert.ok("problems" in n, "a pod CIDR with host bits set is a problem");
    assert.match(n.problems[0]?.message ?? "", /bits set after the prefix/);
  });

  it("a Node gives its IPv4 and IPv6 pod CIDRs, first InternalIP per family, NodePort addresses, eligibility; a peer needs a pod CIDR and an InternalIP", () => {
    const n = ok(convertNode(node("n1", "192.168.1.5", "10.244.5.0/24", { podCIDRv6: "fd00:244:5::/64", externalIP: "198.51.100.5" }))) as ReturnType<typeof convertNode> extends infer R ? R extends { ok: infer T } ? T : never : never;
    assert.deepEqual(n, { name: "n1", addresses: ["192.168.1.5", "198.51.100.5"], eligible: true, internalIPv4: "192.168.1.5", podCIDR: "10.244.5.0/24", podCIDRv6: "fd00:244:5::/64", notes: [], flannelAnnotations: {} });
    assert.deepEqual(peerOf(n), { name: "n1", underlayIP: "192.168.1.5", podCIDR: "10.244.5.0/24", podCIDRv6: "fd00:244:5::/64" });
    const bare = ok(convertNode(node("n2", "192.168.1.6", undefined))) as typeof n;
    assert.ok("skip" in peerOf(bare), "a Node without a pod CIDR is no peer");
    assert.equal((ok(convertNode(node("n3", "192.168.1.7", "10.244.7.0/24", { taints: [{ key: "ToBeDeletedByClusterAutoscaler", effect: "NoSchedule" }] }))) as typeof n).eligible, false);
    assert.equal((ok(convertNode(node("n4", "192.168.1.8", "10.244.8.0/24", { deleting: true }))) as typeof n).eligible, false);
  });

  it("a flannel Node: its VTEP MAC from flannel.alpha.coreos.com/backend-data and its underlay from public-ip, as flannel's own peers use them", () => {
    const annotations = {
      "flannel.alpha.coreos.com/backend-type": "vxlan", "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"AE:11:22:33:44:55"}',
      "flannel.alpha.coreos.com/public-ip": "192.168.1.50", "flannel.alpha.coreos.com/kube-subnet-manager": "true",
    };
    const n = ok(convertNode(node("fl1", "192.168.1.5", "10.244.5.0/24", { annotations }))) as Parameters<typeof peerOf>[0];
    assert.deepEqual(n.flannel, { vtepMAC: "ae:11:22:33:44:55", vni: 1, publicIP: "192.168.1.50" });
    assert.deepEqual(n.flannelAnnotations, annotations, "kept as they are, to tell whether publishing would change them");
    assert.deepEqual(peerOf(n), { name: "fl1", underlayIP: "192.168.1.50", podCIDR: "10.244.5.0/24", vtepMAC: "ae:11:22:33:44:55" });
  });

  it("flannel annotations that cannot be used leave the Node usable with a note (its MAC derived, its InternalIP as underlay); another backend type names no VTEP", () => {
    const notes: string[] = [];
    assert.equal(flannelVtepOf({ "flannel.alpha.coreos.com/backend-data": "not json" }, notes), undefined);
    assert.equal(flannelVtepOf({ "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}' }, notes), undefined, "a multicast MAC is no VTEP");
    assert.equal(flannelVtepOf({ "flannel.alpha.coreos.com/backend-type": "host-gw", "flannel.alpha.coreos.com/backend-data": "null" }, notes), undefined);
    assert.equal(notes.length, 3, notes.join(" | "));
    const n = ok(convertNode(node("fl2", "192.168.1.6", "10.244.6.0/24", { annotations: { "flannel.alpha.coreos.com/backend-data": "{}" } }))) as Parameters<typeof peerOf>[0];
    assert.match(n.notes.join(), /backend-data is "\{\}"; expected \{"VNI":1,"VtepMAC":"<unicast MAC>"\}/);
    assert.deepEqual(peerOf(n), { name: "fl2", underlayIP: "192.168.1.6", podCIDR: "10.244.6.0/24" });
  });

  it("spec.loadBalancerSourceRanges of a LoadBalancer: trimmed, host bits cleared as ParseCIDRSloppy does, each once; on another type ignored; a malformed one is a problem", () => {
    const lb = service({ name: "lb", type: "LoadBalancer", clusterIP: "10.96.0.10", ports: [{ port: 80 }], loadBalancerIngress: [{ ip: "198.51.100.1" }] });
    (lb["spec"] as Record<string, unknown>)["loadBalancerSourceRanges"] = [" 203.0.113.7/24", "203.0.113.0/24", "2001:db8::/32"];
    assert.deepEqual((ok(convertService(lb, ctx)) as KubeService).loadBalancerSourceRanges, ["203.0.113.0/24", "2001:db8::/32"]);
    const cip = service({ name: "c", clusterIP: "10.96.0.11", ports: [{ port: 80 }] });
    (cip["spec"] as Record<string, unknown>)["loadBalancerSourceRanges"] = ["203.0.113.0/24"];
    assert.deepEqual((ok(convertService(cip, ctx)) as KubeService).loadBalancerSourceRanges, []);
    (lb["spec"] as Record<string, unknown>)["loadBalancerSourceRanges"] = ["203.0.113.0"];
    assert.match(JSON.stringify(convertService(lb, ctx)), /spec\.loadBalancerSourceRanges\[0\]","message":"is \\"203\.0\.113\.0\\"; expected a CIDR/);
  });

  it("topology: an endpoint's hints.forZones and hints.forNodes become its backends' hints; a Node's topology.kubernetes.io/zone label its zone", () => {
    const svc = ok(convertService(service({ name: "web", clusterIP: "10.96.0.10", ports: [{ port: 80 }] }), ctx)) as KubeService;
    const sl = ok(convertEndpointSlice(endpointSlice("a", "web", [
      { ip: "10.244.1.1", forZones: ["zone-a"] }, { ip: "10.244.1.2", forZones: ["zone-b", "zone-c"], forNodes: ["n2"] }, { ip: "10.244.1.3" },
    ], [{ port: 8080 }]))) as KubeSlice;
    assert.deepEqual(joinService(svc, [sl])[0]?.backends.map((b) => b.hints), [
      { forZones: ["zone-a"], forNodes: [] }, { forZones: ["zone-b", "zone-c"], forNodes: ["n2"] }, undefined,
    ]);
    assert.equal((ok(convertNode(node("n1", "192.168.1.5", "10.244.5.0/24", { zone: "zone-a" }))) as { zone?: string }).zone, "zone-a");
    assert.equal("zone" in (ok(convertNode(node("n2", "192.168.1.6", "10.244.6.0/24"))) as object), false, "no label, no zone");
    const bad = endpointSlice("b", "web", [{ ip: "10.244.1.4" }], [{ port: 8080 }]);
    ((bad["endpoints"] as Array<Record<string, unknown>>)[0]!)["hints"] = { forZones: [{ zone: "x" }] };
    assert.match(JSON.stringify(convertEndpointSlice(bad)), /endpoints\[0\]\.hints\.forZones\[0\]\.name.*is missing/);
  });
});
