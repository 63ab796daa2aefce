// The config a node runs with when it is given none: one demo node and three services, enough to see
// ClusterIP (TCP and UDP) and NodePort work end to end. test/unit/config/default.test.ts validates it.

import type { Config } from "./schema.js";
import { validateConfig } from "./validate.js";

export const DEFAULT_CONFIG_YAML = `# wasp demo node: one node, three services
mode: tun
node:
  name: demo-node
  underlayIP: 10.99.0.1
  podCIDR: 10.244.1.0/24
serviceCIDR: 10.96.0.0/16
clusterCIDR: 10.244.0.0/16
services:
  - name: web
    clusterIP: 10.96.0.10
    ports:
      - { port: 80, protocol: TCP, targetPort: 8080 }
    backends:
      - { ip: 10.244.1.10 }
      - { ip: 10.244.1.11 }
  - name: dns
    clusterIP: 10.96.0.53
    ports:
      - { name: dns, port: 53, protocol: UDP }
      - { name: dns-tcp, port: 53, protocol: TCP }
    backends:
      - { ip: 10.244.1.12 }
  - name: web-nodeport
    type: NodePort
    clusterIP: 10.96.0.11
    ports:
      - { port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080 }
    backends:
      - { ip: 10.244.1.10 }
      - { ip: 10.244.1.11 }
`;

/** The demo config as a document (what parsing DEFAULT_CONFIG_YAML gives). */
export const DEFAULT_CONFIG_RAW = {
  mode: "tun",
  node: { name: "demo-node", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" },
  serviceCIDR: "10.96.0.0/16",
  clusterCIDR: "10.244.0.0/16",
  services: [
    {
      name: "web",
      clusterIP: "10.96.0.10",
      ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }],
      backends: [{ ip: "10.244.1.10" }, { ip: "10.244.1.11" }],
    },
    {
      name: "dns",
      clusterIP: "10.96.0.53",
      ports: [{ name: "dns", port: 53, protocol: "UDP" }, { name: "dns-tcp", port: 53, protocol: "TCP" }],
      backends: [{ ip: "10.244.1.12" }],
    },
    {
      name: "web-nodeport",
      type: "NodePort",
      clusterIP: "10.96.0.11",
      ports: [{ port: 80, protocol: "TCP", targetPort: 8080, nodePort: 30080 }],
      backends: [{ ip: "10.244.1.10" }, { ip: "10.244.1.11" }],
    },
  ],
} as const;

/** The validated demo config. Throws only if the embedded default is broken (a test guards that). */
export function defaultConfig(): Config {
  const r = validateConfig(structuredClone(DEFAULT_CONFIG_RAW));
  if ("problems" in r) throw new Error(`embedded default config is invalid: ${r.problems.map((p) => `${p.path} ${p.message}`).join("; ")}`);
  return r.config;
}
