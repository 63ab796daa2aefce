// kube-proxy's IPVS mode: the ClusterIPs on the dummy device kube-ipvs0 (`ip -batch`), the virtual
// servers by `ipvsadm -R`, and an ipvsadm edit per update (bench/scale/rules.ts). Only where the
// kernel has ip_vs and the dummy link type.
import { kernelDataplane } from "../kernel-dataplane.js";
import { runTimed } from "../measure.js";
import { ipvsDummyAddrs, ipvsEdit, ipvsRestore } from "../rules.js";
import { inNs, ip, sysctl } from "../../../test/helpers/netns.js";

const DEV = "kube-ipvs0";

/** Why IPVS cannot run in ns, or undefined when it can (ip_vs answers and a dummy link can be made). */
function probeIpvs(ns: string): string | undefined {
  try { inNs(ns, "ipvsadm", "-Ln"); } catch (e) { return `ipvsadm -Ln: ${(e as Error).message.split("\n").slice(-2).join(" ").trim()} (no ip_vs in this kernel)`; }
  try { ip(ns, "link", "add", "scaleprobe0", "type", "dummy"); ip(ns, "link", "del", "scaleprobe0"); } catch (e) {
    return `ip link add type dummy: ${(e as Error).message} (no dummy link type in this kernel, so no ${DEV})`;
  }
  return undefined;
}

export const ipvs = kernelDataplane({
  name: "ipvs",
  color: "#9467bd",
  available: (c) => probeIpvs(c.t.node),
  prepare(c) {
    sysctl(c.t.node, "net.ipv4.vs.conntrack", 1);
    ip(c.t.node, "link", "add", DEV, "type", "dummy");
  },
  load: (_c, services) => [
    { cmd: "ip", args: ["-batch", "-"], input: ipvsDummyAddrs(services, DEV) },
    { cmd: "ipvsadm", args: ["-R"], input: ipvsRestore(services) },
  ],
  update: (_c, current, next) => ({ cmd: "ipvsadm", args: ["-R"], input: ipvsEdit(current, next) }),
  async remove(c) {
    await runTimed(c.t.node, "ipvsadm", ["-C"], undefined, c.stepBoundMs);
    try { ip(c.t.node, "link", "del", DEV); } catch { /* not made */ }
  },
});
