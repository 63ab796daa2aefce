// From one model to the next: the delta a reload sends the engine (diffModel, or updateModel when
// only some services changed, at the cost of those), a full load's delta, and what a delta leaves.

import { ServiceFlag } from "../engine/abi.js";
import type { Config, ConfigChanges, Protocol, ServiceConfig } from "../config/schema.js";
import { drain, drainAsync, type Steps } from "./steps.js";
import { LayeredMap } from "./layered-map.js";
import { draftContext, serviceDrafts, type Draft } from "./service-drafts.js";
import { answersPing, buildModelSteps, entryOf, vipsOf, type Model, type ModelDelta, type Route, type ServiceEntry, type ServiceKey } from "./model.js";

/**
 * The model of `config` and its delta from `prev` (the model of `prevConfig`). When only services
 * changed, only the entries of the services that came or went are built: the cost follows the
 * change, not the number of services. Which services changed comes from the source's change set
 * when it has one relative to `prevConfig` (the Kubernetes source), else by object identity (the
 * config sources hand over unchanged services as the same objects). Otherwise: a full build and diff.
 */
export function updateModel(prevConfig: Config | undefined, config: Config, prev: Model, changes?: ConfigChanges): { model: Model; delta: ModelDelta } {
  return drain(updateModelSteps(prevConfig, config, prev, changes));
}

export function updateModelAsync(prevConfig: Config | undefined, config: Config, prev: Model, changes?: ConfigChanges): Promise<{ model: Model; delta: ModelDelta }> {
  return drainAsync(updateModelSteps(prevConfig, config, prev, changes));
}

/** The services of `a` not in `b` and those of `b` not in `a`, by identity (ignored ones left out).
 *  Sources keep the order of unchanged services, so a position-by-position pass finds most of it. */
function changedServices(a: readonly ServiceConfig[], b: readonly ServiceConfig[]): { gone: ServiceConfig[]; came: ServiceConfig[] } {
  let gone: ServiceConfig[] = [], came: ServiceConfig[] = [];
  if (a.length === b.length) {
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) { gone.push(a[i]!); came.push(b[i]!); }
    // A service that moved is in both lists: it neither came nor went.
    const g = new Set(gone), c = new Set(came);
    gone = gone.filter((s) => !c.has(s));
    came = came.filter((s) => !g.has(s));
  } else {
    const before = new Set(a), after = new Set(b);
    gone = a.filter((s) => !after.has(s));
    came = b.filter((s) => !before.has(s));
  }
  return { gone: gone.filter((s) => !s.ignored), came: came.filter((s) => !s.ignored) };
}

/** Everything but the services: what the routes, local addresses and drafting context come from. */
function settingsOf(c: Config): string {
  return JSON.stringify({ ...c, services: undefined });
}

/** The services that went and came from `prevConfig` to `config` (ignored ones left out), from the
 *  source's change set when it is relative to `prevConfig`, else by identity; undefined when more
 *  than the services changed (what derives from the whole config is then made again). */
export function serviceChanges(prevConfig: Config, config: Config, changes?: ConfigChanges): { gone: ServiceConfig[]; came: ServiceConfig[] } | undefined {
  // a change set counts only when it is relative to the config the caller has
  const known = changes !== undefined && changes.since === prevConfig ? changes : undefined;
  if (known ? known.settingsChanged : settingsOf(prevConfig) !== settingsOf(config)) return undefined;
  return known
    ? { gone: known.gone.filter((s) => !s.ignored), came: known.came.filter((s) => !s.ignored) }
    : changedServices(prevConfig.services, config.services);
}

