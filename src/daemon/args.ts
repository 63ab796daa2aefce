// `wasp daemon`'s command line: kube-proxy's flag spellings where kube-proxy has the flag.
import { DEFAULT_CLUSTER_CIDR, DEFAULT_MIN_SYNC_PERIOD_MS, DEFAULT_SERVICE_CIDR } from "../kube/defaults.js";
import { DEFAULT_HEALTHZ_HOST, DEFAULT_HEALTHZ_PORT } from "./healthz.js";

export interface DaemonOptions {
  /** YAML or JSON config file, watched for changes; the embedded default when absent. */
  configPath?: string;
  socketPath: string;
  /** The CNI front door's socket; default cni.sock beside the control socket, "" for none. */
  cniSocketPath?: string;
  metricsHost: string;
  /** 0: any free port (logged). */
  metricsPort: number;
  /** Batch the TUN reads and writes through io_uring: true requires it, false never, absent
   *  whenever this kernel and sandbox allow it (a container's seccomp profile often does not). */
  ioUring?: boolean;
  /** Offload mode: the engine decides each new flow, the kernel's conntrack carries it. auto (the
   *  default): on where this kernel and these tools allow it, else full-wasm with a log line. */
  offload: "auto" | "on" | "off";
  /** Remove everything a daemon set up on this node (wasp0, rules, routes, the offload table, waspvx)
   *  and exit: a stopped daemon leaves its datapath for the next one. */
  cleanup?: boolean;
  /** Watch the Kubernetes API through this kubeconfig (in-cluster config when absent in a pod without --config). */
  kubeconfig?: string;
  /** This node's Node name (kube-proxy's --hostname-override). */
  hostnameOverride?: string;
  serviceCIDR?: string;
  serviceCIDRv6?: string;
  clusterCIDR?: string;
  clusterCIDRv6?: string;
  underlayIP?: string;
  /** kube-proxy's --nodeport-addresses: CIDRs of this host's addresses, or "primary". */
  nodePortAddresses?: string[];
  mode?: "tun" | "tap";
  minSyncPeriodMs?: number;
  /** kube-proxy's /healthz and /livez; port 0: any free port; undefined host: not served. */
  healthzHost?: string;
  healthzPort: number;
  /** Install the CNI plugin and this node's conflist, then exit (the DaemonSet's init container). */
  installCni?: boolean;
  cniBinDir?: string;
  cniConfDir?: string;
  /** The executable to install (default: this process's, dist/wasp). */
  cniBinary?: string;
}

export const DEFAULT_SOCKET = "/run/wasp/wasp.sock";
export const DEFAULT_METRICS_PORT = 10249;

export const DAEMON_USAGE = `usage: wasp daemon [--config FILE | --kubeconfig PATH] [--socket PATH] [--cni-socket PATH] [--metrics-port PORT] [--[no-]io-uring] [kube options]

  --config FILE        node config (YAML or JSON), reloaded when it changes; default: the embedded demo
                       (in a pod, KUBERNETES_SERVICE_HOST set: the Kubernetes API, in-cluster config)
  --kubeconfig PATH    watch Services, EndpointSlices and Nodes through this kubeconfig
  --socket PATH        control socket (default ${DEFAULT_SOCKET})
  --cni-socket PATH    where the CNI plugin (dist/wasp) hands pod ADD/DEL to this daemon
                       (default: cni.sock beside the control socket; "" turns it off)
  --metrics-port PORT  Prometheus metrics on 127.0.0.1:PORT/metrics (default ${DEFAULT_METRICS_PORT}; 0 picks one)
  --metrics-bind-address IP:PORT  the same as kube-proxy spells it (default 127.0.0.1:${DEFAULT_METRICS_PORT})
  --healthz-bind-address IP:PORT  kube-proxy's /healthz and /livez (default ${DEFAULT_HEALTHZ_HOST}:${DEFAULT_HEALTHZ_PORT}; "" turns them off)
  --io-uring           batch the TUN reads and writes through io_uring (one syscall per batch); the
                       default whenever io_uring works here, this flag makes it a requirement
  --no-io-uring        plain read()/write() per packet
  --offload auto|on|off  offload mode: the engine decides every new flow and hands its NAT to the
                       kernel's conntrack, which carries the rest of it (pod-to-pod traffic and
                       established flows never leave the kernel); off keeps every packet of a service
                       flow in wasm. auto (default): on wherever this kernel allows it
  --cleanup            remove what a daemon set up on this node (wasp0, its rules and routes, the
                       offload table, waspvx) and exit. A stopped daemon leaves them for the next one,
                       so a restart or upgrade keeps established connections

 kube options (with --kubeconfig or in-cluster):
  --hostname-override NAME  this node's Node name (default: $NODE_NAME, else the host name)
  --cluster-cidr CIDR[,CIDR6]  pod addresses of the cluster (default ${DEFAULT_CLUSTER_CIDR}); an IPv6 one makes the node dual-stack
  --service-cidr CIDR[,CIDR6]  the cluster's service-cluster-ip-range (default ${DEFAULT_SERVICE_CIDR})
  --underlay-ip IP          VXLAN underlay address (default: the Node's InternalIP)
  --nodeport-addresses LIST NodePorts on this host's addresses in these CIDRs, or "primary" (the Node's
                            InternalIPs); default: the Node's InternalIP and ExternalIP addresses
  --mode tun|tap            the wasp0 device (default tun)
  --min-sync-period DUR     at most one table generation per DUR, e.g. 1s, 500ms (default ${DEFAULT_MIN_SYNC_PERIOD_MS}ms)
  --install-cni             install this executable as the CNI plugin and a conflist with this Node's pod
                            CIDR, then exit (the DaemonSet's init container); with --cni-bin-dir DIR
                            (default /opt/cni/bin), --cni-conf-dir DIR (default /etc/cni/net.d), --cni-binary FILE
`;

