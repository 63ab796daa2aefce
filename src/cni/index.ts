// The CNI plugin: CNI_* variables and the network config on stdin in, a result or an error out
// (CNI spec 1.1). Errors go to stdout as {cniVersion, code, msg, details} with exit status 1.
import { existsSync } from "node:fs";
import { cmdAdd } from "./add.js";
import { cmdCheck } from "./check.js";
import { describeProblems, validateNetConf } from "./config.js";
import { cmdDel } from "./del.js";
import { readEnv } from "./env.js";
import { Code, CniError, errorJson } from "./errors.js";
import { recordFallback } from "./fallback.js";
import { cmdGc } from "./gc.js";
import { formatResult } from "./result.js";
import { cmdStatus } from "./status.js";
import { isSupported, LATEST, requireVersionFor, SUPPORTED_VERSIONS, versionResult, type CniVersion } from "./version.js";

export { validateNetConf, type NetConf, type Problem } from "./config.js";
export { CniError, Code } from "./errors.js";
export { hostVethName } from "./names.js";
export { SUPPORTED_VERSIONS } from "./version.js";

export interface CniIo {
  env: NodeJS.ProcessEnv;
  stdin: string;
}

/** One CNI invocation: returns what goes to stdout ("" for none), the exit status, and warnings
 *  for stderr (the runtime logs a plugin's stderr). */
export async function handle(io: CniIo): Promise<{ stdout: string; exitCode: number; stderr?: string }> {
  let replyVersion: string = LATEST;
  try {
    const env = readEnv(io.env);
    let raw: unknown;
    try {
      raw = io.stdin.trim() === "" && env.command === "VERSION" ? {} : JSON.parse(io.stdin);
    } catch (e) {
      throw new CniError(Code.Decoding, `the network config on stdin is not JSON: ${(e as Error).message}`);
    }
    const requested = (raw as { cniVersion?: unknown } | null)?.cniVersion;
    if (isSupported(requested)) replyVersion = requested;
    if (env.command === "VERSION") return { stdout: JSON.stringify(versionResult(requested)), exitCode: 0 };

    if (typeof requested === "string" && !isSupported(requested)) {
      throw new CniError(Code.IncompatibleVersion, `incompatible CNI version ${requested}; wasp supports ${SUPPORTED_VERSIONS.join(", ")}`,
        `the config says cniVersion ${JSON.stringify(requested)}; set it to one of ${SUPPORTED_VERSIONS.join(", ")}`);
    }
    // DEL and GC clean up whatever the config says; the rest refuse a field wasp does not read
    const v = validateNetConf(raw, env.command !== "DEL" && env.command !== "GC");
    if ("problems" in v) throw new CniError(Code.InvalidConfig, describeProblems(v.problems));
    const ctx = { env, conf: v.config, version: v.config.cniVersion as CniVersion };
    const stderr = v.warnings.length ? `wasp: the network config: ${describeProblems(v.warnings)}\n` : undefined;
    const ok = (stdout: string) => ({ stdout, exitCode: 0, ...(stderr ? { stderr } : {}) });

    switch (env.command) {
      case "ADD": {
        if (!existsSync(env.netns)) throw new CniError(Code.UnknownContainer, `CNI_NETNS ${env.netns} does not exist`, "the sandbox's network namespace is gone");
        const r = await cmdAdd(ctx);
        return { stdout: JSON.stringify(formatResult(r, ctx.version)), exitCode: 0 };
      }
      case "DEL":
        await cmdDel(ctx);
        return ok("");
      case "CHECK":
        await cmdCheck(ctx);
        return { stdout: "", exitCode: 0 };
      case "GC":
        requireVersionFor("GC", ctx.version, "1.1.0");
        await cmdGc(ctx);
        return ok("");
      case "STATUS":
        requireVersionFor("STATUS", ctx.version, "1.1.0");
        await cmdStatus(ctx);
        return { stdout: "", exitCode: 0 };
    }
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(Code.Internal, (e as Error)?.message ?? String(e));
    return { stdout: JSON.stringify(errorJson(err, replyVersion)), exitCode: 1 };
  }
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return "";
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** The plugin's entry point (src/main.ts calls it when CNI_COMMAND is set). */
export async function runCni(): Promise<void> {
  recordFallback(process.env);
  const { stdout, exitCode, stderr } = await handle({ env: process.env, stdin: await readStdin() });
  if (stderr) process.stderr.write(stderr);
  if (stdout) process.stdout.write(stdout + "\n");
  process.exitCode = exitCode;
}