function* updateModelSteps(prevConfig: Config | undefined, config: Config, prev: Model, changes?: ConfigChanges): Steps<{ model: Model; delta: ModelDelta }> {
  const cache = prev.drafts;
  const moved = prevConfig === undefined || cache === undefined ? undefined : serviceChanges(prevConfig, config, changes);
  if (moved === undefined || cache === undefined) {
    const model = yield* buildModelSteps(config, prev);
    return { model, delta: diffModel(prev, model) };
  }
  const { gone, came } = moved;
  if (gone.length + came.length > Math.max(16, config.services.length / 8)) {
    const model = yield* buildModelSteps(config, prev);
    return { model, delta: diffModel(prev, model) };
  }
  const ctx = draftContext(config);
  const draftsOf = (s: ServiceConfig): readonly Draft[] => {
    let mine = cache.byService.get(s);
    if (!mine) { mine = serviceDrafts(s, ctx); cache.byService.set(s, mine); }
    return mine;
  };

  // The entries' changes are collected apart and laid over prev's map at the end (LayeredMap): the
  // cost follows the services that changed, not the number of entries.
  const changed = new Map<string, ServiceEntry | undefined>();
  const now = (key: string): ServiceEntry | undefined => (changed.has(key) ? changed.get(key) : prev.services.get(key));
  const removed = new Map<string, ServiceEntry>();
  for (const s of gone) {
    for (const d of draftsOf(s)) {
      const e = now(d.key);
      if (e && e.service === d.service && e.portName === d.portName) { changed.set(d.key, undefined); removed.set(d.key, e); }
    }
  }
  const incoming = came.flatMap((s) => draftsOf(s));
  // A key that comes back keeps its id, so no new key may take it meanwhile.
  const kept = incoming.flatMap((d) => { const old = prev.services.get(d.key); return old ? [old.id] : []; });
  let used: Set<number> | undefined;
  let nextId = 0;
  const allocate = (): number => {
    // Ids in use are collected once, and only when a key new to the engine needs one.
    used ??= new Set([...[...prev.services.values()].flatMap((e) => (now(e.key) ? [e.id] : [])), ...kept]);
    while (used.has(nextId)) nextId++;
    used.add(nextId);
    return nextId++;
  };
  const upserts: ServiceEntry[] = [];
  for (const d of incoming) {
    if (now(d.key)) continue; // another service has the key (validation rejects this)
    const old = prev.services.get(d.key);
    removed.delete(d.key);
    if (old && old.sig === d.sig) { changed.set(d.key, old); continue; }
    const e = entryOf(d, old ? old.id : allocate());
    changed.set(d.key, e);
    upserts.push(e);
  }
  const setEntries: Array<[string, ServiceEntry]> = [], deleted: string[] = [];
  for (const [key, e] of changed) if (e) setEntries.push([key, e]); else deleted.push(key);
  const services = LayeredMap.of(prev.services).with(setEntries, deleted);
  yield;
  // Echo markers follow the addresses that gained their first entry or lost their last one.
  const before = prev.vips ?? vipsOf(prev.services.values());
  const counts = new Map<string, number>();
  const count = (e: ServiceEntry, by: number) => {
    if (answersPing(e)) counts.set(e.addr, (counts.get(e.addr) ?? before.get(e.addr) ?? 0) + by);
  };
  for (const e of removed.values()) count(e, -1);
  for (const e of upserts) if (!prev.services.has(e.key)) count(e, +1);
  const addVips: string[] = [], deleteVips: string[] = [], vipCounts: Array<[string, number]> = [], vipsGone: string[] = [];
  for (const [addr, n] of counts) {
    const was = before.get(addr) ?? 0;
    if (n > 0) vipCounts.push([addr, n]); else vipsGone.push(addr);
    if (was === 0 && n > 0) addVips.push(addr);
    else if (was > 0 && n <= 0) deleteVips.push(addr);
  }
  const vips = LayeredMap.of(before).with(vipCounts, vipsGone);
  const model: Model = { services, routes: prev.routes, localAddrs: prev.localAddrs, nodeIds: prev.nodeIds, vips, drafts: cache };
  return {
    model,
    delta: {
      clear: false, deleteServices: [...removed.values()], upsertServices: upserts, deleteRoutes: [], upsertRoutes: [],
      deleteLocalAddrs: [], addLocalAddrs: [], deleteVips, addVips,
    },
  };
}

function sameService(a: ServiceEntry, b: ServiceEntry): boolean {
  return a === b || (a.id === b.id && a.sig === b.sig && a.addr === b.addr);
}

function sameRoute(a: Route, b: Route): boolean {
  return a === b || a.sig === b.sig;
}

/**
 * What changed from prev to next: upserts for new or changed entries, deletes for vanished ones.
 * Unchanged entries cost one map lookup and an identity compare (buildModel reuses prev's objects).
 */
export function diffModel(prev: Model, next: Model): ModelDelta {
  const deleteServices: ServiceKey[] = [], upsertServices: ServiceEntry[] = [];
  for (const [key, e] of next.services) {
    const old = prev.services.get(key);
    if (!old || !sameService(old, e)) upsertServices.push(e);
  }
  for (const [key, e] of prev.services) if (!next.services.has(key)) deleteServices.push(e);

  const deleteRoutes: Route[] = [], upsertRoutes: Route[] = [];
  for (const [key, r] of next.routes) {
    const old = prev.routes.get(key);
    if (!old || !sameRoute(old, r)) upsertRoutes.push(r);
  }
  for (const [key, r] of prev.routes) if (!next.routes.has(key)) deleteRoutes.push(r);

  const addLocalAddrs = [...next.localAddrs].filter((a) => !prev.localAddrs.has(a));
  const deleteLocalAddrs = [...prev.localAddrs].filter((a) => !next.localAddrs.has(a));
  const prevVips = prev.vips ?? vipsOf(prev.services.values()), nextVips = next.vips ?? vipsOf(next.services.values());
  const addVips = [...nextVips.keys()].filter((a) => !prevVips.has(a));
  const deleteVips = [...prevVips.keys()].filter((a) => !nextVips.has(a));
  return { clear: false, deleteServices, upsertServices, deleteRoutes, upsertRoutes, deleteLocalAddrs, addLocalAddrs, deleteVips, addVips };
}

