// Per-service health checks for load balancers (type LoadBalancer, externalTrafficPolicy Local):
// on each service's healthCheckNodePort this node answers 200 while it has a local ready endpoint
// for the service and 503 otherwise, so the load balancer sends external traffic only to nodes
// that can serve it without a second hop. The body and header are kube-proxy's, which load
// balancer controllers read.
import { createServer, type Server } from "node:http";
import type { Config, ServiceConfig } from "../config/index.js";
import { localEndpointTest } from "../model/service-drafts.js";

export interface HealthCheck {
  namespace: string;
  name: string;
  port: number;
  localEndpoints: number;
}

/** The health check a service asks this node to serve (undefined: none), with its local ready
 *  endpoints counted; one test per config node. */
export function healthCheckTest(node: Config["node"]): (s: ServiceConfig) => HealthCheck | undefined {
  const isLocal = localEndpointTest(node);
  return (s) => (s.ignored || s.healthCheckNodePort === undefined || s.externalTrafficPolicy !== "Local" ? undefined : {
    namespace: s.namespace, name: s.name, port: s.healthCheckNodePort,
    // kube-proxy counts the local endpoints that are ready (not the terminating fallback).
    localEndpoints: s.backends.filter((b) => b.ready && !b.terminating && isLocal(b)).length,
  });
}

interface Served { check: HealthCheck; server: Server }

export class ServiceHealthServers {
  private readonly served = new Map<number, Served>();

  /** proxyHealthy: whether the datapath serves (kube-proxy's serviceProxyHealthy). */
  constructor(private readonly proxyHealthy: () => boolean, private readonly onError: (port: number, err: Error) => void) {}

  /** Opens the ports new in `checks`, closes those gone, and updates the counts of the rest. */
  async sync(checks: readonly HealthCheck[]): Promise<void> {
    const want = new Map(checks.map((c) => [c.port, c]));
    for (const [port, s] of this.served) {
      if (!want.has(port)) { this.served.delete(port); s.server.close(); }
    }
    const opening: Array<Promise<void>> = [];
    for (const [port, check] of want) {
      const have = this.served.get(port);
      if (have) { have.check = check; continue; }
      const entry: Served = { check, server: createServer((_req, res) => this.answer(entry.check, res)) };
      this.served.set(port, entry);
      opening.push(new Promise<void>((resolve) => {
        entry.server.once("error", (e) => {
          this.served.delete(port);
          this.onError(port, new Error(`cannot serve the health check of ${check.namespace}/${check.name} on TCP port ${port}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
          resolve();
        });
        entry.server.listen(port, "0.0.0.0", () => resolve());
      }));
    }
    await Promise.all(opening);
  }

  ports(): number[] {
    return [...this.served.keys()];
  }

  private answer(check: HealthCheck, res: import("node:http").ServerResponse): void {
    const healthy = this.proxyHealthy();
    res.setHeader("Content-Type", "application/json");
    res.setHeader("X-Content-Type-Options", "nosniff");
    res.setHeader("X-Load-Balancing-Endpoint-Weight", String(check.localEndpoints));
    res.statusCode = check.localEndpoints > 0 && healthy ? 200 : 503;
    res.end(JSON.stringify({
      service: { namespace: check.namespace, name: check.name }, localEndpoints: check.localEndpoints, serviceProxyHealthy: healthy,
    }, null, 2));
  }

  async close(): Promise<void> {
    await Promise.all([...this.served.values()].map((s) => new Promise<void>((resolve) => s.server.close(() => resolve()))));
    this.served.clear();
  }
}
