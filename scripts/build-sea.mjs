// npm run build:sea: makes dist/wasp, the executable that is at once the CNI plugin, the daemon and
// the CLI. It is two files and the addon:
//   dist/wasp         the front door, native/front/wasp-front.c (~0.7 MB, static): a CNI call goes to
//                     the running daemon's CNI socket (no Node start-up per pod); anything else, or
//                     no daemon, execs wasp-node beside it with the same argv, environment and stdin;
//   dist/wasp-node    Node's single-executable application (Node 20) made as follows:
//   1. esbuild bundles src/main.ts and the CNI plugin into one CommonJS script, dist/wasp.cjs (SEA
//      runs exactly one CommonJS script), and the daemon apart into dist/wasp-daemon.cjs;
//   2. node --experimental-sea-config sea-config.json makes the blob: the script, its V8 code cache,
//      the daemon bundle and the wasm core build/wasp.wasm as assets;
//   3. a copy of this node binary, stripped, gets the blob injected with postject;
//   4. the native addon goes beside it as dist/wasp_native.node (src/io/native.ts looks there);
//   5. the front door is compiled as dist/wasp.
// Install: copy dist/wasp, dist/wasp-node and dist/wasp_native.node into a CNI bin dir (/opt/cni/bin).
// WASP_SEA_CONFIG=other.json, WASP_SEA_OUT=path/wasp, WASP_SEA_MAIN=a.cjs, WASP_SEA_DAEMON=b.cjs: another config,
// executable, main script and daemon script
// (the cni benchmark builds variants this way).
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
process.chdir(root);
const config = process.env.WASP_SEA_CONFIG ?? "sea-config.json";
const out = process.env.WASP_SEA_OUT ?? "dist/wasp";
const nodeOut = join(dirname(out), "wasp-node");
const FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
const ADDON = "native/build/Release/wasp_native.node";

const need = (path, how) => { if (!existsSync(path)) throw new Error(`build-sea: ${path} is missing; ${how}`); };
need("build/wasp.wasm", "npm run build:wasm first");
need(ADDON, "npm run build:native first");
mkdirSync("dist", { recursive: true });
mkdirSync(dirname(out), { recursive: true });

// 1. One CommonJS script. import.meta.url has no CommonJS meaning: it becomes the script's own URL
// (in the executable __filename is the executable's path). The daemon and everything only it uses
// (engine, config, pino, zod, yaml, prom-client: ~1 MB) is bundled apart, dist/wasp-daemon.cjs, and
// carried as the asset "wasp-daemon.cjs", compiled only when `wasp daemon` runs: a CNI call, which
// pays Node's start-up on every pod, then parses ~30 kB instead of ~1 MB (measured: ~20 ms less
// per exec, bench/cni's wasp_one_bundle_version_ms_p50). With the small script the V8 code cache
// ("useCodeCache") measured no gain (bench/cni's wasp_code_cache_version_ms_p50), so it is off; a
// startup snapshot ("useSnapshot") of the CNI modules measured within noise of that too, and Node 20
// warns that node:child_process is not verified in snapshots: not used.
const common = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: "none",
  logLevel: "warning",
  define: { "import.meta.url": "__waspMetaUrl" },
  banner: { js: 'var __waspMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
};
await build({ ...common, entryPoints: ["src/daemon/index.ts"], outfile: process.env.WASP_SEA_DAEMON ?? "dist/wasp-daemon.cjs" });
const daemonFromAsset = {
  name: "daemon-from-sea-asset",
  setup(b) {
    b.onResolve({ filter: /^\.\/daemon\/index\.js$/ }, (args) =>
      args.importer.endsWith(join("src", "main.ts")) ? { path: "daemon", namespace: "sea-asset" } : undefined);
    b.onLoad({ filter: /.*/, namespace: "sea-asset" }, () => ({
      loader: "js",
      contents: `
        const { getAsset } = require("node:sea");
        const { compileFunction } = require("node:vm");
        const { createRequire } = require("node:module");
        const { dirname } = require("node:path");
        const m = { exports: {} };
        compileFunction(getAsset("wasp-daemon.cjs", "utf8"), ["exports", "require", "module", "__filename", "__dirname"],
          { filename: "wasp-daemon.cjs" })(m.exports, createRequire(process.execPath), m, process.execPath, dirname(process.execPath));
        module.exports = m.exports;`,
    }));
  },
};
// WASP_SEA_ONE_BUNDLE=1 keeps the daemon inside the main script (only for the cni benchmark's comparison).
await build({ ...common, entryPoints: ["src/main.ts"], outfile: process.env.WASP_SEA_MAIN ?? "dist/wasp.cjs",
  plugins: process.env.WASP_SEA_ONE_BUNDLE ? [] : [daemonFromAsset] });

// 2. The blob (script, code cache, assets).
execFileSync(process.execPath, ["--experimental-sea-config", config], { stdio: ["ignore", "ignore", "pipe"] });
const blob = JSON.parse(readFileSync(config, "utf8")).output;

// 3. The Node executable: a stripped copy of node with the blob injected, built under a temporary
// name and renamed into place, so whoever runs it meanwhile gets the old or the new one, whole.
const tmp = `${nodeOut}.tmp-${process.pid}`;
copyFileSync(process.execPath, tmp);
chmodSync(tmp, 0o755);
try {
  try {
    execFileSync("strip", [tmp], { stdio: "ignore" }); // it warns about node's many notes; harmless
  } catch {
    console.warn("build-sea: strip failed or is missing; the executable keeps node's debug info");
  }
  // postject repeats the ELF notes warnings of a stripped node; show its output only when it fails.
  try {
    execFileSync(process.execPath, [join("node_modules", "postject", "dist", "cli.js"), tmp, "NODE_SEA_BLOB", blob,
      "--sentinel-fuse", FUSE], { stdio: "pipe", encoding: "utf8" });
  } catch (e) {
    process.stderr.write(`${e.stdout ?? ""}${e.stderr ?? ""}`);
    throw new Error(`build-sea: postject failed on ${nodeOut}`);
  }
  renameSync(tmp, nodeOut);
} finally {
  rmSync(tmp, { force: true });
}

// 4. The native addon beside it (also renamed into place).
const addon = join(dirname(out), "wasp_native.node");
copyFileSync(ADDON, `${addon}.tmp-${process.pid}`);
renameSync(`${addon}.tmp-${process.pid}`, addon);
// 5. The front door. Static, so it runs on any host it is copied to; dynamic where the C library
// has no static archive.
const cc = ["-O2", "-Wall", "-Wextra", "-std=gnu11", "-s", "-o", `${out}.tmp-${process.pid}`, "native/front/wasp-front.c"];
try {
  try {
    execFileSync("cc", ["-static", ...cc], { stdio: "pipe" });
  } catch {
    execFileSync("cc", cc, { stdio: "inherit" });
  }
  renameSync(`${out}.tmp-${process.pid}`, out);
} finally {
  rmSync(`${out}.tmp-${process.pid}`, { force: true });
}
const mb = (p) => (statSync(p).size / 2 ** 20).toFixed(1);
console.log(`build-sea: ${out} (front door, ${mb(out)} MiB), ${nodeOut} (${mb(nodeOut)} MiB) and ${addon}`);