/** kube-proxy's duration flags: 1s, 500ms, 1m30s, 0. */
function parseDurationMs(flag: string, v: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (v === "0") return 0;
  const parts = [...v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((x) => x[0]).join("") !== v) throw new Error(`${flag} is ${JSON.stringify(v)}; expected a duration like 1s, 500ms or 1m30s`);
  return parts.reduce((sum, x) => sum + Number(x[1]) * (units[x[2] as string] as number), 0);
}

/** IP:PORT (IPv6 as [addr]:port); an empty value turns the server off. */
function parseHostPort(flag: string, v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d+)$/.exec(v);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new Error(`${flag} is ${JSON.stringify(v)}; expected IP:PORT like 0.0.0.0:10256 or [::]:10256`);
  return { host: (m[1] ?? m[2]) as string, port };
}

export function parseDaemonArgs(argv: readonly string[]): DaemonOptions | { error: string } {
  const o: DaemonOptions = {
    socketPath: DEFAULT_SOCKET, offload: "auto", metricsHost: "127.0.0.1", metricsPort: DEFAULT_METRICS_PORT, healthzHost: DEFAULT_HEALTHZ_HOST, healthzPort: DEFAULT_HEALTHZ_PORT,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    const [flag, inline] = a.startsWith("--") && a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
    const value = (emptyOk = false) => {
      const v = inline ?? argv[++i];
      if (v === undefined || (v === "" && !emptyOk)) throw new Error(`${flag} needs a value`);
      return v;
    };
    try {
      if (flag === "--io-uring" && inline === undefined) o.ioUring = true;
      else if (flag === "--no-io-uring" && inline === undefined) o.ioUring = false;
      else if (flag === "--cleanup" && inline === undefined) o.cleanup = true;
      else if (flag === "--offload") {
        const v = value();
        if (v !== "auto" && v !== "on" && v !== "off") return { error: `--offload is ${JSON.stringify(v)}; expected auto, on or off` };
        o.offload = v;
      }
      else if (flag === "--config") o.configPath = value();
      else if (flag === "--socket") o.socketPath = value();
      else if (flag === "--cni-socket") o.cniSocketPath = value(true);
      else if (flag === "--metrics-port") {
        const v = value(), n = Number(v);
        if (!/^\d+$/.test(v) || n > 65535) return { error: `--metrics-port is ${JSON.stringify(v)}; a port is 0-65535` };
        o.metricsPort = n;
      } else if (flag === "--metrics-bind-address") {
        const hp = parseHostPort(flag, value());
        o.metricsHost = hp.host;
        o.metricsPort = hp.port;
      } else if (flag === "--healthz-bind-address") {
        const v = value(true);
        if (v === "") delete o.healthzHost;
        else { const hp = parseHostPort(flag, v); o.healthzHost = hp.host; o.healthzPort = hp.port; }
      } else if (flag === "--kubeconfig") o.kubeconfig = value();
      else if (flag === "--hostname-override") o.hostnameOverride = value();
      else if (flag === "--cluster-cidr" || flag === "--service-cidr") {
        // kube-proxy's dual-stack spelling: one CIDR per family, comma-separated.
        const key = flag === "--cluster-cidr" ? "clusterCIDR" : "serviceCIDR";
        const parts = value().split(",").map((x) => x.trim());
        const v4 = parts.filter((x) => !x.includes(":")), v6 = parts.filter((x) => x.includes(":"));
        if (v4.length !== 1 || v6.length > 1) return { error: `${flag} is ${JSON.stringify(parts.join(","))}; expected one IPv4 CIDR and at most one IPv6 CIDR, comma-separated` };
        o[key] = v4[0] as string;
        if (v6[0] !== undefined) o[`${key}v6`] = v6[0];
      }
      else if (flag === "--underlay-ip") o.underlayIP = value();
      else if (flag === "--nodeport-addresses") o.nodePortAddresses = value().split(",").map((x) => x.trim()).filter((x) => x !== "");
      else if (flag === "--mode") {
        const v = value();
        if (v !== "tun" && v !== "tap") return { error: `--mode is ${JSON.stringify(v)}; expected tun or tap` };
        o.mode = v;
      } else if (flag === "--min-sync-period") o.minSyncPeriodMs = parseDurationMs(flag, value());
      else if (flag === "--install-cni" && inline === undefined) o.installCni = true;
      else if (flag === "--cni-bin-dir") o.cniBinDir = value();
      else if (flag === "--cni-conf-dir") o.cniConfDir = value();
      else if (flag === "--cni-binary") o.cniBinary = value();
      else return { error: `unknown option ${JSON.stringify(a)}` };
    } catch (e) {
      return { error: (e as Error).message };
    }
  }
  if (o.configPath !== undefined && o.kubeconfig !== undefined) return { error: "--config and --kubeconfig are two config sources; give one" };
  return o;
}

