// Prometheus text on 127.0.0.1: the engine's counters, read when scraped (never per packet).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Engine } from "../engine/engine.js";

/** Drop names as the metric labels them: NoBackend -> no_backend. */
export function snake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

export interface Metrics {
  registry: Registry;
  reloadSeconds: Histogram;
}

export function makeMetrics(engine: () => Engine, extra: () => { writeDropped: number }): Metrics {
  const registry = new Registry();
  new Counter({
    name: "wasp_packets_total", help: "Packets the engine gave each verdict", labelNames: ["verdict"], registers: [registry],
    collect() {
      this.reset();
      for (const [v, n] of Object.entries(engine().counters().verdicts)) if (v !== "none") this.inc({ verdict: snake(v) }, n);
    },
  });
  new Counter({
    name: "wasp_packets_dropped_total", help: "Packets the engine dropped (or answered itself) by reason", labelNames: ["reason"], registers: [registry],
    collect() {
      this.reset();
      for (const [r, n] of Object.entries(engine().counters().drops)) this.inc({ reason: snake(r) }, n);
    },
  });
  new Counter({
    name: "wasp_tun_write_dropped_total", help: "Packets the kernel refused when written back to the TUN device", registers: [registry],
    collect() { this.reset(); this.inc(extra().writeDropped); },
  });
  new Gauge({
    name: "wasp_conntrack_entries", help: "Flows in the connection tracking table", registers: [registry],
    collect() { this.set(engine().exports.ctCount()); },
  });
  new Gauge({
    name: "wasp_table_generation", help: "Generation of the engine's tables (one per load or reload)", registers: [registry],
    collect() { this.set(engine().exports.generation()); },
  });
  const reloadSeconds = new Histogram({
    name: "wasp_reload_duration_seconds", help: "Time from a config change to its commit",
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [registry],
  });
  return { registry, reloadSeconds };
}

/** Serves /metrics on host:port (port 0: any free port); resolves with the bound port. */
export function serveMetrics(registry: Registry, host: string, port: number): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.url !== "/metrics" && req.url !== "/") { res.writeHead(404).end("not found; try /metrics\n"); return; }
    registry.metrics().then((text) => {
      res.writeHead(200, { "content-type": registry.contentType }).end(text);
    }, (e: Error) => { res.writeHead(500).end(`${e.message}\n`); });
  });
  return new Promise((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(new Error(`cannot serve metrics on ${host}:${port}: ${e.code ?? e.message}. Pick another port (--metrics-port)`)));
    server.listen(port, host, () => resolve({ server, port: (server.address() as AddressInfo).port }));
  });
}
