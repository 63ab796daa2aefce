// What the scale benchmark's dataplanes share: the topology's addresses and ports, the context a run
// hands each dataplane (bench/scale/scale.ts makes it), the sample a run fills, and the Dataplane
// interface that each file in bench/scale/dataplanes/ implements.
import type { Pod, Topology } from "../../test/helpers/topology.js";
import type { ScaleService, ServicePort } from "./rules.js";

export const SERVICE_BASE = "10.96.0.0", SERVICE_CIDR = "10.96.0.0/16", CLUSTER_CIDR = "10.244.0.0/16";
/** The target's second endpoint: another address of the backend pod, routed to it by the node. */
export const BACKEND2 = "10.244.1.250";
export const FILLER_BACKENDS = "10.244.128.0", CHANGED_BACKENDS = "10.244.64.0";
export const CONN_PORT = 80, IPERF_PORT = 5201, STREAM_PORT = 9000;
export const TARGET_PORTS: ServicePort[] = [
  { name: "http", port: CONN_PORT, protocol: "TCP", targetPort: 8080 },
  { name: "iperf", port: IPERF_PORT, protocol: "TCP", targetPort: IPERF_PORT },
  { name: "stream", port: STREAM_PORT, protocol: "UDP", targetPort: STREAM_PORT },
];
/** connrate.c's connecting processes. */
export const WORKERS = 4;
export const STREAM_PPS = 5000;
/** Services whose endpoints change in the update made while the UDP stream runs. */
export const CHANGED_IN_STREAM = 100;

/** One dataplane's measurements at one N in one repetition: metric (unit in the name) to value. */
export type Sample = Partial<Record<string, number>>;

export interface Ctx {
  t: Topology;
  client: Pod;
  backend: Pod;
  /** The built connrate.c. */
  bin: string;
  quick: boolean;
  /** The bound on one programming step. */
  stepBoundMs: number;
  connSecs: number;
  iperfSecs: number;
}

export interface Dataplane {
  /** The results' key prefix (`<name>_<metric>_<N>`), the charts' legend and the table's row. */
  readonly name: string;
  /** Its line in the charts. */
  readonly color: string;
  /** Why this kernel cannot run it, or undefined when it can. Only a dataplane that a kernel may
   *  lack has a probe; the results then say `<name>_available` (1 or 0). */
  available?(c: Ctx): string | undefined;
  /** From nothing to nothing on the node: programs `services` (the target last), measures into
   *  `out`, and removes what it made, also after a failure. A step stopped at the bound is recorded
   *  in `out` (`<step>_timeout_s`) and ends the run; a failed one throws. */
  run(c: Ctx, services: ScaleService[], n: number, out: Sample): Promise<void>;
  /** Measured once per N after the repetitions, outside the rotation, into the same keys. */
  readonly once?: { what: string; measure(c: Ctx, services: ScaleService[], n: number, out: Sample): Promise<void> };
}

/** The service the traffic goes to: the last (the one KUBE-SERVICES' linear scan meets last). */
export function target(services: readonly ScaleService[]): ScaleService {
  return services[services.length - 1]!;
}

/** The index of the one service whose endpoints change in the update: the middle one (N = 1: the target). */
export function updateIndex(n: number): number {
  return n > 1 ? Math.floor((n - 1) / 2) : 0;
}
