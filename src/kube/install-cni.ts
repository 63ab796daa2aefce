// The DaemonSet's init step (`wasp daemon --install-cni`): put this executable (and its N-API addon)
// into the host's CNI bin dir and a conflist with this node's pod CIDR into the CNI config dir. The pod
// CIDR comes from this node's Node object (spec.podCIDRs), so one manifest serves every node. Files
// are written under a temporary name and renamed into place: a runtime that runs the plugin or reads
// the config dir at that moment sees the old file or the new one, never half of one.
import { chmodSync, copyFileSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { convertNode } from "./convert.js";

export interface InstallCniOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  /** The plugin executable to install (dist/wasp; default: this process's executable). */
  binary: string;
  binDir: string;
  confDir: string;
  /** Default 10-wasp.conflist: sorts before other networks, which runtimes take the first of. */
  confName?: string;
  /** Pod MTU; the plugin's default (underlay MTU - 50) when absent. */
  mtu?: number;
  /** The daemon's control socket, for the plugin's STATUS. */
  daemonSocket?: string;
  /** The daemon's CNI socket: named in the conflist, every call of every runtime reaches it. */
  cniSocket?: string;
  /** How long to wait for the controller manager to give the Node a pod CIDR. */
  waitMs?: number;
}

/** The addon the executable loads from beside itself (scripts/build-sea.mjs). */
export const NATIVE_ADDON = "wasp_native.node";
/** The Node executable the front door (dist/wasp) runs when the daemon does not take a call. */
export const NODE_EXECUTABLE = "wasp-node";

function installFile(from: string, to: string, mode: number): void {
  const tmp = join(dirname(to), `.${basename(to)}.tmp-${process.pid}`);
  try {
    copyFileSync(from, tmp);
    chmodSync(tmp, mode);
    renameSync(tmp, to);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`cannot install ${from} as ${to}: ${(e as Error).message}`);
  }
}

export function conflistFor(podCIDR: string, podCIDRv6: string | undefined, o: Pick<InstallCniOptions, "mtu" | "daemonSocket" | "cniSocket">): string {
  return `${JSON.stringify({
    // 1.0.0: the version the reference plugins chained here (portmap) understand.
    cniVersion: "1.0.0",
    name: "wasp",
    plugins: [
      {
        type: "wasp", podCIDR, ...(podCIDRv6 !== undefined && { podCIDRv6 }), ...(o.mtu !== undefined && { mtu: o.mtu }),
        ...(o.daemonSocket !== undefined && { daemonSocket: o.daemonSocket }), ...(o.cniSocket && { cniSocket: o.cniSocket }),
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  }, null, 2)}\n`;
}

/** Installs the plugin and its conflist; resolves with what was written. */
export async function installCni(o: InstallCniOptions): Promise<{ binary: string; conflist: string; podCIDR: string; podCIDRv6?: string }> {
  if (!existsSync(o.binary)) throw new Error(`cannot install the CNI plugin: ${o.binary} does not exist; run the single executable (dist/wasp)`);
  const core = o.kubeConfig.makeApiClient(CoreV1Api);
  const end = Date.now() + (o.waitMs ?? 120_000);
  let cidrs: { podCIDR: string; podCIDRv6?: string } | undefined;
  for (let attempt = 0; !cidrs; attempt++) {
    let why: string;
    try {
      const r = convertNode(await core.readNode({ name: o.nodeName }));
      if ("problems" in r) why = r.problems.map((p) => `${p.path} ${p.message}`).join("; ");
      else if (r.ok.podCIDR === undefined) why = `Node ${o.nodeName} has no IPv4 pod CIDR yet (spec.podCIDR); the controller manager assigns it with --allocate-node-cidrs`;
      else { cidrs = { podCIDR: r.ok.podCIDR, ...(r.ok.podCIDRv6 !== undefined && { podCIDRv6: r.ok.podCIDRv6 }) }; break; }
    } catch (e) {
      const err = e as { code?: number; message?: string };
      why = `cannot read Node ${o.nodeName}: ${err.code === 404 ? "not found (check --hostname-override)" : err.message ?? String(e)}`;
    }
    if (Date.now() > end) throw new Error(`${why}; gave up after ${Math.round((o.waitMs ?? 120_000) / 1000)} s`);
    await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** Math.min(attempt, 5))));
  }

  mkdirSync(o.binDir, { recursive: true });
  mkdirSync(o.confDir, { recursive: true });
  const binTarget = join(o.binDir, "wasp");
  // The files of one build sit together (wasp, wasp-node, wasp_native.node): the entry point `wasp`
  // goes in last, so a runtime never runs a new front door beside an old wasp-node.
  const dir = dirname(o.binary);
  const entry = basename(o.binary) === NODE_EXECUTABLE && existsSync(join(dir, "wasp")) ? join(dir, "wasp") : o.binary;
  const addon = join(dir, NATIVE_ADDON), node = join(dir, NODE_EXECUTABLE);
  if (existsSync(addon)) installFile(addon, join(o.binDir, NATIVE_ADDON), 0o644);
  if (existsSync(node) && node !== entry) installFile(node, join(o.binDir, NODE_EXECUTABLE), 0o755);
  installFile(entry, binTarget, 0o755);
  const conflist = join(o.confDir, o.confName ?? "10-wasp.conflist");
  const tmp = join(o.confDir, `.${basename(conflist)}.tmp-${process.pid}`);
  writeFileSync(tmp, conflistFor(cidrs.podCIDR, cidrs.podCIDRv6, o), { mode: 0o644 });
  renameSync(tmp, conflist);
  return { binary: binTarget, conflist, ...cidrs };
}
