// Metrics under kube-proxy's own names (pkg/proxy/metrics, subsystem "kubeproxy"), with its buckets, on
// the daemon's registry: dashboards and alerts written for kube-proxy keep working where the meaning is
// the same. A "sync" is one config applied to the engine (one table generation, or none if nothing changed).
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

// prometheus.ExponentialBuckets(0.001, 2, 15): 1 ms … 16.4 s.
const SYNC_BUCKETS = Array.from({ length: 15 }, (_, i) => 0.001 * 2 ** i);
// kube-proxy's merge() starts with a 0 bucket, then 0.25 s, 0.5 s, 1…59 s, 60…115 s by 5, 120…300 s by 30.
const lin = (start: number, width: number, n: number) => Array.from({ length: n }, (_, i) => start + width * i);
const PROGRAMMING_BUCKETS = [0, ...lin(0.25, 0.25, 2), ...lin(1, 1, 59), ...lin(60, 5, 12), ...lin(120, 30, 7)];

export interface KubeProxyMetrics {
  /** One sync took `seconds`; `triggerMs` are the endpoints' last-change-trigger-times it carried. */
  observeSync(seconds: number, triggerMs?: readonly number[], nowMs?: number): void;
  /** A change arrived that the next sync will carry. */
  queued(nowMs?: number): void;
  healthzAnswered(path: string, status: number): void;
}

export function registerKubeProxyMetrics(registry: Registry): KubeProxyMetrics {
  const duration = new Histogram({ name: "kubeproxy_sync_proxy_rules_duration_seconds", help: "SyncProxyRules latency in seconds", buckets: SYNC_BUCKETS, registers: [registry] });
  const last = new Gauge({ name: "kubeproxy_sync_proxy_rules_last_timestamp_seconds", help: "The last time proxy rules were successfully synced", registers: [registry] });
  const lastQueued = new Gauge({ name: "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", help: "The last time a sync of proxy rules was queued", registers: [registry] });
  const programming = new Histogram({ name: "kubeproxy_network_programming_duration_seconds", help: "In Cluster Network Programming Latency in seconds", buckets: PROGRAMMING_BUCKETS, registers: [registry] });
  const healthz = new Counter({ name: "kubeproxy_proxy_healthz_total", help: "Cumulative proxy healthz HTTP status", labelNames: ["code"], registers: [registry] });
  const livez = new Counter({ name: "kubeproxy_proxy_livez_total", help: "Cumulative proxy livez HTTP status", labelNames: ["code"], registers: [registry] });
  return {
    observeSync(seconds, triggerMs = [], nowMs = Date.now()) {
      duration.observe(seconds);
      last.set(nowMs / 1000);
      // As kube-proxy: from the endpoints controller's trigger time to now; a clock skewed into the future is skipped.
      for (const t of triggerMs) if (nowMs >= t) programming.observe((nowMs - t) / 1000);
    },
    queued(nowMs = Date.now()) {
      lastQueued.set(nowMs / 1000);
    },
    healthzAnswered(path, status) {
      (path === "/livez" ? livez : healthz).inc({ code: String(status) });
    },
  };
}
