// kube-proxy's health surface (pkg/proxy/healthcheck/proxy_health.go), so the probes, load balancers
// and dashboards that watched kube-proxy read wasp the same way:
//   /healthz  200 {"lastUpdated": "...","currentTime": "...", "nodeEligible": true} while healthy and the
//             node is eligible; 503 otherwise (the node is being deleted or tainted
//             ToBeDeletedByClusterAutoscaler — cloud load balancers' health checks drain it).
//   /livez    the same without the node: 200 {"lastUpdated": "...","currentTime": "..."} or 503.
// Unhealthy means a change has been queued for longer than healthTimeout without a sync that applied it
// (kube-proxy: 2 × syncPeriod, 60 s by default). Times print as Go's time.Time String() does, with the
// monotonic reading, as kube-proxy's %q prints them: "2026-12-02 15:42:41.123456 +0000 UTC m=+12.345678901".
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** kube-proxy's --healthz-bind-address default. */
export const DEFAULT_HEALTHZ_HOST = "0.0.0.0";
export const DEFAULT_HEALTHZ_PORT = 10256;
/** kube-proxy: 2 × its default syncPeriod of 30 s. */
export const DEFAULT_HEALTH_TIMEOUT_MS = 60_000;

/** A wall-clock instant with the process's monotonic reading (both from one call). */
interface Instant { wallMs: number; monoMs: number }

const now = (): Instant => ({ wallMs: performance.timeOrigin + performance.now(), monoMs: performance.now() });

/** Go's Time.String() in UTC: fractional seconds without trailing zeros, then " m=+secs" when monotonic. */
export function goTimeString(t: Instant | undefined): string {
  if (!t) return "0001-01-01 00:00:00 +0000 UTC";
  const d = new Date(Math.floor(t.wallMs));
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const ns = Math.round((t.wallMs - Math.floor(t.wallMs / 1000) * 1000) * 1e6); // sub-ms digits from performance.now()
  const frac = ns > 0 ? `.${String(Math.min(ns, 999_999_999)).padStart(9, "0").replace(/0+$/, "")}` : "";
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}${frac} +0000 UTC m=+${(t.monoMs / 1000).toFixed(9)}`;
}

export class ProxyHealth {
  private lastUpdated: Instant | undefined;
  private oldestQueued: Instant | undefined;
  private eligible = true; // eligible while starting, until a Node event says otherwise (as kube-proxy)

  constructor(readonly healthTimeoutMs = DEFAULT_HEALTH_TIMEOUT_MS, private readonly clock: () => Instant = now) {}

  /** A change arrived that a sync has yet to apply (kube-proxy's QueuedUpdate): keeps the oldest. */
  queued(): void {
    this.oldestQueued ??= this.clock();
  }

  /** A sync applied everything queued so far (kube-proxy's Updated). */
  updated(): void {
    this.oldestQueued = undefined;
    this.lastUpdated = this.clock();
  }

  setNodeEligible(eligible: boolean): void {
    this.eligible = eligible;
  }

  get nodeEligible(): boolean {
    return this.eligible;
  }

  /** Healthy unless a queued change has waited healthTimeout (before the first sync too: kube-proxy counts only after one). */
  isHealthy(at: Instant = this.clock()): boolean {
    if (!this.lastUpdated || !this.oldestQueued) return true;
    return at.monoMs - this.oldestQueued.monoMs < this.healthTimeoutMs;
  }

  /** The answer to a GET of /healthz or /livez. */
  answer(path: "/healthz" | "/livez"): { status: number; body: string } {
    const at = this.clock();
    const healthy = this.isHealthy(at);
    const ok = path === "/healthz" ? healthy && this.eligible : healthy;
    // kube-proxy reports lastUpdated as now while healthy (the old meaning: "the sync loop ran recently").
    const last = goTimeString(ok ? at : this.lastUpdated);
    const body = path === "/healthz"
      ? `{"lastUpdated": ${JSON.stringify(last)},"currentTime": ${JSON.stringify(goTimeString(at))}, "nodeEligible": ${this.eligible}}`
      : `{"lastUpdated": ${JSON.stringify(last)},"currentTime": ${JSON.stringify(goTimeString(at))}}`;
    return { status: ok ? 200 : 503, body };
  }
}

/** Serves /healthz and /livez on host:port (port 0: any free port); resolves with the bound port. */
export function serveHealthz(health: ProxyHealth, host: string, port: number, onAnswer?: (path: string, status: number) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/healthz" && path !== "/livez") { res.writeHead(404, { "content-type": "text/plain" }).end("404 page not found\n"); return; }
    const a = health.answer(path);
    onAnswer?.(path, a.status);
    res.writeHead(a.status, { "content-type": "application/json", "x-content-type-options": "nosniff" }).end(a.body);
  });
  return new Promise((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(new Error(`cannot serve /healthz on ${host}:${port}: ${e.code ?? e.message}. Pick another address (--healthz-bind-address)`)));
    server.listen(port, host, () => resolve({ server, port: (server.address() as AddressInfo).port }));
  });
}
