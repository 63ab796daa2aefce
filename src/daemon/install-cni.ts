// `wasp daemon --install-cni`: the DaemonSet's init container puts this executable in the CNI bin
// directory and writes this node's conflist (kube/install-cni.ts), then exits.
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import type { DaemonOptions } from "./args.js";

export async function runInstallCni(opts: DaemonOptions, log: Logger): Promise<void> {
  const { defaultNodeName, installCni, loadKubeConfig } = await import("../kube/index.js");
  const r = await installCni({
    kubeConfig: loadKubeConfig(opts.kubeconfig), nodeName: defaultNodeName(opts.hostnameOverride), binary: opts.cniBinary ?? process.execPath,
    binDir: opts.cniBinDir ?? "/opt/cni/bin", confDir: opts.cniConfDir ?? "/etc/cni/net.d", daemonSocket: opts.socketPath,
    // as the daemon will serve it ("" turns the CNI socket off: then none is named)
    cniSocket: opts.cniSocketPath ?? join(dirname(opts.socketPath), "cni.sock"),
  });
  log.info(r, "CNI plugin and conflist installed");
}
