// Kernel settings under /proc/sys, named as sysctl(8) names them: "net.ipv4.ip_forward", or with
// slashes where a part holds a dot ("net/ipv4/conf/flannel.1/rp_filter"): the one reader and writer.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { errnoWords } from "./errno.js";

/** The file of a setting below root (default /proc/sys). */
export function sysctlPath(key: string, root = "/proc/sys"): string {
  return join(root, ...(key.includes("/") ? key.split("/") : key.split(".")));
}

/** A setting that could not be written: `what` names it, `why` is the errno in words. */
export class SysctlError extends Error {
  constructor(readonly what: string, readonly why: string) {
    super(`${what}: ${why}`);
  }
}

/** Sets a kernel setting; throws a SysctlError `cannot set KEY=VALUE: <why> (<code>)`. */
export function writeSysctl(key: string, value: string): void {
  try {
    writeFileSync(sysctlPath(key), value);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "EIO";
    throw new SysctlError(`cannot set ${key.replace(/\//g, ".")}=${value}`, `${errnoWords(code)} (${code})`);
  }
}

/** A kernel setting's value (trimmed), or undefined where it does not exist or cannot be read. */
export function readSysctl(key: string, root = "/proc/sys"): string | undefined {
  try { return readFileSync(sysctlPath(key, root), "utf8").trim(); } catch { return undefined; }
}
