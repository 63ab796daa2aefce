// Runs the wasp CLI as a separate process, as an operator does. The sources are bundled once per
// test file with esbuild, as scripts/build-sea.mjs bundles them for dist/wasp: a bundled start costs
// a third of a tsx start, and the CLI tests start it dozens of times on a shared machine.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";

const ROOT = new URL("../..", import.meta.url).pathname;

export interface Run { status: number | null; stdout: string; stderr: string }

export class Cli {
  private constructor(readonly dir: string, readonly script: string) {}

  static async build(): Promise<Cli> {
    const dir = mkdtempSync(join(tmpdir(), "wasp-cli-"));
    const script = join(dir, "wasp.cjs");
    await build({
      entryPoints: [join(ROOT, "src/main.ts")], outfile: script, bundle: true, platform: "node", format: "cjs", target: "node20",
      logLevel: "warning", define: { "import.meta.url": "__waspMetaUrl" },
      banner: { js: 'var __waspMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
    });
    return new Cli(dir, script);
  }

  /** The command line that runs `wasp ARGS` (for tmux, ip netns exec). */
  argv(args: readonly string[]): string[] {
    return [process.execPath, this.script, ...args];
  }

  env(): NodeJS.ProcessEnv {
    return { ...process.env, WASP_WASM: join(ROOT, "build/wasp.wasm"), WASP_NATIVE: join(ROOT, "native/build/Release/wasp_native.node") };
  }

  /** Runs `wasp ARGS` (optionally inside namespace ns) and collects its output. */
  run(args: readonly string[], opts: { ns?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
    const argv = opts.ns ? ["ip", "netns", "exec", opts.ns, ...this.argv(args)] : this.argv(args);
    return new Promise((resolve) => {
      const c = spawn(argv[0]!, argv.slice(1), { env: { ...this.env(), ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "", stderr = "";
      c.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
      c.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
      c.on("close", (status) => resolve({ status, stdout, stderr }));
    });
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
