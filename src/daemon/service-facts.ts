// What the node's routes (the external and LoadBalancer addresses routed to wasp0) and the health
// check servers take from the services, kept per service and moved by each reload's change set: a
// one-service change at 30,000 services costs that service. A pass over all of them cost ~17 ms
// each for the routes and the health checks (the API source's services, measured), which was most
// of the time from the API server's send to the new generation.
import type { Config, ConfigChanges, ServiceConfig } from "../config/index.js";
import { formatIp, parseIp, serviceChanges } from "../model/index.js";
import type { ExternalRoutes } from "./node-net.js";
import { healthCheckTest, type HealthCheck } from "./service-health.js";

export class ServiceFacts {
  /** Each routed address ("a.b.c.d/32", "x::y/128") with the number of services that claim it: an
   *  address two services share stays routed while one of them has it. */
  private readonly claims = new Map<string, number>();
  private routes: Partial<Record<4 | 6, string[]>> = {};
  private readonly checks = new Map<ServiceConfig, HealthCheck>();
  private checkOf!: (s: ServiceConfig) => HealthCheck | undefined;

  constructor(private config: Config) {
    this.rebuild(config);
  }

  /** Moves to `next` (with the source's change set, when it has one): only the services that came
   *  or went are looked at, unless more than the services changed. */
  follow(next: Config, changes?: ConfigChanges): void {
    const moved = serviceChanges(this.config, next, changes);
    this.config = next;
    if (!moved) { this.rebuild(next); return; }
    for (const s of moved.gone) this.count(s, -1);
    for (const s of moved.came) this.count(s, 1);
  }

  readonly externalRoutes: ExternalRoutes = (family) => {
    const suffix = family === 4 ? "/32" : "/128";
    return (this.routes[family] ??= [...this.claims.keys()].filter((r) => r.endsWith(suffix)).sort());
  };

  healthChecks(): HealthCheck[] {
    return [...this.checks.values()];
  }

  private rebuild(config: Config): void {
    this.claims.clear();
    this.checks.clear();
    this.checkOf = healthCheckTest(config.node);
    for (const s of config.services) this.count(s, 1);
  }

  private count(s: ServiceConfig, by: 1 | -1): void {
    if (!s.ignored && (s.externalIPs.length > 0 || s.loadBalancerIPs.length > 0)) {
      for (const a of [...s.externalIPs, ...s.loadBalancerIPs]) {
        const ip = parseIp(a);
        if (!ip) continue;
        const route = `${formatIp(ip)}/${ip.family === 4 ? 32 : 128}`, n = (this.claims.get(route) ?? 0) + by;
        if (n > 0) this.claims.set(route, n); else this.claims.delete(route);
      }
      this.routes = {};
    }
    const check = by === 1 ? this.checkOf(s) : undefined;
    if (check) this.checks.set(s, check); else this.checks.delete(s);
  }
}
