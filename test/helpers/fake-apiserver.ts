// A small local HTTP server that speaks the Kubernetes list/watch protocol for Nodes, Services and
// EndpointSlices, so the real client library can be driven without a kube-apiserver:
//   GET /api/v1/nodes, /api/v1/services, /apis/discovery.k8s.io/v1/endpointslices
//     list:  {"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"N"},"items":[...]}
//            (items without kind/apiVersion, as the API sends them); ?resourceVersion=R older than the
//            compaction point with resourceVersionMatch=NotOlderThan/Exact → HTTP 410 with a Status.
//   GET /api/v1/nodes/NAME: one Node (or 404 NotFound).
//   PATCH /api/v1/nodes/NAME with application/merge-patch+json (RFC 7386): merged, a MODIFIED event;
//     any other patch type 415, as the API answers one it does not take.
//     watch: ?watch=true|1&resourceVersion=R&allowWatchBookmarks=true → chunked JSON lines
//            {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}; every event after R;
//            R older than the compaction point → one ERROR event with a Status (code 410, reason
//            Expired) and the stream ends, as kube-apiserver does ("too old resource version").
// One resourceVersion counter across kinds, like etcd's revision. Bearer-token auth when a token is
// set. HTTPS with a self-signed certificate that the kubeconfig names as its CA, as the client refuses
// plain HTTP. Binds 127.0.0.1 (or the test underlay's 10.99.0.2 inside a test namespace). Tests drive it: add/update/remove objects, compact,
// expire or drop watches.
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { randomUUID } from "node:crypto";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export type Kind = "Node" | "Service" | "EndpointSlice";
type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

const ROUTES: Record<string, { kind: Kind; apiVersion: string; namespaced: boolean }> = {
  "/api/v1/nodes": { kind: "Node", apiVersion: "v1", namespaced: false },
  "/api/v1/services": { kind: "Service", apiVersion: "v1", namespaced: true },
  "/apis/discovery.k8s.io/v1/endpointslices": { kind: "EndpointSlice", apiVersion: "discovery.k8s.io/v1", namespaced: true },
};
const API_VERSION: Record<Kind, string> = { Node: "v1", Service: "v1", EndpointSlice: "discovery.k8s.io/v1" };

interface Event { rv: number; type: "ADDED" | "MODIFIED" | "DELETED"; kind: Kind; object: Obj }
interface Watcher { kind: Kind; res: ServerResponse; bookmarks: boolean }

// A test-only key and self-signed certificate (P-256, SAN IP:127.0.0.1 and IP:10.99.0.2 — the test
// underlay's external address, where a multi-node test serves the API — valid 2000-2099), made once with
// Python's cryptography package: fixed, so the tests need no openssl and no clock-sensitive generation.
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgi05/ZpT0zjqba9Xb
1kXuxGC6jKeTLmrSBy+Q2T/8jXShRANCAAQAAFGbZzHf4dZ3rnlqff+uVwVGyU7Q
3/JvQqjP5hDdwhbbvBOVzb2zXDgwaFNnac1r+jxu/z9L0f5Md8E4ZuGo
-----END PRIVATE KEY-----`;
const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIBaTCCARCgAwIBAgIUKaXZySom6h3TU1MfltZ3Dak3jsYwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTd2FzcC1mYWtlLWFwaXNlcnZlcjAgFw0wMDAxMDEwMDAwMDBa
GA8yMDk5MTIzMTAwMDAwMFowHjEcMBoGA1UEAwwTd2FzcC1mYWtlLWFwaXNlcnZl
cjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABAAAUZtnMd/h1neueWp9/65XBUbJ
TtDf8m9CqM/mEN3CFtu8E5XNvbNcODBoU2dpzWv6PG7/P0vR/kx3wThm4aijKjAo
MBUGA1UdEQQOMAyHBH8AAAGHBApjAAIwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjO
PQQDAgNHADBEAh9zsMzoK0XfciTsXn2xvI8phQW4jhtWkM90/xbWVV42AiEAzCeA
LT/XZ0YvjJZABqDN5gWqcosrTLTlsehMrOZf76U=
-----END CERTIFICATE-----`;

