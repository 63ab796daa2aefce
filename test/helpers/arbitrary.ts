// Random valid configs for property tests: a handful of services over a shared pool of names, IPs and
// backends, so that two draws overlap (same keys, changed backends, added and removed entries).
import fc from "fast-check";
import { validateConfig, type Config } from "../../src/config/index.js";

const backend = fc.record({
  host: fc.integer({ min: 2, max: 30 }),
  remote: fc.boolean(),
  v6: fc.boolean(),
  ready: fc.boolean(),
  serving: fc.boolean(),
  terminating: fc.boolean(),
});

const service = fc.record({
  slot: fc.integer({ min: 0, max: 9 }),
  type: fc.constantFrom("ClusterIP", "NodePort", "LoadBalancer"),
  dual: fc.boolean(),
  ports: fc.uniqueArray(fc.record({ port: fc.constantFrom(53, 80, 443, 8080), protocol: fc.constantFrom("TCP", "UDP"), target: fc.option(fc.constantFrom(8080, 9090), { nil: undefined }) }), {
    selector: (p) => `${p.port}/${p.protocol}`, minLength: 1, maxLength: 3,
  }),
  externalIP: fc.boolean(),
  affinity: fc.boolean(),
  etp: fc.constantFrom("Cluster", "Local"),
  itp: fc.constantFrom("Cluster", "Local"),
  backends: fc.uniqueArray(backend, { selector: (b) => `${b.host}/${b.remote}/${b.v6}`, maxLength: 6 }),
});

export const configArb: fc.Arbitrary<Config> = fc.record({
  services: fc.uniqueArray(service, { selector: (s) => s.slot, maxLength: 6 }),
  nodes: fc.integer({ min: 1, max: 4 }),
  maglev: fc.boolean(),
  extraAddr: fc.boolean(),
}).map((g) => {
  const raw = {
    node: {
      name: "n1", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24", podCIDRv6: "fd00:10:244:1::/64",
      nodeAddresses: g.extraAddr ? ["10.99.0.1", "192.0.2.1"] : ["10.99.0.1"],
    },
    serviceCIDRv6: "fd00:96::/112",
    clusterCIDRv6: "fd00:10:244::/56",
    loadBalancing: g.maglev ? { mode: "maglev" } : { mode: "random" },
    nodes: Array.from({ length: g.nodes }, (_, k) => ({
      name: `n${k + 2}`, underlayIP: `10.99.0.${k + 2}`, podCIDR: `10.244.${k + 2}.0/24`, podCIDRv6: `fd00:10:244:${k + 2}::/64`,
    })),
    services: g.services.map((s) => {
      const multi = s.ports.length > 1;
      return {
        name: `svc-${s.slot}`,
        type: s.type,
        clusterIPs: s.dual ? [`10.96.0.${s.slot + 1}`, `fd00:96::${s.slot + 1}`] : [`10.96.0.${s.slot + 1}`],
        ...(s.externalIP ? { externalIPs: [`192.0.2.${100 + s.slot}`] } : {}),
        ...(s.type === "LoadBalancer" ? { loadBalancerIPs: [`198.51.100.${s.slot + 1}`] } : {}),
        ...(s.affinity ? { sessionAffinity: "ClientIP" } : {}),
        ...(s.type !== "ClusterIP" || s.externalIP ? { externalTrafficPolicy: s.etp } : {}),
        internalTrafficPolicy: s.itp,
        ports: s.ports.map((p, k) => ({
          ...(multi ? { name: `p${k}` } : {}), port: p.port, protocol: p.protocol,
          ...(p.target !== undefined ? { targetPort: p.target } : {}),
          ...(s.type !== "ClusterIP" ? { nodePort: 30000 + s.slot * 4 + k } : {}),
        })),
        backends: s.backends.filter((b) => s.dual || !b.v6).map((b) => {
          const node = b.remote ? 2 : 1;
          return {
            ip: b.v6 ? `fd00:10:244:${node}::${b.host.toString(16)}` : `10.244.${node}.${b.host}`,
            ready: b.ready, serving: b.serving, terminating: b.terminating,
            ...(b.remote ? { nodeName: "n2" } : {}),
          };
        }),
      };
    }),
  };
  const r = validateConfig(raw);
  if ("problems" in r) throw new Error(`the generator made an invalid config: ${JSON.stringify(r.problems)}`);
  return r.config;
});
