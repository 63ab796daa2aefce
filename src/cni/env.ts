// CNI spec 1.1, "Parameters": which CNI_* variables each command needs.
import { Code, CniError } from "./errors.js";

export type Command = "ADD" | "DEL" | "CHECK" | "VERSION" | "GC" | "STATUS";
const COMMANDS: readonly Command[] = ["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"];

export interface CniEnv {
  command: Command;
  containerId: string;
  /** "" when not given (DEL may come without it: containerd sends an empty CNI_NETNS). */
  netns: string;
  ifname: string;
  args: string;
  path: string;
}

const NEEDS: Record<Command, Array<"CNI_CONTAINERID" | "CNI_NETNS" | "CNI_IFNAME">> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME"],
  VERSION: [],
  GC: [],
  STATUS: [],
};

/** Reads and checks the CNI_* variables; every problem is named at once (code 4). */
export function readEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND ?? "";
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw new CniError(Code.InvalidEnv, `unknown CNI_COMMAND ${JSON.stringify(command)}`, `CNI_COMMAND is one of ${COMMANDS.join(", ")}`);
  }
  const cmd = command as Command;
  // VERSION, GC and STATUS use none of the per-container variables; runtimes send placeholders
  // (podman probes VERSION with CNI_NETNS=dummy), so only the commands that use them check them.
  if (NEEDS[cmd].length === 0) {
    return { command: cmd, containerId: "", netns: "", ifname: "", args: env.CNI_ARGS ?? "", path: env.CNI_PATH ?? "" };
  }
  const problems: string[] = [];
  const missing = NEEDS[cmd].filter((k) => !env[k]);
  if (missing.length) problems.push(`${cmd} needs ${missing.join(", ")} (missing or empty)`);
  const containerId = env.CNI_CONTAINERID ?? "";
  // CNI spec: a container ID starts with an alphanumeric, then alphanumerics, '_', '.', '-'.
  if (containerId && !/^[A-Za-z0-9][A-Za-z0-9_.\-]*$/.test(containerId)) {
    problems.push(`CNI_CONTAINERID ${JSON.stringify(containerId)} has characters other than letters, digits, '_', '.', '-'`);
  }
  const ifname = env.CNI_IFNAME ?? "";
  // Linux: at most 15 bytes, not "." or "..", no '/', ':' or white space.
  if (ifname && (ifname.length > 15 || ifname === "." || ifname === ".." || /[/:\s]/.test(ifname))) {
    problems.push(`CNI_IFNAME ${JSON.stringify(ifname)} is not a valid Linux interface name (1-15 characters, no '/', ':' or spaces)`);
  }
  const netns = env.CNI_NETNS ?? "";
  if (netns && !netns.startsWith("/")) problems.push(`CNI_NETNS ${JSON.stringify(netns)} is not an absolute path`);
  if (problems.length) throw new CniError(Code.InvalidEnv, problems.join("; "));
  return { command: cmd, containerId, netns, ifname, args: env.CNI_ARGS ?? "", path: env.CNI_PATH ?? "" };
}
