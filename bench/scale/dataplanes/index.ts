// The dataplanes the scale benchmark compares, in the order of its charts' legends and its table's
// rows. A new one is a file in this folder implementing Dataplane (bench/scale/dataplane.ts) and an
// entry here; a kube-proxy mode is a kernelDataplane (bench/scale/kernel-dataplane.ts), a variant of
// the wasp daemon a waspDataplane with its own name, colour and daemonArgs.
import type { Dataplane } from "../dataplane.js";
import { iptables } from "./iptables.js";
import { ipvs } from "./ipvs.js";
import { nftables } from "./nftables.js";
import { waspDataplane } from "./wasp.js";

export const DATAPLANES: readonly Dataplane[] = [
  waspDataplane({ name: "wasp", color: "#d62728", breakdown: true, daemonArgs: ["--offload", "off"] }),
  waspDataplane({ name: "wasp_offload", color: "#ff7f0e", daemonArgs: ["--offload", "on"] }),
  iptables,
  nftables,
  ipvs,
];
