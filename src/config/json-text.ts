// A JSON config's text: a change inside the services list costs what changed.
//
// After a JSON text is accepted its cache keeps the text, where each service lies in it, the
// validated services and their claims (JsonState). A new text is compared with it from both ends;
// when what differs lies inside the services list, only the services it touches are parsed and
// checked (against the claims of all the others), and the rest keep their objects. Anything else
// (a setting changed, the list not found, a problem) takes the full path (validate.ts), whose
// problems are the ones reported.
//
// The file source hands over an ASCII text as its bytes (a byte's offset is its character's): the
// ends are then compared natively and only the middle that changed is decoded. A fresh 7 MB string
// costs tens of ms to make and again to walk the first time; a compare of two Buffers is memcmp.

import { every64, type Steps } from "../model/steps.js";
import { ServiceSchema, type Config, type ConfigChanges, type Problem } from "./schema.js";
import { normalizeService, type CrossCheck, type Entry } from "./services.js";

/** A JSON text: a string, or the bytes of an ASCII one (offsets are the same in both). */
export type JsonText = string | Buffer;

export interface JsonState {
  text: JsonText;
  /** Offsets of the services list's "[" and "]". */
  open: number;
  close: number;
  /** Service i lies at [spans[2i], spans[2i + 1]). */
  spans: Int32Array;
  items: Entry[];
  config: Config;
  check: CrossCheck;
}

const COMMA = 44, QUOTE = 34, BACKSLASH = 92, COLON = 58;
const STRUCTURE = /["{}[\],:]/g;
const isWs = (c: number) => c === 32 || c === 10 || c === 13 || c === 9;

/** The offset just past the string that opens at `at` (a quote). */
function stringEnd(text: string, at: number): number {
  let j = at;
  for (;;) {
    j = text.indexOf('"', j + 1);
    if (j < 0) return -1;
    let k = j - 1, slashes = 0;
    while (text.charCodeAt(k) === BACKSLASH) { slashes++; k--; }
    if (slashes % 2 === 0) return j + 1;
  }
}

/** The [start, end) of each value of the comma-separated list in text[from, to) (whitespace around
 *  them left out), or undefined when the list is not one (an empty value, unbalanced brackets). */
function listSpans(text: string, from: number, to: number): number[] | undefined {
  const spans: number[] = [];
  let depth = 0, start = -1, last = -1;   // the current value's start, and the end of its last token
  const close = () => {
    if (start < 0) return false;
    spans.push(start, last);
    start = -1;
    return true;
  };
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (isWs(c)) continue;
    if (depth === 0 && c === COMMA) { if (!close()) return undefined; continue; }
    if (start < 0) start = i;
    if (c === QUOTE) { i = stringEnd(text, i) - 1; if (i < 0 || i >= to) return undefined; }
    else if (c === 123 || c === 91) depth++;
    else if (c === 125 || c === 93) { if (--depth < 0) return undefined; }
    last = i + 1;
  }
  if (depth !== 0 || (spans.length > 0 && start < 0)) return undefined;   // unbalanced, or a trailing comma
  if (start >= 0) close();
  return spans;
}

/** Where the top-level "services" list lies in a JSON text, and each of its values; undefined when
 *  the text is not an object with one such list. */
export function servicesList(text: string): { open: number; close: number; spans: number[] } | undefined {
  let depth = 0, key = "", expectKey = false, found: { open: number; close: number; spans: number[] } | undefined;
  STRUCTURE.lastIndex = 0;
  for (let m = STRUCTURE.exec(text); m; m = STRUCTURE.exec(text)) {
    const i = m.index, c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (end < 0) return undefined;
      if (depth === 1 && expectKey) { key = text.slice(i + 1, end - 1); expectKey = false; }
      STRUCTURE.lastIndex = end;
    } else if (c === 123 || c === 91) {
      if (depth === 1 && c === 91 && key === "services") {
        let d = 1, j = i + 1;   // the list's end: its own brackets, strings skipped
        STRUCTURE.lastIndex = j;
        for (let n = STRUCTURE.exec(text); n && d > 0; n = d > 0 ? STRUCTURE.exec(text) : null) {
          const cc = text.charCodeAt(n.index);
          if (cc === QUOTE) { const e = stringEnd(text, n.index); if (e < 0) return undefined; STRUCTURE.lastIndex = e; }
          else if (cc === 123 || cc === 91) d++;
          else if (cc === 125 || cc === 93) d--;
          j = n.index;
        }
        if (d !== 0 || found) return undefined;   // unclosed, or a second "services"
        const spans = listSpans(text, i + 1, j);
        if (!spans) return undefined;
        found = { open: i, close: j, spans };
        STRUCTURE.lastIndex = j + 1;
        key = "";
        continue;
      }
      depth++;
      if (depth === 1) expectKey = c === 123;
    } else if (c === 125 || c === 93) {
      depth--;
    } else if (c === COMMA) {
      if (depth === 1) expectKey = true;
    } else if (c === COLON && depth === 1) {
      expectKey = false;
    }
  }
  return found;
}

