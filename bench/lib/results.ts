// Every benchmark writes bench/results/<name>.json: one flat object, metric name (unit in the name)
// to a number. The README's table is made from these files.
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { cpus, release } from "node:os";

export const RESULTS_DIR = fileURLToPath(new URL("../results/", import.meta.url));

export function writeResults(name: string, metrics: Record<string, number>): string {
  for (const [k, v] of Object.entries(metrics)) {
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`metric ${k} of ${name} is not a finite number: ${v}`);
  }
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = `${RESULTS_DIR}${name}.json`;
  writeFileSync(file, JSON.stringify(metrics, null, 2) + "\n");
  return file;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length === 0 ? NaN : s.length & 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function machine(): string {
  const c = cpus();
  return `${c.length} x ${c[0]?.model ?? "cpu"}, Linux ${release()}, Node ${process.version}`;
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
