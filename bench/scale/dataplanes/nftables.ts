// kube-proxy's nftables mode: its transaction for the table `ip kube-proxy` as one `nft -f`, then its
// incremental transactions for the updates (bench/scale/rules.ts).
import { CLUSTER_CIDR, SERVICE_CIDR } from "../dataplane.js";
import { kernelDataplane } from "../kernel-dataplane.js";
import { runTimed } from "../measure.js";
import { NFT_TABLE, nftRuleset, nftUpdate } from "../rules.js";

export const nftables = kernelDataplane({
  name: "nftables",
  color: "#2ca02c",
  load: (_c, services) => [{ cmd: "nft", args: ["-f", "-"], input: nftRuleset(services, SERVICE_CIDR, CLUSTER_CIDR) }],
  update: (_c, current, next) => ({ cmd: "nft", args: ["-f", "-"], input: nftUpdate(current, next, CLUSTER_CIDR) }),
  async remove(c) {
    await runTimed(c.t.node, "nft", ["delete", "table", "ip", NFT_TABLE], undefined, c.stepBoundMs);
  },
});