/** Characters a and b share at their start. */
function commonPrefix(a: string, b: string): number {
  const n = Math.min(a.length, b.length), CHUNK = 4096;
  let i = 0;
  while (i + CHUNK <= n && a.slice(i, i + CHUNK) === b.slice(i, i + CHUNK)) i += CHUNK;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/** Characters a and b share at their end, at most `max`. */
function commonSuffix(a: string, b: string, max: number): number {
  const CHUNK = 4096;
  let i = 0;
  while (i + CHUNK <= max && a.slice(a.length - i - CHUNK, a.length - i) === b.slice(b.length - i - CHUNK, b.length - i)) i += CHUNK;
  while (i < max && a.charCodeAt(a.length - 1 - i) === b.charCodeAt(b.length - 1 - i)) i++;
  return i;
}

/** The length of the longest run of `same(k)` from 0 up to n (same holds for all k below some point):
 *  doubling chunks, then halving, so a 7 MB Buffer compare costs a few dozen memcmp calls. */
function sameRun(n: number, same: (from: number, to: number) => boolean): number {
  let i = 0, step = 4096;
  while (i < n) {
    const to = Math.min(n, i + step);
    if (same(i, to)) { i = to; step *= 2; } else if (to - i === 1) break; else step = (to - i) >> 1 || 1;
  }
  return i;
}

function bytesPrefix(a: Buffer, b: Buffer): number {
  return sameRun(Math.min(a.length, b.length), (from, to) => a.compare(b, from, to, from, to) === 0);
}

function bytesSuffix(a: Buffer, b: Buffer, max: number): number {
  return sameRun(max, (from, to) => a.compare(b, b.length - to, b.length - from, a.length - to, a.length - from) === 0);
}

/** text[from, to) as a string. */
function sliceOf(text: JsonText, from: number, to: number): string {
  return typeof text === "string" ? text.slice(from, to) : text.toString("latin1", from, to);
}

/** Where a and b first differ, and where (in a) their common end starts; undefined when they are
 *  the same text, or one is a string and the other bytes. */
function differing(a: JsonText, b: JsonText): { p: number; q: number } | undefined {
  const min = Math.min(a.length, b.length);
  if (typeof a === "string" && typeof b === "string") {
    const p = commonPrefix(a, b);
    return p === a.length && p === b.length ? undefined : { p, q: a.length - commonSuffix(a, b, min - p) };
  }
  if (typeof a === "string" || typeof b === "string") return undefined;
  const p = bytesPrefix(a, b);
  return p === a.length && p === b.length ? undefined : { p, q: a.length - bytesSuffix(a, b, min - p) };
}

/** The last index whose value in sorted `at(i)` is <= v (-1 when none). */
function lastAtMost(n: number, at: (i: number) => number, v: number): number {
  let lo = -1, hi = n - 1;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (at(mid) <= v) lo = mid; else hi = mid - 1; }
  return lo;
}

function skipWs(text: string, i: number, to: number): number { while (i < to && isWs(text.charCodeAt(i))) i++; return i; }
function backWs(text: string, from: number, i: number): number { while (i > from && isWs(text.charCodeAt(i - 1))) i--; return i; }

/** A new text against the last accepted one: the services it changed, re-read and checked, or
 *  undefined when the full path must run. */
