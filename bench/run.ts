// npm run bench [-- NAME ...] [--quick]: runs the named benchmarks (all when none is named), each
// writing bench/results/<name>.json.
import { machine } from "./lib/results.js";

const BENCHES: Record<string, () => Promise<{ run(quick: boolean): Promise<Record<string, number>> }>> = {
  core: () => import("./core/core.js"),
  fuzz: () => import("./core/fuzz.js"),
  cni: () => import("./cni/cni.js"),
  datapath: () => import("./datapath/datapath.js"),
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes("--quick");
  const names = args.filter((a) => !a.startsWith("--"));
  const unknown = names.filter((n) => !(n in BENCHES));
  if (unknown.length) {
    console.error(`unknown benchmark ${unknown.join(", ")}; there are: ${Object.keys(BENCHES).join(", ")}`);
    process.exitCode = 2;
    return;
  }
  console.log(`machine: ${machine()}${quick ? " (quick)" : ""}`);
  for (const name of names.length ? names : Object.keys(BENCHES)) {
    const mod = await BENCHES[name]!();
    console.log(`\n== ${name}`);
    const t0 = Date.now();
    const r = await mod.run(quick);
    console.log(JSON.stringify(r, null, 2));
    console.log(`${name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s, bench/results/${name}.json written`);
  }
}

await main();
