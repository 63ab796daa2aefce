// "Did you mean": the known name closest to a misspelt one, for the node config's and the CNI
// network config's unknown fields (`mut` → `mtu`). No imports: the CNI plugin loads it on every call.

/** Optimal string alignment distance (Levenshtein with adjacent swaps), case-insensitive. */
function distance(a: string, b: string): number {
  a = a.toLowerCase(); b = b.toLowerCase();
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known name a misspelling most likely meant: within 2 edits (1 for names of up to 4
 *  letters), or the same name in another case; undefined when none is that close. */
export function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined, bestD = Infinity;
  for (const k of known) {
    const dist = distance(name, k);
    if (dist < bestD) { best = k; bestD = dist; }
  }
  const limit = name.length <= 4 ? 1 : 2;
  return best !== undefined && bestD <= limit ? best : undefined;
}