const keyOf = (o: Obj) => `${(o.metadata["namespace"] as string | undefined) ?? ""}/${o.metadata["name"] as string}`;
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

export class FakeApiServer {
  private server: Server | undefined;
  private rv = 1000;
  /** Events older than this are compacted away: a watch or list from before it gets 410 Gone. */
  private compactedRv = 0;
  private readonly objects: Record<Kind, Map<string, Obj>> = { Node: new Map(), Service: new Map(), EndpointSlice: new Map() };
  private log: Event[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Duplex>();
  /** Requests seen, for assertions: `list services`, `watch services rv=1005`, `401`, ... */
  readonly requests: string[] = [];
  /** The next N list calls of a kind answer 500 (to test the client's retry). */
  readonly failLists: Record<Kind, number> = { Node: 0, Service: 0, EndpointSlice: 0 };
  port = 0;
  private cert = "";

  /** The server's self-signed certificate (PEM): the CA a client must trust. */
  get caCert(): string {
    return this.cert;
  }

  /** host: the address to listen on (127.0.0.1, or an address the certificate names: 10.99.0.2). */
  constructor(readonly token?: string, readonly host = "127.0.0.1") {}

  async start(): Promise<string> {
    this.cert = TEST_CERT;
    this.server = createServer({ key: TEST_KEY, cert: TEST_CERT }, (req, res) => this.handle(req, res));
    this.server.on("connection", (s) => { this.sockets.add(s); s.on("close", () => this.sockets.delete(s)); });
    await new Promise<void>((resolve) => this.server?.listen(0, this.host, resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this.url;
  }

  get url(): string {
    return `https://${this.host}:${this.port}`;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** A kubeconfig (YAML) that points the client at this server with its token. */
  kubeconfig(): string {
    return [
      "apiVersion: v1", "kind: Config", "current-context: fake",
      "clusters:", "- name: fake", "  cluster:", `    server: ${this.url}`, `    certificate-authority-data: ${Buffer.from(this.cert).toString("base64")}`,
      "contexts:", "- name: fake", "  context:", "    cluster: fake", "    user: wasp",
      "users:", "- name: wasp", "  user:", `    token: ${this.token ?? "none"}`, "",
    ].join("\n");
  }

  get resourceVersion(): number {
    return this.rv;
  }

  /** Creates or replaces an object (ADDED or MODIFIED), stamping resourceVersion, uid and kind as the API does. */
  apply(kind: Kind, object: Record<string, unknown>): Obj {
    const o = clone(object) as Obj;
    o["apiVersion"] = API_VERSION[kind];
    o["kind"] = kind;
    const k = keyOf(o), old = this.objects[kind].get(k);
    o.metadata["uid"] = old?.metadata["uid"] ?? randomUUID();
    o.metadata["creationTimestamp"] = old?.metadata["creationTimestamp"] ?? new Date().toISOString().replace(/\.\d+Z$/, "Z");
    o.metadata["resourceVersion"] = String(++this.rv);
    this.objects[kind].set(k, o);
    this.emit({ rv: this.rv, type: old ? "MODIFIED" : "ADDED", kind, object: o });
    return o;
  }

  /** The object as stored now (a copy), or undefined. */
  get(kind: Kind, name: string, namespace?: string): Record<string, unknown> | undefined {
    const o = this.objects[kind].get(`${namespace ?? ""}/${name}`);
    return o && clone(o);
  }

  /** Deletes an object (DELETED with the object's last state and a new resourceVersion). */
  remove(kind: Kind, name: string, namespace?: string): void {
    const k = `${namespace ?? ""}/${name}`, old = this.objects[kind].get(k);
    if (!old) throw new Error(`fake apiserver: no ${kind} ${k} to delete`);
    this.objects[kind].delete(k);
    const o = clone(old);
    o.metadata["resourceVersion"] = String(++this.rv);
    this.emit({ rv: this.rv, type: "DELETED", kind, object: o });
  }

  /** Forgets the event history up to now: watches from an older resourceVersion get 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv;
    this.log = [];
  }

  /** Compacts and tells every open watch its resourceVersion is too old (ERROR 410 Expired), then ends them. */
  expireWatches(): void {
    this.compact();
    for (const w of this.watchers) {
      w.res.end(`${JSON.stringify({ type: "ERROR", object: gone(`too old resource version: ${this.compactedRv - 1} (${this.compactedRv})`) })}\n`);
    }
    this.watchers.clear();
  }

  /** Cuts every open connection without a word, as a crashed apiserver or a broken network does. */
  dropConnections(): void {
    this.watchers.clear();
    for (const s of this.sockets) s.destroy();
  }

  /** Sends a BOOKMARK with the current resourceVersion to the watches that asked for bookmarks. */
  bookmark(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      w.res.write(`${JSON.stringify({ type: "BOOKMARK", object: { kind: w.kind, apiVersion: API_VERSION[w.kind], metadata: { resourceVersion: String(this.rv) } } })}\n`);
    }
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  private emit(ev: Event): void {
    this.log.push(ev);
    const line = `${JSON.stringify({ type: ev.type, object: ev.object })}\n`;
    for (const w of this.watchers) if (w.kind === ev.kind) w.res.write(line);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    const route = ROUTES[url.pathname];
    if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) {
      this.requests.push("401");
      return status(res, 401, "Unauthorized", "Unauthorized");
    }
    const one = /^\/api\/v1\/nodes\/([^/]+)$/.exec(url.pathname);
    if (req.method === "GET" && one) {
      const name = decodeURIComponent(one[1] as string);
      this.requests.push(`get nodes/${name}`);
      const o = this.objects.Node.get(`/${name}`);
      return o ? send(res, 200, o) : status(res, 404, "NotFound", `nodes "${name}" not found`);
    }
    if (req.method === "PATCH" && one) {
      const name = decodeURIComponent(one[1] as string);
      this.requests.push(`patch nodes/${name}`);
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (d: string) => { body += d; });
      req.on("end", () => {
        const o = this.objects.Node.get(`/${name}`);
        if (!o) return status(res, 404, "NotFound", `nodes "${name}" not found`);
        if (req.headers["content-type"] !== "application/merge-patch+json") return status(res, 415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json`);
        let patch: unknown;
        try { patch = JSON.parse(body); } catch { return status(res, 400, "BadRequest", "the patch is not JSON"); }
        send(res, 200, this.apply("Node", mergePatch(o, patch) as Record<string, unknown>));
      });
      return;
    }
    if (req.method !== "GET" || !route) {
      this.requests.push(`404 ${req.method ?? ""} ${url.pathname}`);
      return status(res, 404, "NotFound", `the server could not find the requested resource (${url.pathname})`);
    }
    const plural = url.pathname.slice(url.pathname.lastIndexOf("/") + 1);
    const q = url.searchParams;
    const rvParam = q.get("resourceVersion");
    if (q.get("watch") === "true" || q.get("watch") === "1") {
      this.requests.push(`watch ${plural} rv=${rvParam ?? ""}${q.get("allowWatchBookmarks") === "true" ? " bookmarks" : ""}`);
      return this.watch(route.kind, rvParam, q.get("allowWatchBookmarks") === "true", res);
    }
    this.requests.push(`list ${plural}`);
    if (this.failLists[route.kind] > 0) {
      this.failLists[route.kind]--;
      return status(res, 500, "InternalError", "etcdserver: request timed out");
    }
    const match = q.get("resourceVersionMatch");
    if (rvParam && rvParam !== "0" && match !== null && Number(rvParam) < this.compactedRv) {
      return send(res, 410, gone(`The resourceVersion for the provided list is too old.`));
    }
    const items = [...this.objects[route.kind].values()].map((o) => {
      const { kind: _k, apiVersion: _a, ...rest } = o;
      return rest;
    });
    send(res, 200, { kind: `${route.kind}List`, apiVersion: route.apiVersion, metadata: { resourceVersion: String(this.rv) }, items });
  }

  private watch(kind: Kind, rvParam: string | null, bookmarks: boolean, res: ServerResponse): void {
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    const w: Watcher = { kind, res, bookmarks };
    if (!rvParam || rvParam === "0") {
      // "Any" semantics: the current state as ADDED events, then changes.
      for (const o of this.objects[kind].values()) res.write(`${JSON.stringify({ type: "ADDED", object: o })}\n`);
    } else {
      const from = Number(rvParam);
      if (!Number.isInteger(from) || from < this.compactedRv) {
        res.end(`${JSON.stringify({ type: "ERROR", object: gone(`too old resource version: ${rvParam} (${this.compactedRv})`) })}\n`);
        return;
      }
      for (const ev of this.log) if (ev.kind === kind && ev.rv > from) res.write(`${JSON.stringify({ type: ev.type, object: ev.object })}\n`);
    }
    this.watchers.add(w);
    res.on("close", () => this.watchers.delete(w));
  }
}

/** RFC 7386 JSON merge patch: objects merge key by key, null removes, anything else replaces. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === "object" && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function gone(message: string): Record<string, unknown> {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason: "Expired", code: 410 };
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  send(res, code, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code });
}

function send(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(body));
}

// ─── real-shaped objects ───

export interface ServiceSpec {
  name: string;
  namespace?: string;
  type?: "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName";
  clusterIP?: string;
  clusterIPs?: string[];
  ports?: Array<{ name?: string; port: number; protocol?: string; targetPort?: number | string; nodePort?: number }>;
  externalIPs?: string[];
  loadBalancerIngress?: Array<{ ip?: string; hostname?: string; ipMode?: string }>;
  loadBalancerSourceRanges?: string[];
  sessionAffinity?: "None" | "ClientIP";
  affinityTimeoutSec?: number;
  externalTrafficPolicy?: "Cluster" | "Local";
  internalTrafficPolicy?: "Cluster" | "Local";
  externalName?: string;
}

/** A Service as `kubectl get svc -o json` shows one (defaults filled in as the API server does). */
export function service(s: ServiceSpec): Record<string, unknown> {
  const type = s.type ?? "ClusterIP";
  const clusterIPs = s.clusterIPs ?? (s.clusterIP !== undefined ? [s.clusterIP] : undefined);
  const spec: Record<string, unknown> = { type, sessionAffinity: s.sessionAffinity ?? "None" };
  if (type === "ExternalName") {
    spec["externalName"] = s.externalName ?? "example.com";
  } else {
    spec["clusterIP"] = clusterIPs?.[0];
    spec["clusterIPs"] = clusterIPs;
    spec["ipFamilies"] = clusterIPs?.filter((c) => c !== "None").map((c) => (c.includes(":") ? "IPv6" : "IPv4")) ?? ["IPv4"];
    spec["ipFamilyPolicy"] = "SingleStack";
    spec["internalTrafficPolicy"] = s.internalTrafficPolicy ?? "Cluster";
    spec["ports"] = (s.ports ?? []).map((p) => ({
      ...(p.name !== undefined && { name: p.name }), protocol: p.protocol ?? "TCP", port: p.port, targetPort: p.targetPort ?? p.port,
      ...(p.nodePort !== undefined && { nodePort: p.nodePort }),
    }));
    spec["selector"] = { app: s.name };
  }
  if (type === "NodePort" || type === "LoadBalancer") spec["externalTrafficPolicy"] = s.externalTrafficPolicy ?? "Cluster";
  if (s.externalIPs) spec["externalIPs"] = s.externalIPs;
  if (s.loadBalancerSourceRanges) spec["loadBalancerSourceRanges"] = s.loadBalancerSourceRanges;
  if (s.sessionAffinity === "ClientIP") spec["sessionAffinityConfig"] = { clientIP: { timeoutSeconds: s.affinityTimeoutSec ?? 10800 } };
  return {
    metadata: { name: s.name, namespace: s.namespace ?? "default", labels: { app: s.name } },
    spec,
    status: { loadBalancer: s.loadBalancerIngress ? { ingress: s.loadBalancerIngress } : {} },
  };
}

export interface EndpointSpec {
  ip: string;
  ready?: boolean | null;
  serving?: boolean | null;
  terminating?: boolean | null;
  nodeName?: string;
  /** hints.forZones and hints.forNodes, as the EndpointSlice controller sets them for trafficDistribution. */
  forZones?: string[];
  forNodes?: string[];
}

/** An EndpointSlice as the EndpointSlice controller writes one. */
export function endpointSlice(name: string, serviceName: string, endpoints: EndpointSpec[], ports: Array<{ name?: string; port: number; protocol?: string }>, opts: { namespace?: string; addressType?: string; triggerTime?: string } = {}): Record<string, unknown> {
  return {
    metadata: {
      name, namespace: opts.namespace ?? "default", generateName: `${serviceName}-`,
      labels: { "kubernetes.io/service-name": serviceName, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" },
      ...(opts.triggerTime !== undefined && { annotations: { "endpoints.kubernetes.io/last-change-trigger-time": opts.triggerTime } }),
      ownerReferences: [{ apiVersion: "v1", kind: "Service", name: serviceName, uid: randomUUID(), controller: true, blockOwnerDeletion: true }],
    },
    addressType: opts.addressType ?? "IPv4",
    endpoints: endpoints.map((e) => {
      const conditions: Record<string, boolean> = {};
      if (e.ready !== null) conditions["ready"] = e.ready ?? true;
      if (e.serving !== null) conditions["serving"] = e.serving ?? e.ready ?? true;
      if (e.terminating !== null) conditions["terminating"] = e.terminating ?? false;
      return {
        addresses: [e.ip], conditions,
        ...(e.nodeName !== undefined && { nodeName: e.nodeName }),
        ...((e.forZones !== undefined || e.forNodes !== undefined) && {
          hints: {
            ...(e.forZones !== undefined && { forZones: e.forZones.map((name) => ({ name })) }),
            ...(e.forNodes !== undefined && { forNodes: e.forNodes.map((name) => ({ name })) }),
          },
        }),
        targetRef: { kind: "Pod", namespace: opts.namespace ?? "default", name: `${serviceName}-${e.ip.replace(/[.:]/g, "-")}`, uid: randomUUID() },
      };
    }),
    ports: ports.map((p) => ({ ...(p.name !== undefined && { name: p.name }), protocol: p.protocol ?? "TCP", port: p.port })),
  };
}

/** A Node as the kubelet registers it, with the pod CIDR the controller manager assigned. */
export function node(name: string, internalIP: string, podCIDR: string | undefined, extra: { podCIDRv6?: string; externalIP?: string; taints?: Array<{ key: string; effect: string }>; deleting?: boolean; zone?: string; annotations?: Record<string, string> } = {}): Record<string, unknown> {
  const podCIDRs = [podCIDR, extra.podCIDRv6].filter((c): c is string => c !== undefined);
  return {
    metadata: {
      name, labels: { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", ...(extra.zone !== undefined && { "topology.kubernetes.io/zone": extra.zone }) },
      ...(extra.annotations && { annotations: extra.annotations }),
      ...(extra.deleting && { deletionTimestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z") }),
    },
    spec: { ...(podCIDR !== undefined && { podCIDR }), ...(podCIDRs.length > 0 && { podCIDRs }), ...(extra.taints && { taints: extra.taints }) },
    status: {
      addresses: [
        { type: "InternalIP", address: internalIP },
        ...(extra.externalIP !== undefined ? [{ type: "ExternalIP", address: extra.externalIP }] : []),
        { type: "Hostname", address: name },
      ],
      conditions: [{ type: "Ready", status: "True", reason: "KubeletReady" }],
    },
  };
}

// ─── as a process: `tsx test/helpers/fake-apiserver.ts TOKEN [HOST]` ───
// For a daemon in a network namespace, which cannot reach a server in the test's own: the test starts
// this file inside the namespace. It prints {"url","kubeconfig"} as one line, then takes one JSON
// command a line on stdin ({"op":"apply","kind","object"} | {"op":"remove","kind","name","namespace"} |
// {"op":"get","kind","name","namespace"}) and answers each with {"ok":true,"rv":N,"sentAt":MS[,"object"]} or
// {"ok":false,"error"}; sentAt: when the change went to the watchers (epoch ms, sub-ms: performance.timeOrigin + now()).

/** Starts this file as a process in network namespace `ns` (a daemon there cannot reach a server in
 *  the test's own) and writes its kubeconfig to `kubeconfigPath`. Stop it with stop(api.child). */
export async function startFakeApiProcess(ns: string, token: string, kubeconfigPath: string): Promise<FakeApiServerProcess> {
  const tsx = fileURLToPath(new URL("../../node_modules/tsx/dist/loader.mjs", import.meta.url));
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, "--import", `file://${tsx}`, fileURLToPath(import.meta.url), token], { stdio: ["pipe", "pipe", "inherit"] });
  const api = new FakeApiServerProcess(child);
  const { kubeconfig } = await api.ready();
  writeFileSync(kubeconfigPath, kubeconfig);
  return api;
}

/** Drives a FakeApiServer child process (see above) started with spawnInNs. */
export class FakeApiServerProcess {
  private out = "";
  private waiting: Array<(line: string) => void> = [];
  private lines: string[] = [];

  constructor(readonly child: import("node:child_process").ChildProcess) {
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (d: string) => {
      this.out += d;
      let i;
      while ((i = this.out.indexOf("\n")) >= 0) {
        const line = this.out.slice(0, i);
        this.out = this.out.slice(i + 1);
        const w = this.waiting.shift();
        if (w) w(line); else this.lines.push(line);
      }
    });
  }

  private next(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("fake apiserver process did not answer")), 10_000);
      this.waiting.push((line) => { clearTimeout(t); resolve(line); });
    });
  }

  async ready(): Promise<{ url: string; kubeconfig: string }> {
    return JSON.parse(await this.next()) as { url: string; kubeconfig: string };
  }

  private async call(cmd: unknown): Promise<number> {
    return (await this.ask(cmd)).rv ?? 0;
  }

  private async ask(cmd: unknown): Promise<{ rv?: number; sentAt?: number; object?: Record<string, unknown> }> {
    this.child.stdin?.write(`${JSON.stringify(cmd)}\n`);
    const r = JSON.parse(await this.next()) as { ok: boolean; rv?: number; sentAt?: number; error?: string; object?: Record<string, unknown> };
    if (!r.ok) throw new Error(`fake apiserver: ${r.error ?? "failed"}`);
    return r;
  }

  /** The object as the server holds it now (after the daemon's patches), or undefined. */
  async get(kind: Kind, name: string, namespace?: string): Promise<Record<string, unknown> | undefined> {
    return (await this.ask({ op: "get", kind, name, namespace })).object;
  }

  apply(kind: Kind, object: Record<string, unknown>): Promise<number> {
    return this.call({ op: "apply", kind, object });
  }

  /** apply, answering when the server wrote the change to its watchers (epoch ms, sub-ms precision:
   *  comparable with performance.timeOrigin + performance.now() in another process on this machine). */
  async applyTimed(kind: Kind, object: Record<string, unknown>): Promise<number> {
    return (await this.ask({ op: "apply", kind, object })).sentAt ?? NaN;
  }

  remove(kind: Kind, name: string, namespace?: string): Promise<number> {
    return this.call({ op: "remove", kind, name, namespace });
  }
}

async function serveFromStdin(token: string | undefined, host: string | undefined): Promise<void> {
  const api = new FakeApiServer(token, host);
  await api.start();
  process.stdout.write(`${JSON.stringify({ url: api.url, kubeconfig: api.kubeconfig() })}\n`);
  const { createInterface } = await import("node:readline");
  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    try {
      const c = JSON.parse(line) as { op: string; kind: Kind; object?: Record<string, unknown>; name?: string; namespace?: string };
      let object: Record<string, unknown> | undefined;
      if (c.op === "apply") api.apply(c.kind, c.object ?? {});
      else if (c.op === "remove") api.remove(c.kind, c.name ?? "", c.namespace);
      else if (c.op === "get") object = api.get(c.kind, c.name ?? "", c.namespace);
      else throw new Error(`unknown op ${JSON.stringify(c.op)}`);
      // the watchers were written to synchronously inside apply/remove: now is when the change went out
      const sentAt = performance.timeOrigin + performance.now();
      process.stdout.write(`${JSON.stringify({ ok: true, rv: api.resourceVersion, sentAt, ...(object && { object }) })}\n`);
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ ok: false, error: (e as Error).message })}\n`);
    }
  });
  rl.on("close", () => void api.close().then(() => process.exit(0)));
  process.on("SIGTERM", () => void api.close().then(() => process.exit(0)));
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) void serveFromStdin(process.argv[2], process.argv[3]);
