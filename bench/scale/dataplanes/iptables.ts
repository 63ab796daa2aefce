// kube-proxy's iptables mode: its full sync as one `iptables-restore --noflush` (bench/scale/rules.ts),
// the jumps from PREROUTING, OUTPUT, POSTROUTING and FORWARD, and a full sync again for each update.
// The x_tables ("legacy") backend where it works: the nf_tables one cannot load 10,000 services in the
// bound; its load time alone is measured once per N up to 1,000 (10,000 in a full run) as
// iptables_nft_backend_load_ms_<N>.
import { CLUSTER_CIDR } from "../dataplane.js";
import { kernelDataplane } from "../kernel-dataplane.js";
import { runTimed } from "../measure.js";
import { iptablesJumps, iptablesRestore, iptChains } from "../rules.js";
import { inNs } from "../../../test/helpers/netns.js";

interface Backend { restore: string; cmd: string; backend: string }
const chosen = new Map<string, Backend>();

/** The iptables tools of the backend that can load 10,000 services in the bound (legacy, x_tables,
 *  when it works here), chosen once per node namespace. */
function tools(ns: string): Backend {
  let b = chosen.get(ns);
  if (b) return b;
  try {
    inNs(ns, "iptables-legacy", "-t", "nat", "-L", "-n");
    b = { restore: "iptables-legacy-restore", cmd: "iptables-legacy", backend: "legacy" };
  } catch {
    b = { restore: "iptables-nft-restore", cmd: "iptables-nft", backend: "nf_tables" };
  }
  console.log(`iptables: ${b.restore} (${b.backend} backend)`);
  chosen.set(ns, b);
  return b;
}

export const iptables = kernelDataplane({
  name: "iptables",
  color: "#1f77b4",
  load: (c, services) => [{ cmd: tools(c.t.node).restore, args: ["--noflush"], input: iptablesRestore(services, CLUSTER_CIDR) }],
  connect(c) {
    for (const j of iptablesJumps()) inNs(c.t.node, tools(c.t.node).cmd, ...j);
  },
  update: (c, current, next) => ({ cmd: tools(c.t.node).restore, args: ["--noflush"], input: iptablesRestore(next, CLUSTER_CIDR, iptChains(current)) }),
  async remove(c) {
    // The jumps first, then kube's chains (flush all, then delete all).
    const cmd = tools(c.t.node).cmd;
    for (const j of iptablesJumps()) {
      try { inNs(c.t.node, cmd, ...j.map((x) => (x === "-A" ? "-D" : x))); } catch { /* not there (a failed load) */ }
    }
    for (const table of ["nat", "filter"]) {
      await runTimed(c.t.node, cmd, ["-t", table, "-F"], undefined, c.stepBoundMs);
      await runTimed(c.t.node, cmd, ["-t", table, "-X"], undefined, c.stepBoundMs);
    }
  },
  once: {
    what: "nf_tables backend",
    /** Only the load, bounded by 60 s: at 10,000 it shows where the nf_tables backend stands. */
    async measure(c, services, n, out) {
      if (n > 1000 && (n !== 10000 || c.quick)) return;
      const bound = Math.min(c.stepBoundMs, 60000);
      const r = await runTimed(c.t.node, "iptables-nft-restore", ["--noflush"], iptablesRestore(services, CLUSTER_CIDR), bound);
      try {
        if (r.timedOut) { out.nft_backend_load_timeout_s = bound / 1000; return; }
        if (r.code !== 0) throw new Error(`iptables-nft-restore failed: ${r.out.slice(0, 400)}`);
        out.nft_backend_load_ms = r.ms;
      } finally {
        // iptables-nft keeps its tables in nf_tables: removing them is one nft command each.
        await runTimed(c.t.node, "nft", ["delete", "table", "ip", "nat"], undefined, c.stepBoundMs);
        await runTimed(c.t.node, "nft", ["delete", "table", "ip", "filter"], undefined, c.stepBoundMs);
      }
    },
  },
});