export function* fromJsonText(st: JsonState, text: JsonText): Steps<{ config: Config; changes: ConfigChanges; state: JsonState } | undefined> {
  const old = st.text, n = st.items.length, sp = st.spans;
  const diff = differing(old, text);
  if (!diff) return undefined;
  const { p, q } = diff;
  // What differs must lie inside the list, its brackets unchanged.
  if (p <= st.open || q > st.close) return undefined;
  const delta = text.length - old.length;
  // The services it touches (the last to start at or before it, through the first to end at or
  // after it), and the text from the end of the value before them to the start of the one after:
  // the only part of the new text read (offsets below are in it, `at` its start in the text).
  const a = lastAtMost(n, (i) => sp[2 * i]!, p), b = lastAtMost(n, (i) => sp[2 * i + 1]!, q - 1) + 1;
  const lo = Math.max(a, 0), hi = Math.min(b, n - 1);
  const before = lo > 0, after = hi < n - 1;
  const at = before ? sp[2 * lo - 1]! : st.open + 1;
  const seg = sliceOf(text, at, (after ? sp[2 * hi + 2]! : st.close) + delta);
  // Separators: a comma after the value before, one before the value after, none twice.
  let f = skipWs(seg, 0, seg.length), t = backWs(seg, f, seg.length);
  let fresh: number[] = [];
  if (!(before && after && t - f === 1 && seg.charCodeAt(f) === COMMA)) {
    if (before) { if (seg.charCodeAt(f) !== COMMA) return undefined; f = skipWs(seg, f + 1, t); }
    if (after) { if (t <= f || seg.charCodeAt(t - 1) !== COMMA) return undefined; t = backWs(seg, f, t - 1); }
    if (t > f) {
      const spans = listSpans(seg, f, t);
      if (!spans || spans.length === 0) return undefined;
      fresh = spans;
    } else if (before || after) return undefined;
  }
  let values: unknown[] = [];
  if (fresh.length) {
    try { values = JSON.parse(`[${seg.slice(f, t)}]`) as unknown[]; } catch { return undefined; }
    if (values.length * 2 !== fresh.length) return undefined;
  }
  // A value whose text was one of the replaced services' is that service (a move keeps its object).
  const replaced = new Map<string, Entry>();
  for (let i = lo; i <= hi; i++) replaced.set(sliceOf(old, sp[2 * i]!, sp[2 * i + 1]!), st.items[i]!);
  const problems: Problem[] = [];
  const incoming: Entry[] = [];
  for (let k = 0; k < values.length; k++) {
    if (every64(k)) yield;
    const same = replaced.get(seg.slice(fresh[2 * k]!, fresh[2 * k + 1]!));
    if (same) { incoming.push(same); continue; }
    const r = ServiceSchema.safeParse(values[k]);
    if (!r.success) return undefined;
    const s = normalizeService(r.data, `services[${lo + k}]`, problems);
    if (!s || problems.length) return undefined;
    incoming.push({ s, ipKey: r.data.clusterIPs !== undefined ? "clusterIPs" : "clusterIP" });
  }
  // The rules among services: the replaced ones' claims freed, the incoming ones checked against
  // everything else; a problem undoes it all and leaves the words to the full path.
  const { check } = st, claims = check.claims;
  check.problems = problems;
  claims.begin();
  for (let i = lo; i <= hi; i++) claims.release(st.items[i]!.s);
  incoming.forEach((e, k) => { check.checkService({ i: lo + k, ...e }); check.checkMaglevOf({ i: lo + k, ...e }); });
  if (problems.length) { claims.rollback(); return undefined; }
  claims.commit();
  const count = n - (hi - lo + 1) + incoming.length;
  const spans = new Int32Array(2 * count);
  spans.set(sp.subarray(0, 2 * lo));
  spans.set(fresh.map((x) => x + at), 2 * lo);
  for (let i = hi + 1, j = 2 * (lo + incoming.length); i < n; i++, j += 2) { spans[j] = sp[2 * i]! + delta; spans[j + 1] = sp[2 * i + 1]! + delta; }
  // concat, not spread: at 30,000 services a spread costs ms, concat copies the unchanged runs
  const items = st.items.slice(0, lo).concat(incoming, st.items.slice(hi + 1)), was = st.config.services;
  const config: Config = { ...st.config, services: was.slice(0, lo).concat(incoming.map((e) => e.s), was.slice(hi + 1)) };
  const kept = new Set(incoming.map((e) => e.s)), left = new Set(was.slice(lo, hi + 1));
  const changes: ConfigChanges = {
    since: st.config, settingsChanged: false,
    came: incoming.filter((e) => !left.has(e.s)).map((e) => e.s),
    gone: [...left].filter((x) => !kept.has(x)),
  };
  return { config, changes, state: { ...st, text, close: st.close + delta, spans, items, config } };
}
