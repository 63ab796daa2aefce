// Output for people (aligned tables, cli-table3) and for scripts (--json: one JSON document).
import Table from "cli-table3";

/** A borderless table with aligned columns; numbers right-aligned. */
export function table(head: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const t = new Table({
    head: [...head],
    chars: {
      top: "", "top-mid": "", "top-left": "", "top-right": "", bottom: "", "bottom-mid": "", "bottom-left": "",
      "bottom-right": "", left: "", "left-mid": "", mid: "", "mid-mid": "", right: "", "right-mid": "", middle: "  ",
    },
    style: { head: [], border: [], "padding-left": 0, "padding-right": 0 },
  });
  for (const r of rows) {
    t.push(r.map((c) => (typeof c === "number" ? { content: fmtInt(c), hAlign: "right" as const } : c)));
  }
  return `${t.toString().split("\n").map((l) => l.trimEnd()).join("\n")}\n`;
}

/** Key/value lines, keys padded to one width. */
export function pairs(rows: ReadonlyArray<readonly [string, string | number]>): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${typeof v === "number" ? fmtInt(v) : v}\n`).join("");
}

/** The places with a count above 0, "tun_queue_full 10, write_refused 2" ('' when none). */
export function fmtCounts(counts: Readonly<Record<string, number>>): string {
  return Object.entries(counts).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${fmtInt(n)}`).join(", ");
}

export function fmtInt(n: number): string {
  return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toFixed(1);
}

/** "1 route", "2 routes", "1 service entry", "3 service entries": a count with its noun. */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${fmtInt(n)} ${n === 1 ? one : many}`;
}

export function fmtBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

export function fmtDuration(sec: number): string {
  const d = Math.floor(sec / 86400), h = Math.floor((sec % 86400) / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
  if (d) return `${d}d${h}h${m}m`;
  if (h) return `${h}h${m}m${s}s`;
  if (m) return `${m}m${s}s`;
  return `${s}s`;
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}
