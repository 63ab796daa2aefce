// Settings a running daemon cannot take from a reload: the engine takes them at init, or the node
// picture cannot change under a running device.
import type { Config, Problem } from "../config/index.js";

/** Settings the engine takes at init or the node picture cannot change under a running device. */
export function restartOnly(a: Config, b: Config): Problem[] {
  const fields: Array<[string, (c: Config) => unknown]> = [
    ["mode", (c) => c.mode], ["node.name", (c) => c.node.name], ["node.underlayIP", (c) => c.node.underlayIP],
    ["node.podCIDR", (c) => c.node.podCIDR], ["node.underlayMTU", (c) => c.node.underlayMTU],
    ["serviceCIDR", (c) => c.serviceCIDR], ["clusterCIDR", (c) => c.clusterCIDR], ["node.podCIDRv6", (c) => c.node.podCIDRv6],
    ["serviceCIDRv6", (c) => c.serviceCIDRv6], ["clusterCIDRv6", (c) => c.clusterCIDRv6],
    ["vxlan", (c) => c.vxlan], ["conntrack.capacity", (c) => c.conntrack.capacity],
    ["tables", (c) => c.tables],
  ];
  const problems: Problem[] = [];
  for (const [path, get] of fields) {
    const was = JSON.stringify(get(a)), now = JSON.stringify(get(b));
    if (was !== now) problems.push({ path, message: `is ${now}, was ${was}; this setting takes a daemon restart` });
  }
  return problems;
}

