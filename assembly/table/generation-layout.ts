// Where things lie inside the two copies of the tables (table/generation.ts): the header, the entry
// layouts, the copies' region and their current sizes, the ceilings they may grow to, and the arenas
// that hold backend lists and Maglev tables. Every pointer stored inside a copy is an offset from that
// copy's base. The sizes change only in table/generation-resize.ts, between batches.
import { pow2AtLeast } from "./hash";
import { regionAlloc } from "./region";

// ╒═══ generation header ═══╕  H_SVC_COUNT counts port entries, H_MARKER_COUNT the echo markers (an
// entry with port 0 and protocol 0: a VIP that answers ping, one per address, never more than the
// port entries that use it); the table grows for both, the ceiling (svcMax) counts port entries
export const H_SVC_COUNT = 0, H_ROUTE_COUNT = 4, H_LOCAL_COUNT = 8, H_PEER_COUNT = 12, H_BE_BUMP = 16, H_MG_BUMP = 20,
  H_MARKER_COUNT = 24, H_BE_FREE = 32 /* 24 u32 */, H_MG_FREE = 128 /* 24 u32 */, H_LEN_COUNT = 256 /* 129 u32 */,
  H_LENS = 784 /* up to 129 u8, longest first */, H_NLENS = 916, HDR = 1024;

// ╒═══ service entry, 64 bytes ═══╕  S_BACKENDS names the entry's block of BE slots: S_COUNT backends,
// then its source ranges (S_BE_BYTES / BE - S_COUNT of them; svcRangeCount)
export const S_ADDR = 0, S_PORT = 16, S_PROTO = 18, S_USED = 19, S_KIND = 20, S_SELECT = 21, S_FLAGS = 22,
  S_ID = 24, S_AFFINITY = 28, S_BACKENDS = 32, S_COUNT = 36, S_ELIGIBLE = 40, S_MAGLEV = 44, S_MAGLEV_SIZE = 48,
  S_HASH = 52, S_BE_BYTES = 56, S_MG_BYTES = 60, SVC = 64;
// ╒═══ backend, 32 bytes ═══╕  addr16 | port u16 | weight u16; a source range in the same slot: addr16 | len u8 (of 128)
export const B_ADDR = 0, B_PORT = 16, B_RANGE_LEN = 16, BE = 32;
// ╒═══ route entry, 48 bytes ═══╕
export const R_PREFIX = 0, R_LEN = 16, R_KIND = 17, R_NODE = 18, R_UNDERLAY = 20, R_MAC = 24, R_USED = 30,
  R_HASH = 32, ROUTE = 48;
// ╒═══ local address (32 bytes: addr16 | used u8) and peer (16 bytes: underlay u32 | refs u32 | used u8 | hash u32 at 12) ═══╕
export const L_USED = 16, LOCAL = 32, LOCAL_CAP: u32 = 256;
export const P_IP = 0, P_REFS = 4, P_USED = 8, P_HASH = 12, PEER = 16;

export let gens: usize = 0;            // base of copy 0; copy 1 follows at gens + genSize
export let genSize: usize = 0;
let active: u32 = 0;
export let svcCap: u32 = 0, routeCap: u32 = 0, peerCap: u32 = 0;
export let offSvc: usize = 0, offRoute: usize = 0, offLocal: usize = 0, offPeer: usize = 0, offBe: usize = 0, offMg: usize = 0;
export let beArena: u32 = 0, mgArena: u32 = 0;
let generation: u32 = 0;
// Ceilings (init's config; 0 there means none): the most each table may grow to.
export let svcMax: u32 = 0, routeMax: u32 = 0, maxBackendsPerService: u32 = 0;
export let svcCapMax: u32 = 0, routeCapMax: u32 = 0, beArenaMax: u32 = 0, mgArenaMax: u32 = 0;

const MIN_SVC_CAP: u32 = 64, MIN_ROUTE_CAP: u32 = 64, MIN_ARENA: u32 = 4096;
const ARENA_MAX: u32 = 1 << 30;

