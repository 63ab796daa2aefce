// npm run bench [-- NAME ...] [--quick]: runs the named benchmarks (all when none is named), each
// writing bench/results/<name>.json.
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { machine } from "./lib/results.js";

type Bench = { run(quick: boolean): Promise<Record<string, number>> };

// A benchmark NAME is the module bench/<group>/NAME.ts exporting run(quick); the README's table
// and `npm run bench` (all of them) follow this order.
const ORDER = ["core", "fuzz", "cni", "datapath", "overlay", "scale"];
const BENCH_DIR = fileURLToPath(new URL(".", import.meta.url));

function discover(): Map<string, string> {
  const found = new Map<string, string>();
  for (const group of readdirSync(BENCH_DIR, { withFileTypes: true })) {
    if (!group.isDirectory() || group.name === "lib" || group.name === "results") continue;
    for (const f of readdirSync(`${BENCH_DIR}${group.name}`)) {
      const name = f.replace(/\.ts$/, "");
      if (f.endsWith(".ts") && ORDER.includes(name)) found.set(name, `./${group.name}/${name}.js`);
    }
  }
  return new Map(ORDER.filter((n) => found.has(n)).map((n) => [n, found.get(n)!]));
}

const BENCHES = discover();

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes("--quick");
  const names = args.filter((a) => !a.startsWith("--"));
  const unknown = names.filter((n) => !BENCHES.has(n));
  if (unknown.length) {
    console.error(`unknown benchmark ${unknown.join(", ")}; there are: ${[...BENCHES.keys()].join(", ")}`);
    process.exitCode = 2;
    return;
  }
  console.log(`machine: ${machine()}${quick ? " (quick)" : ""}`);
  for (const name of names.length ? names : [...BENCHES.keys()]) {
    const mod = (await import(BENCHES.get(name)!)) as Bench;
    console.log(`\n== ${name}`);
    const t0 = Date.now();
    const r = await mod.run(quick);
    console.log(JSON.stringify(r, null, 2));
    console.log(`${name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s, bench/results/${name}.json written`);
  }
}

await main();
