// The routes and health checks a daemon keeps per service follow a reload's change set: after each
// change they are what the services in force ask for (kube-proxy routes every external and
// LoadBalancer address, and serves a healthCheckNodePort per Local LoadBalancer service with its
// ready, non-terminating endpoints on this node counted), without a pass over all services.
import { strict as assert } from "node:assert";
import { validateConfig, type Config, type ServiceConfig } from "../../../src/config/index.js";
import { ServiceFacts } from "../../../src/daemon/service-facts.js";

function config(services: unknown[], nodeName = "n1"): Config {
  const other = nodeName === "n1" ? "n2" : "n1";
  const r = validateConfig({
    node: { name: nodeName, underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" }, services,
    nodes: [{ name: other, underlayIP: "10.99.0.2", podCIDR: "10.244.2.0/24" }],
  });
  if ("problems" in r) assert.fail(`unexpected problems: ${JSON.stringify(r.problems)}`);
  return r.config;
}

const lb = (name: string, ip: string, lbIP: string, backends: unknown[], hc?: number) => ({
  name, type: "LoadBalancer", clusterIP: ip, loadBalancerIPs: [lbIP], ports: [{ port: 80 }], backends,
  ...(hc !== undefined && { externalTrafficPolicy: "Local", healthCheckNodePort: hc }),
});
const ext = (name: string, ip: string, externalIP: string, port: number) => ({ name, clusterIP: ip, externalIPs: [externalIP], ports: [{ port }], backends: [] });

/** The next config with service i replaced (the others the same objects, as the sources hand them over). */
function replaced(prev: Config, i: number, raw: unknown): { next: Config; changes: { since: Config; came: ServiceConfig[]; gone: ServiceConfig[]; settingsChanged: boolean } } {
  const s = config([raw]).services[0]!;
  const services = prev.services.slice();
  const gone = services.splice(i, 1, s);
  return { next: { ...prev, services }, changes: { since: prev, came: [s], gone, settingsChanged: false } };
}

describe("daemon/service-facts", () => {
  const first = config([
    lb("a", "10.96.0.10", "203.0.113.1", [{ ip: "10.244.1.10", nodeName: "n1" }, { ip: "10.244.2.10", nodeName: "n2" }], 32001),
    ext("b", "10.96.0.11", "198.51.100.7", 81),
    ext("c", "10.96.0.12", "198.51.100.7", 82),
    { name: "d", clusterIP: "10.96.0.13", ports: [{ port: 80 }], backends: [] },
  ]);

  it("starts with every external and LoadBalancer address routed once, sorted, and one health check per Local LoadBalancer service", () => {
    const f = new ServiceFacts(first);
    assert.deepEqual(f.externalRoutes(4), ["198.51.100.7/32", "203.0.113.1/32"]);
    assert.deepEqual(f.externalRoutes(6), []);
    assert.deepEqual(f.healthChecks(), [{ namespace: "default", name: "a", port: 32001, localEndpoints: 1 }]);
  });

  it("a change set moves only what its services ask for: an address two services share stays routed until both let it go", () => {
    const f = new ServiceFacts(first);
    const one = replaced(first, 1, { name: "b", clusterIP: "10.96.0.11", ports: [{ port: 81 }], backends: [] });
    f.follow(one.next, one.changes);
    assert.deepEqual(f.externalRoutes(4), ["198.51.100.7/32", "203.0.113.1/32"], "c still has 198.51.100.7");
    const two = replaced(one.next, 2, { name: "c", clusterIP: "10.96.0.12", ports: [{ port: 82 }], backends: [] });
    f.follow(two.next, two.changes);
    assert.deepEqual(f.externalRoutes(4), ["203.0.113.1/32"]);
  });

  it("a change to a Local service's endpoints recounts its local ready endpoints (terminating and other nodes' left out)", () => {
    const f = new ServiceFacts(first);
    const { next, changes } = replaced(first, 0, lb("a", "10.96.0.10", "203.0.113.1", [
      { ip: "10.244.1.10", nodeName: "n1" }, { ip: "10.244.1.11", nodeName: "n1" }, { ip: "10.244.1.12", nodeName: "n1", ready: false, terminating: true },
    ], 32001));
    f.follow(next, changes);
    assert.deepEqual(f.healthChecks(), [{ namespace: "default", name: "a", port: 32001, localEndpoints: 2 }]);
  });

  it("without a change set, or with the node changed, it recounts from the whole config", () => {
    const f = new ServiceFacts(first);
    const moved = { ...first, services: first.services.slice(1) };   // "a" gone, no change set: by identity
    f.follow(moved);
    assert.deepEqual(f.externalRoutes(4), ["198.51.100.7/32"]);
    assert.deepEqual(f.healthChecks(), []);
    const asN2 = config([lb("a", "10.96.0.10", "203.0.113.1", [{ ip: "10.244.1.10", nodeName: "n1" }, { ip: "10.244.2.10", nodeName: "n2" }, { ip: "10.244.2.11", nodeName: "n2" }], 32001)], "n2");
    f.follow(asN2, { since: moved, came: [], gone: [], settingsChanged: true });
    assert.deepEqual(f.healthChecks(), [{ namespace: "default", name: "a", port: 32001, localEndpoints: 2 }], "the endpoints on n2 are this node's now");
    assert.deepEqual(f.externalRoutes(4), ["203.0.113.1/32"]);
  });
});
