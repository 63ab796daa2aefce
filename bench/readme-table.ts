// Regenerates the README's benchmark table from bench/results/*.json (between the markers
// <!-- bench:begin --> and <!-- bench:end -->). Run: npx tsx bench/readme-table.ts
import { readFileSync, readdirSync, writeFileSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { RESULTS_DIR } from "./lib/results.js";

const README = fileURLToPath(new URL("../README.md", import.meta.url));
const BEGIN = "<!-- bench:begin -->", END = "<!-- bench:end -->";

const rows: string[] = ["| benchmark | metric | value |", "|---|---|---|"];
// scale has ~200 keys and a table of its own (bench/results/scale.md, in the README's scale section).
for (const f of readdirSync(RESULTS_DIR).filter((n) => n.endsWith(".json") && n !== "scale.json").sort()) {
  const name = f.replace(/\.json$/, "");
  const data = JSON.parse(readFileSync(RESULTS_DIR + f, "utf8")) as Record<string, number>;
  const when = statSync(RESULTS_DIR + f).mtime.toISOString().slice(0, 10);
  for (const [k, v] of Object.entries(data)) rows.push(`| ${name} (${when}) | \`${k}\` | ${v.toLocaleString("en-US")} |`);
}
const text = readFileSync(README, "utf8");
const a = text.indexOf(BEGIN), b = text.indexOf(END);
if (a < 0 || b < a) throw new Error(`README.md has no ${BEGIN} … ${END} section`);
writeFileSync(README, text.slice(0, a + BEGIN.length) + "\n" + rows.join("\n") + "\n" + text.slice(b));
console.log(`README.md: ${rows.length - 2} benchmark rows from ${RESULTS_DIR}`);
