// Pure validation of a node config: shape (schema.ts) and the rules that relate fields (here). Every
// problem is reported at once: a bad field does not hide the problems of the others.

import type { z } from "zod";
import { drain, drainAsync, every64, type Steps } from "../model/steps.js";
import { fromJsonText, servicesList, type JsonState, type JsonText } from "./json-text.js";
import { describe, PeerNodeSchema, ServiceSchema, TOP_LEVEL, type Config, type ConfigChanges, type NodeConfig, type PeerNodeConfig, type Problem } from "./schema.js";
import { CrossCheck, normalizeService, type Entry, type ServiceItem, type Top } from "./services.js";
import { closest } from "./suggest.js";


/** `services[2].ports[0].port` from ["services", 2, "ports", 0, "port"]. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out === "" ? String(p) : `.${String(p)}`;
  return out;
}

/** The keys the object schema at `path` under `schema` knows (through optional, default, array). */
function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let s: any = schema;
  const unwrap = () => { while (s?._zod?.def?.innerType) s = s._zod.def.innerType; };
  for (const p of path) {
    unwrap();
    if (typeof p === "number") s = s?._zod?.def?.element;
    else s = s?._zod?.def?.shape?.[p];
  }
  unwrap();
  return Object.keys(s?._zod?.def?.shape ?? {});
}

/** "is not a known setting", with the one it likely meant (`node.underlayMtu`: underlayMTU). */
function unknownSetting(key: string, known: readonly string[]): string {
  const guess = closest(key, known);
  return `is not a known setting${guess ? `; did you mean ${guess}?` : " (misspelt?)"}`;
}

function addIssues(problems: Problem[], base: readonly PropertyKey[], issues: readonly z.core.$ZodIssue[], schema?: z.ZodType): void {
  for (const iss of issues) {
    const path = [...base, ...iss.path];
    if (iss.code === "unrecognized_keys") {
      const known = schema ? keysAt(schema, iss.path) : [];
      for (const k of iss.keys) problems.push({ path: formatPath([...path, k]), message: unknownSetting(k, known) });
    } else {
      problems.push({ path: formatPath(path), message: iss.message });
    }
  }
}

/** A valid config (with what changed from the source's last one, when the check knows), or every problem. */
export type Validated = { config: Config; changes?: ConfigChanges } | { problems: Problem[] };

/** Checks a parsed config document. Returns the config with every default filled in, or every problem found. */
export function validateConfig(raw: unknown): Validated {
  return drain(validateSteps(raw));
}

/**
 * What a source remembers of the last config it validated, so that a reload costs what changed:
 * the services by their text (a reload re-checks only the services whose text changed; the rules
 * relating services to each other still see all of them), and, for a JSON text, the text itself and
 * where each service lies in it (json-text.ts). Each run keeps just the services it met, so the
 * cache is the size of one config.
 */
export class ServiceCache {
  private entries = new Map<string, Entry>();
  private next: typeof this.entries | undefined;
  /** @internal The last JSON text accepted. */
  json: JsonState | undefined;

  /** @internal */ begin(): void { this.next = new Map(); }
  /** @internal */ end(ok: boolean): void { if (ok && this.next) this.entries = this.next; this.next = undefined; }
  /** @internal */ get(text: string) {
    const e = this.entries.get(text);
    if (e) this.next?.set(text, e);
    return e;
  }
  /** @internal */ put(text: string, e: Entry): void { this.next?.set(text, e); }
  get size(): number { return this.json ? this.json.items.length : this.entries.size; }
  /** Whether the last JSON text accepted is kept in memory `buf` shares: a reader reusing its
   *  buffers must not read into it. */
  keeps(buf: Buffer): boolean {
    const t = this.json?.text;
    return t !== undefined && typeof t !== "string" && t.buffer === buf.buffer
      && t.byteOffset < buf.byteOffset + buf.length && buf.byteOffset < t.byteOffset + t.length;
  }
}

/** What the service loop asks of a cache: the validated service for raw service i, if known. */
interface Known {
  get(i: number, raw: unknown): Entry | undefined;
  put(i: number, raw: unknown, e: Entry): void;
}

/** A ServiceCache by the services' JSON text. */
function byText(cache: ServiceCache): Known {
  let lastRaw: unknown, lastText = "";
  const textOf = (raw: unknown) => {
    if (raw !== lastRaw || lastText === "") { lastRaw = raw; lastText = JSON.stringify(raw); }
    return lastText;
  };
  return { get: (_i, raw) => cache.get(textOf(raw)), put: (_i, raw, e) => cache.put(textOf(raw), e) };
}

/** validateConfig with breaks for the event loop: what the daemon uses for a reload. With
 *  `jsonText`, the text `raw` was parsed from: the cache keeps where its services lie (json-text.ts),
 *  and keeps `bytes` (that text's, when it is ASCII) in its place, for the next text to be compared as bytes. */