@inline export function svcCapFor(n: u32): u32 { return pow2AtLeast(n * 2 + 1); }
@inline export function routeCapFor(n: u32): u32 { return pow2AtLeast(n * 2 + 3); }
@inline export function atMost(v: u32, max: u32): u32 { return v < max ? v : max; }

export function setLayout(sc: u32, rc: u32, be: u32, mg: u32): void {
  svcCap = sc; routeCap = rc; peerCap = rc; beArena = be; mgArena = mg;
  offSvc = HDR;
  offRoute = offSvc + <usize>svcCap * SVC;
  offLocal = offRoute + <usize>routeCap * ROUTE;
  offPeer = offLocal + <usize>LOCAL_CAP * LOCAL;
  offBe = (offPeer + <usize>peerCap * PEER + 63) & ~63;
  offMg = (offBe + beArena + 63) & ~63;
  genSize = (offMg + mgArena + 63) & ~63;
}

/** Ceilings from init's config (0: none): service entries, backends over all services, routes,
 *  Maglev cells over all services. Lays out small empty copies; false when memory is out. */
export function layoutInit(maxServices: u32, maxBackends: u32, maxRoutes: u32, maglevCells: u32): bool {
  svcMax = maxServices == 0 ? 1 << 20 : maxServices;
  routeMax = maxRoutes == 0 ? 1 << 16 : maxRoutes;
  svcCapMax = svcCapFor(svcMax);
  routeCapMax = routeCapFor(routeMax);
  beArenaMax = maxBackends == 0 ? ARENA_MAX : atMost(maxBackends * BE * 2, ARENA_MAX);
  mgArenaMax = maglevCells == 0 ? ARENA_MAX : atMost(maglevCells * 2 * 2, ARENA_MAX);
  maxBackendsPerService = maxBackends == 0 ? 1 << 22 : maxBackends;
  setLayout(atMost(MIN_SVC_CAP, svcCapMax), atMost(MIN_ROUTE_CAP, routeCapMax), atMost(MIN_ARENA, beArenaMax), atMost(MIN_ARENA, mgArenaMax));
  gens = regionAlloc(genSize * 2, true);
  active = 0;
  generation = 0;
  return gens != 0;
}

@inline export function activeGen(): usize { return gens + <usize>active * genSize; }
export function generationNumber(): u32 { return generation; }

/** The copy a commit fills while packets read the other. */
@inline export function idleGen(): usize { return gens + <usize>(active ^ 1) * genSize; }
/** Packets see the idle copy from now on. */
export function flipCopies(): void { active ^= 1; generation++; }
/** Both copies now live at `at` (copy 0 active), laid out by the last setLayout. */
export function adoptCopies(at: usize): void { gens = at; active = 0; }

// ── arena: segregated free lists of power-of-two blocks, offsets relative to the generation ──

export function arenaAlloc(g: usize, bytes: u32, bumpAt: usize, freeAt: usize, base: usize, size: u32): u32 {
  if (bytes == 0) return 0;
  const cls = bytes <= 16 ? 4 : 32 - clz<u32>(bytes - 1);
  if (cls >= 24) return 0;
  const blk: u32 = 1 << cls;
  const headAt = g + freeAt + (<usize>cls << 2);
  // blocks are named by offset + 1 (0 means "none"); a free block holds the next one's name
  const head = load<u32>(headAt);
  if (head != 0) {
    store<u32>(headAt, load<u32>(g + <usize>head - 1));
    return head;
  }
  const bump = load<u32>(g + bumpAt);
  if (<u64>bump + blk > <u64>size) return 0;
  store<u32>(g + bumpAt, bump + blk);
  return <u32>base + bump + 1;
}

export function arenaFree(g: usize, off1: u32, bytes: u32, freeAt: usize): void {
  if (off1 == 0 || bytes == 0) return;
  const cls = bytes <= 16 ? 4 : 32 - clz<u32>(bytes - 1);
  const headAt = g + freeAt + (<usize>cls << 2);
  store<u32>(g + <usize>off1 - 1, load<u32>(headAt));
  store<u32>(headAt, off1);
}
