// The engine options a node's config gives: the daemon starts its engine with them, replay and
// trace start their twins with them.
import type { Config } from "../config/index.js";
import { firstAddress, firstAddress6 } from "../model/addr.js";
import { localVtepMac } from "../model/model.js";
import type { EngineOptions } from "./engine.js";

/** TAP mode: the MAC of wasp0 itself (the engine addresses its frames to it), and the MAC the
 *  engine answers ARP with (the node's permanent neighbour for the gateway). */
export const TAP_MAC = "02:77:61:73:70:02";
export const ENGINE_MAC = "02:77:61:73:70:01";

/**
 * Packets per batch. One UDP GRO datagram from another node is up to ~45 segments, each taking a
 * slot: with 64 slots a batch held one and a half of them and the rest waited in native memory for
 * the next turn; 256 hold five (overlay TCP measured 6.5 -> 7.0 Gbit/s). Slot buffers are touched
 * only as deep as a batch fills them, so an idle node's RSS does not grow with this.
 */
export const DAEMON_MAX_BATCH = 256;

/** The engine options a config gives: the daemon starts its engine with them, replay and trace their twins. */
export function engineOptionsFor(config: Config, offload = false): EngineOptions {
  return {
    offload,
    conntrackCapacity: config.conntrack.capacity,
    maxBatch: DAEMON_MAX_BATCH,
    // ceilings only: the tables grow with what is loaded
    ...(config.tables?.services !== undefined && { maxServices: config.tables.services }),
    ...(config.tables?.backends !== undefined && { maxBackends: config.tables.backends }),
    ...(config.tables?.memoryMiB !== undefined && { memoryLimitMiB: config.tables.memoryMiB }),
    mode: config.mode,
    tapPeerMac: TAP_MAC,
    engineMac: ENGINE_MAC,
    underlayIp: config.node.underlayIP,
    underlayMtu: config.node.underlayMTU,
    vni: config.vxlan.vni,
    vxlanPort: config.vxlan.port,
    vtepMac: localVtepMac(config.node),
    masqAddr4: firstAddress(config.node.podCIDR),
    ...(config.node.podCIDRv6 ? { masqAddr6: firstAddress6(config.node.podCIDRv6) } : {}),
    serviceCidr4: config.serviceCIDR,
    clusterCidr4: config.clusterCIDR,
    ...(config.serviceCIDRv6 ? { serviceCidr6: config.serviceCIDRv6 } : {}),
    ...(config.clusterCIDRv6 ? { clusterCidr6: config.clusterCIDRv6 } : {}),
  };
}

