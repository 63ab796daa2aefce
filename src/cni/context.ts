import { poolFromCidr, Store, type Owner, type Pool } from "../ipam/index.js";
import type { NetConf } from "./config.js";
import type { CniEnv } from "./env.js";
import type { CniVersion } from "./version.js";

export interface Ctx {
  env: CniEnv;
  conf: NetConf;
  version: CniVersion;
}

/** The pod's gateway as the pod sees it: a link-local address answered by the host veth (Calico's). */
export const GW4 = "169.254.1.1";
export const GW6 = "fe80::1";

/** The pools, IPv4 first; range index N is the suffix of last_reserved_ip.N. */
export function pools(conf: NetConf): Pool[] {
  // validateNetConf has already checked both CIDRs.
  return [poolFromCidr(conf.podCIDR)!, ...(conf.podCIDRv6 ? [poolFromCidr(conf.podCIDRv6)!] : [])];
}

export function openStore(conf: NetConf): Promise<Store> {
  return Store.open(conf.dataDir, conf.name);
}

export function owner(env: CniEnv): Owner {
  return { containerId: env.containerId, ifname: env.ifname };
}
