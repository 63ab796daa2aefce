// `ip` as the node picture runs it: one command, its output, or an error with ip's own message.
import { execFileSync } from "node:child_process";

export type Runner = (args: string[]) => string;

/** `ip ARGS` in this process's namespace; throws with ip's message. */
export const runIp: Runner = (args) => {
  try {
    return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")} failed: ${err.stderr?.trim() || err.message}`);
  }
};

/** Removes a device's global addresses other than `keep` (a pod CIDR that changed since an earlier
 *  daemon gave the device its address). */
export function keepOnlyAddresses(dev: string, keep: string[], ip: Runner): void {
  const rows = JSON.parse(ip(["-j", "addr", "show", "dev", dev]) || "[]") as Array<{ addr_info?: Array<{ family: string; local: string; prefixlen: number; scope: string }> }>;
  for (const a of rows[0]?.addr_info ?? []) {
    const text = `${a.local}/${a.prefixlen}`;
    if (a.scope === "global" && !keep.includes(text)) { try { ip(["addr", "del", text, "dev", dev]); } catch { /* gone */ } }
  }
}
