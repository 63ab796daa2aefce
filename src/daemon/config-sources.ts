// Where a daemon's config comes from: the Kubernetes API (--kubeconfig, or in a pod without
// --config), a watched file (--config), or the embedded demo config. Each gives the first config
// to start with and, once the node is up, every change after it.
import type { Logger } from "pino";
import { defaultConfig, FileConfigSource, formatProblems, loadConfigFile, type Config, type ConfigEvent, type ConfigSource } from "../config/index.js";
import type { DaemonOptions } from "./args.js";

export interface StartingConfig {
  config: Config;
  /** Starts reporting changes after `config` to the listener. */
  follow(listener: (ev: ConfigEvent) => void): void;
  /** kube-proxy's sync metrics: the times the API's changes were queued since the last call. */
  triggerTimes(): number[] | undefined;
  close(): void;
}

export interface SourceHooks {
  /** kube-proxy's health: a change from the API is waiting to be applied. */
  onQueued(): void;
  onNodeEligible(eligible: boolean): void;
  /** Called at once with what closes the source, so a daemon stopped while it waits for the
   *  first config can close it. */
  opened(close: () => void): void;
}

/** True when this daemon watches the Kubernetes API rather than a file. */
export function usesKube(opts: DaemonOptions): boolean {
  return opts.kubeconfig !== undefined || (!opts.configPath && process.env["KUBERNETES_SERVICE_HOST"] !== undefined);
}

export async function startingConfig(opts: DaemonOptions, log: Logger, hooks: SourceHooks): Promise<StartingConfig> {
  if (usesKube(opts)) return startKube(opts, log, hooks);
  if (opts.configPath) {
    const path = opts.configPath;
    const r = await loadConfigFile(path);
    if ("problems" in r) throw new Error(`invalid config (${r.problems.length} problem${r.problems.length === 1 ? "" : "s"}):\n  ${formatProblems(path, r.problems).join("\n  ")}`);
    let source: ConfigSource | undefined;
    return {
      config: r.config,
      follow: (listener) => { source = new FileConfigSource(path); hooks.opened(() => source?.close()); source.start(listener); },
      triggerTimes: () => undefined,
      close: () => source?.close(),
    };
  }
  log.warn("no --config: running the embedded demo config");
  return { config: defaultConfig(), follow: () => {}, triggerTimes: () => undefined, close: () => {} };
}

async function startKube(opts: DaemonOptions, log: Logger, hooks: SourceHooks): Promise<StartingConfig> {
  // Loaded only here: the API client is most of a daemon's memory, and a file-fed daemon needs none of it.
  const { defaultNodeName, firstConfig, KubeConfigSource, loadKubeConfig } = await import("../kube/index.js");
  const source = new KubeConfigSource({
    kubeConfig: loadKubeConfig(opts.kubeconfig), nodeName: defaultNodeName(opts.hostnameOverride), log,
    settings: {
      ...(opts.serviceCIDR !== undefined && { serviceCIDR: opts.serviceCIDR }), ...(opts.clusterCIDR !== undefined && { clusterCIDR: opts.clusterCIDR }),
      ...(opts.serviceCIDRv6 !== undefined && { serviceCIDRv6: opts.serviceCIDRv6 }), ...(opts.clusterCIDRv6 !== undefined && { clusterCIDRv6: opts.clusterCIDRv6 }),
      ...(opts.underlayIP !== undefined && { underlayIP: opts.underlayIP }), ...(opts.mode !== undefined && { mode: opts.mode }),
      ...(opts.nodePortAddresses !== undefined && { nodePortAddresses: opts.nodePortAddresses }),
    },
    ...(opts.minSyncPeriodMs !== undefined && { minSyncPeriodMs: opts.minSyncPeriodMs }),
    onQueued: hooks.onQueued,
    onNodeEligible: hooks.onNodeEligible,
  });
  hooks.opened(() => source.close());
  log.info({ server: source.server, node: source.nodeName }, "waiting for the Kubernetes API's Services, EndpointSlices and this Node");
  const first = await firstConfig(source, (problems) => log.warn({ problems: formatProblems("kube", problems) }, "not serving yet"));
  return { config: first.config, follow: first.attach, triggerTimes: () => source.takeTriggerTimes(), close: () => source.close() };
}