/** A full load: Clear, then every entry of the model. */
export function fullDelta(model: Model): ModelDelta {
  return {
    clear: true,
    deleteServices: [], upsertServices: [...model.services.values()],
    deleteRoutes: [], upsertRoutes: [...model.routes.values()],
    deleteLocalAddrs: [], addLocalAddrs: [...model.localAddrs],
    deleteVips: [], addVips: [...(model.vips ?? vipsOf(model.services.values())).keys()],
  };
}

/** True when a delta changes nothing. */
export function isEmptyDelta(d: ModelDelta): boolean {
  return !d.clear && d.deleteServices.length === 0 && d.upsertServices.length === 0 && d.deleteRoutes.length === 0 &&
    d.upsertRoutes.length === 0 && d.deleteLocalAddrs.length === 0 && d.addLocalAddrs.length === 0 &&
    d.deleteVips.length === 0 && d.addVips.length === 0;
}

/**
 * What the engine holds after applying `delta` to `model` (node ids as its routes say): the
 * host's record of the engine's tables, and the check that diff(a, b) applied to a gives b.
 */
export function applyDelta(model: Model, delta: ModelDelta): Model {
  const services = new Map(delta.clear ? [] : model.services);
  const routes = new Map(delta.clear ? [] : model.routes);
  const localAddrs = new Set(delta.clear ? [] : model.localAddrs);
  for (const k of delta.deleteServices) services.delete(k.key);
  for (const e of delta.upsertServices) services.set(e.key, e);
  for (const r of delta.deleteRoutes) routes.delete(r.key);
  for (const r of delta.upsertRoutes) routes.set(r.key, r);
  for (const a of delta.deleteLocalAddrs) localAddrs.delete(a);
  for (const a of delta.addLocalAddrs) localAddrs.add(a);
  const nodeIds = new Map<string, number>();
  for (const r of routes.values()) nodeIds.set(r.nodeName, r.nodeId);
  // The markers the ops leave, each with the entries on its address (0 for a marker left without one).
  const markers = new Set(delta.clear ? [] : (model.vips ?? vipsOf(model.services.values())).keys());
  for (const a of delta.deleteVips) markers.delete(a);
  for (const a of delta.addVips) markers.add(a);
  const counts = vipsOf(services.values());
  const vips = new Map([...markers].map((a) => [a, counts.get(a) ?? 0]));
  return { services, routes, localAddrs, nodeIds, vips };
}

/** A backend a reload took from an entry of `protocol`: the entry's address (undefined for a
 *  NodePort's "any address" entry) and port, and the backend. */
export interface GoneBackend { vip: string | undefined; port: number; backend: string; backendPort: number }

/**
 * The backends of `protocol` entries that `delta` takes away from `prev` (an entry deleted, or
 * upserted without one it had, ready or terminating): what kube-proxy clears from conntrack for UDP.
 */
export function goneBackends(prev: Model, delta: ModelDelta, protocol: Protocol): GoneBackend[] {
  const out: GoneBackend[] = [];
  const upserted = new Map(delta.upsertServices.map((e) => [e.key, e]));
  const gone = (old: ServiceEntry, now: ServiceEntry | undefined) => {
    if (old.protocol !== protocol) return;
    const keep = new Set((now?.backends ?? []).map((b) => `${b.addr}|${b.port}`));
    const any = (old.flags & ServiceFlag.ANY_LOCAL_ADDR) !== 0;
    for (const b of old.backends) {
      if (!keep.has(`${b.addr}|${b.port}`)) out.push({ vip: any ? undefined : old.addr, port: old.port, backend: b.addr, backendPort: b.port });
    }
  };
  for (const e of delta.deleteServices) { const old = prev.services.get(e.key); if (old) gone(old, undefined); }
  for (const [key, e] of upserted) { const old = prev.services.get(key); if (old) gone(old, e); }
  return out;
}