export async function validateConfigAsync(raw: unknown, cache?: ServiceCache, jsonText?: string, bytes?: Buffer): Promise<Validated> {
  const list = cache && jsonText !== undefined ? servicesList(jsonText) : undefined;
  const rawCount = (raw as { services?: unknown } | null)?.services;
  if (cache && list && Array.isArray(rawCount) && rawCount.length * 2 === list.spans.length) {
    // The services of the last accepted text by their text here, for this run only.
    const last = new Map<string, Entry>(), st = cache.json;
    if (st) {
      const old = typeof st.text === "string" ? st.text : st.text.toString("latin1");
      st.items.forEach((e, i) => last.set(old.slice(st.spans[2 * i]!, st.spans[2 * i + 1]!), e));
    }
    const known: Known = { get: (i) => last.get(jsonText!.slice(list.spans[2 * i]!, list.spans[2 * i + 1]!)), put: () => {} };
    const out: Out = {};
    const r = await drainAsync(validateSteps(raw, known, out));
    if ("config" in r && out.check && out.items?.length === rawCount.length) {
      cache.json = {
        text: bytes ?? jsonText!, open: list.open, close: list.close, spans: Int32Array.from(list.spans),
        items: out.items.map(({ s, ipKey }) => ({ s, ipKey })), config: r.config, check: out.check,
      };
    }
    return r;
  }
  cache?.begin();
  let ok = false;
  try {
    const r = await drainAsync(validateSteps(raw, cache && byText(cache)));
    ok = "config" in r;
    return r;
  } finally {
    cache?.end(ok);
  }
}

/**
 * A JSON config text checked against the last one the cache accepted: when they differ only inside
 * the services list, only the services the difference touches are parsed and checked, and the
 * config comes with its change set (undefined: parse and validate the whole text).
 */
export async function validateJsonChangeAsync(text: JsonText, cache: ServiceCache): Promise<Validated | undefined> {
  const st = cache.json;
  if (!st) return undefined;
  const r = await drainAsync(fromJsonText(st, text));
  if (!r) return undefined;
  cache.json = r.state;
  return { config: r.config, changes: r.changes };
}

/** What a run of validateSteps hands back besides its result: the rules among services, with
 *  every service's claims, and the services in order. */
interface Out { check?: CrossCheck; items?: ServiceItem[] }

function* validateSteps(raw: unknown, known?: Known, out?: Out): Steps<Validated> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return { problems: [{ path: "(config)", message: `is ${describe(raw)}; expected a mapping of settings that starts with node:` }] };
  }
  const doc = raw as Record<string, unknown>;
  const problems: Problem[] = [];
  for (const key of Object.keys(doc)) {
    if (!(key in TOP_LEVEL)) problems.push({ path: key, message: unknownSetting(key, Object.keys(TOP_LEVEL)) });
  }
  const top: Top = {};
  const failed = new Set<string>(); // top-level settings with problems: rules that need them are skipped, not guessed
  for (const [key, schema] of Object.entries(TOP_LEVEL)) {
    const r = schema.safeParse(doc[key]);
    if (r.success) (top as Record<string, unknown>)[key] = r.data;
    else { addIssues(problems, [key], r.error.issues, schema); failed.add(key); }
  }

  const services: ServiceItem[] = [];
  const rawServices = top.services ?? [];
  for (let i = 0; i < rawServices.length; i++) {
    if (every64(i)) yield;
    const hit = known?.get(i, rawServices[i]);
    if (hit) { services.push({ i, ...hit }); continue; }
    const r = ServiceSchema.safeParse(rawServices[i]);
    if (!r.success) { addIssues(problems, ["services", i], r.error.issues, ServiceSchema); continue; }
    const before = problems.length;
    const s = normalizeService(r.data, `services[${i}]`, problems);
    if (!s) continue;
    const ipKey = r.data.clusterIPs !== undefined ? "clusterIPs" : "clusterIP";
    services.push({ i, s, ipKey });
    // Only a service that is fine on its own is remembered (its problems name its index).
    if (problems.length === before) known?.put(i, rawServices[i], { s, ipKey });
  }
  const nodes: Array<{ i: number; n: PeerNodeConfig }> = [];
  (top.nodes ?? []).forEach((rawNode, i) => {
    const r = PeerNodeSchema.safeParse(rawNode);
    if (r.success) nodes.push({ i, n: r.data });
    else addIssues(problems, ["nodes", i], r.error.issues, PeerNodeSchema);
  });

  // Rules that relate a list item to others see every item that parsed: a broken item has its own
  // problems reported and is left out, so it cannot cause a second, misleading one.
  const check = new CrossCheck(top, failed, services, nodes, problems);
  yield* check.run();
  if (out) { out.check = check; out.items = services; }
  if (problems.length > 0 || !top.node || top.services === undefined || top.nodes === undefined) {
    return { problems };
  }
  const node: NodeConfig = { ...top.node, nodeAddresses: top.node.nodeAddresses ?? [top.node.underlayIP] };
  return {
    config: {
      mode: top.mode ?? "tun",
      node,
      serviceCIDR: top.serviceCIDR ?? "10.96.0.0/16",
      ...(top.serviceCIDRv6 !== undefined && { serviceCIDRv6: top.serviceCIDRv6 }),
      clusterCIDR: top.clusterCIDR ?? "10.244.0.0/16",
      ...(top.clusterCIDRv6 !== undefined && { clusterCIDRv6: top.clusterCIDRv6 }),
      vxlan: top.vxlan ?? { vni: 1, port: 8472 },
      conntrack: top.conntrack ?? { capacity: 262144 },
      ...(top.tables !== undefined && { tables: top.tables }),
      loadBalancing: top.loadBalancing ?? { mode: "random" },
      services: services.map((x) => x.s),
      nodes: nodes.map((x) => x.n),
    },
  };
}
