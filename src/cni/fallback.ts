// The CNI calls that missed the daemon: dist/wasp (native/front/wasp-front.c) asked the daemon's CNI
// socket, found none there or was declined, and ran the plugin in wasp-node instead, which costs the
// runtime a Node start-up (~150 ms) per call. The front door says why in WASP_FRONT_FALLBACK and which
// socket it asked in WASP_FRONT_SOCKET; wasp-node appends a line here, beside that socket, so that
// `wasp doctor` can show a node whose runtime misses its daemon (podman's cleanup DEL without
// WASP_CNI_SOCKET, a conflist without "cniSocket").
import { appendFileSync, mkdirSync, readFileSync, renameSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

export const FALLBACK_LOG = "cni-fallback.log";
/** Past this size the log becomes cni-fallback.log.old (one generation kept). */
const MAX_BYTES = 256 << 10;

export interface Fallback { at: string; command: string; containerId: string; socket: string; why: string }

/** Records this call when the front door fell back to wasp-node; never fails the call. VERSION is
 *  left out: libcni probes it with a bare {"cniVersion"}, which names no cniSocket (podman validates
 *  every conflist so), and its answer needs no daemon. */
export function recordFallback(env: NodeJS.ProcessEnv): void {
  const why = env.WASP_FRONT_FALLBACK, socket = env.WASP_FRONT_SOCKET;
  if (!why || !socket || env.CNI_COMMAND === "VERSION") return;
  try {
    const file = join(dirname(socket), FALLBACK_LOG);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    try { if (statSync(file).size > MAX_BYTES) renameSync(file, `${file}.old`); } catch { /* not there yet */ }
    const line: Fallback = { at: new Date().toISOString(), command: env.CNI_COMMAND ?? "", containerId: env.CNI_CONTAINERID ?? "", socket, why };
    // one short line with O_APPEND: concurrent plugins do not interleave it
    appendFileSync(file, `${JSON.stringify(line)}\n`, { mode: 0o600 });
  } catch { /* a read-only /run: the call matters more than its record */ }
}

/** The calls recorded beside `socket` (oldest first), the .old generation included. */
export function readFallbacks(socket: string): Fallback[] {
  const file = join(dirname(socket), FALLBACK_LOG);
  const out: Fallback[] = [];
  for (const f of [`${file}.old`, file]) {
    let text = "";
    try { text = readFileSync(f, "utf8"); } catch { continue; }
    for (const l of text.split("\n")) {
      try { if (l) out.push(JSON.parse(l) as Fallback); } catch { /* a line cut by a crash */ }
    }
  }
  return out;
}
