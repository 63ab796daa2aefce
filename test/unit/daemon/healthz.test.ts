// kube-proxy's /healthz and /livez (pkg/proxy/healthcheck/proxy_health.go) and its metrics
// (pkg/proxy/metrics): status codes, body shape, the staleness rule, node eligibility, metric names and
// buckets. Expectations are kube-proxy's source and Go's time.Time String() format.
import { strict as assert } from "node:assert";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { goTimeString, ProxyHealth, serveHealthz } from "../../../src/daemon/healthz.js";
import { registerKubeProxyMetrics } from "../../../src/daemon/kube-proxy-metrics.js";

/** A settable clock: wall time and monotonic time move together. */
function clock(startWallMs = Date.UTC(2026, 11, 2, 15, 0, 0)) {
  let mono = 1000;
  const c = () => ({ wallMs: startWallMs + mono - 1000, monoMs: mono });
  return { c, advance: (ms: number) => { mono += ms; } };
}

describe("kube-proxy healthz and metrics", () => {
  it("formats times as Go's time.Time String() does (the Go playground's famous line), and the zero time", () => {
    // fmt.Println(time.Now()) on the playground: "2009-11-10 23:00:00 +0000 UTC m=+0.000000001"
    assert.equal(goTimeString({ wallMs: Date.UTC(2009, 10, 10, 23, 0, 0), monoMs: 0.000001 }), "2009-11-10 23:00:00 +0000 UTC m=+0.000000001");
    assert.equal(goTimeString({ wallMs: Date.UTC(2009, 10, 10, 23, 0, 0) + 123.5, monoMs: 2500 }), "2009-11-10 23:00:00.1235 +0000 UTC m=+2.500000000");
    assert.equal(goTimeString(undefined), "0001-01-01 00:00:00 +0000 UTC");
  });

  it("healthy while starting and while fully synced; 503 once a queued change waits healthTimeout; 200 again after a sync", () => {
    const k = clock();
    const h = new ProxyHealth(60_000, k.c);
    assert.equal(h.answer("/healthz").status, 200, "starting up");
    h.updated();
    h.queued();
    k.advance(59_000);
    assert.equal(h.answer("/healthz").status, 200, "a queued change not yet late");
    h.queued(); // the oldest one counts
    k.advance(1_000);
    const late = h.answer("/healthz");
    assert.equal(late.status, 503);
    assert.equal(h.answer("/livez").status, 503);
    h.updated();
    assert.equal(h.answer("/healthz").status, 200);
  });

  it("bodies: healthz has lastUpdated, currentTime, nodeEligible; livez lacks nodeEligible; while healthy lastUpdated is now", () => {
    const k = clock();
    const h = new ProxyHealth(60_000, k.c);
    h.updated();
    k.advance(5000);
    const a = h.answer("/healthz");
    assert.equal(a.body, `{"lastUpdated": "2026-12-02 15:00:05 +0000 UTC m=+6.000000000","currentTime": "2026-12-02 15:00:05 +0000 UTC m=+6.000000000", "nodeEligible": true}`);
    assert.equal(h.answer("/livez").body, `{"lastUpdated": "2026-12-02 15:00:05 +0000 UTC m=+6.000000000","currentTime": "2026-12-02 15:00:05 +0000 UTC m=+6.000000000"}`);
    h.queued();
    k.advance(61_000);
    assert.equal(h.answer("/livez").body, `{"lastUpdated": "2026-12-02 15:00:00 +0000 UTC m=+1.000000000","currentTime": "2026-12-02 15:01:06 +0000 UTC m=+67.000000000"}`, "when unhealthy: the last sync's time");
  });

  it("a node being deleted (or tainted ToBeDeletedByClusterAutoscaler) fails /healthz but not /livez", () => {
    const h = new ProxyHealth(60_000, clock().c);
    h.updated();
    h.setNodeEligible(false);
    const a = h.answer("/healthz");
    assert.equal(a.status, 503);
    assert.match(a.body, /"nodeEligible": false}$/);
    assert.equal(h.answer("/livez").status, 200);
  });

  it("serves /healthz and /livez over HTTP with kube-proxy's headers; other paths 404", async () => {
    const h = new ProxyHealth();
    h.updated();
    const seen: string[] = [];
    const { server } = await serveHealthz(h, "127.0.0.1", 0, (p, s) => seen.push(`${p} ${s}`));
    try {
      const port = (server.address() as AddressInfo).port;
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("content-type"), "application/json");
      assert.equal(r.headers.get("x-content-type-options"), "nosniff");
      assert.deepEqual(Object.keys(await r.json() as object), ["lastUpdated", "currentTime", "nodeEligible"]);
      assert.equal((await fetch(`http://127.0.0.1:${port}/livez`)).status, 200);
      assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
      assert.deepEqual(seen, ["/healthz 200", "/livez 200"]);
    } finally {
      server.close();
    }
  });

  it("metrics carry kube-proxy's names and buckets (ExponentialBuckets(0.001, 2, 15); the network programming merge)", async () => {
    const reg = new Registry();
    const m = registerKubeProxyMetrics(reg);
    m.observeSync(0.003, [1_000_000 - 2500, 1_000_000 + 5000], 1_000_000);
    m.healthzAnswered("/healthz", 503);
    const text = await reg.metrics();
    assert.match(text, /^kubeproxy_sync_proxy_rules_duration_seconds_bucket\{le="0.004"\} 1$/m);
    assert.match(text, /^kubeproxy_sync_proxy_rules_duration_seconds_bucket\{le="0.002"\} 0$/m);
    assert.match(text, /^kubeproxy_sync_proxy_rules_duration_seconds_bucket\{le="16.384"\} 1$/m, "15 buckets: the last is 0.001 * 2^14");
    assert.match(text, /^kubeproxy_sync_proxy_rules_last_timestamp_seconds 1000$/m);
    assert.match(text, /^kubeproxy_network_programming_duration_seconds_count 1$/m, "a trigger time in the future (clock skew) is skipped");
    assert.match(text, /^kubeproxy_network_programming_duration_seconds_bucket\{le="3"\} 1$/m);
    assert.match(text, /^kubeproxy_network_programming_duration_seconds_bucket\{le="2"\} 0$/m);
    assert.match(text, /^kubeproxy_network_programming_duration_seconds_bucket\{le="300"\} 1$/m);
    assert.match(text, /^kubeproxy_proxy_healthz_total\{code="503"\} 1$/m);
  });
});
