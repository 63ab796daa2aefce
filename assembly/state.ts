// Engine-wide state set by init(): where each fixed region lies (and the stage, which moves when it
// grows) and the node's settings.
// Everything lives in linear memory laid out by hand; nothing here allocates after init.
import { CFG_SIZE } from "./abi";

export const CONFIG: usize = memory.data(CFG_SIZE, 16);
/** Scratch for one packet's keys (conntrack tuple, service key), 64 bytes. */
export const KEY: usize = memory.data(64, 16);
/** Second scratch key (reply tuple, embedded tuple of ICMP errors). */
export const KEY2: usize = memory.data(64, 16);
/** The unspecified addresses, :: and ::ffff:0.0.0.0: the "any local address" keys of IPv6 and
 *  IPv4 NodePort entries (a dual-stack service has one of each). */
export const ANY_ADDR: usize = memory.data(16, 16);
export const ANY_ADDR4: usize = memory.data<u8>([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0], 16);

export let initialized = false;
export function setInitialized(): void { initialized = true; }

// Regions
export let slots: usize = 0;
export let maxBatch: u32 = 0;
export let bufArea: usize = 0;
export let bufAreaEnd: usize = 0;
export let bufStride: u32 = 0;
export let stageArea: usize = 0;
export let stageCap: u32 = 0;
export let counters: usize = 0;
export let traceArea: usize = 0;
export let traceCap: u32 = 0;

/** The stage moved (stageReserve in index.ts). */
export function setStage(sa: usize, sc: u32): void { stageArea = sa; stageCap = sc; }

export function setRegions(s: usize, mb: u32, ba: usize, bs: u32, sa: usize, sc: u32, c: usize, ta: usize, tc: u32): void {
  slots = s; maxBatch = mb; bufArea = ba; bufStride = bs; bufAreaEnd = ba + <usize>bs * <usize>mb;
  stageArea = sa; stageCap = sc; counters = c; traceArea = ta; traceCap = tc;
}

// Node settings (copied from CONFIG at init)
export let modeTap = false;
/** Offload mode: new flows' NAT bindings go to the kernel's conntrack (pipeline/offload.ts). */
export let offload = false;
export let underlayIp: u32 = 0;       // host order
export let vni: u32 = 1;
export let vxlanPort: u32 = 8472;
export let underlayMtu: u32 = 1500;
export let ipId: u32 = 0;
export let nowSec: u32 = 0;

export function setNode(tap: bool, off: bool, uip: u32, v: u32, port: u32, mtu: u32): void {
  modeTap = tap; offload = off; underlayIp = uip; vni = v; vxlanPort = port; underlayMtu = mtu;
}
export function setNow(t: u32): void { nowSec = t; }

// Overlay offloads the host found (setTunnelOffloads): 0 / false until then.
/** The tunnel TAP's MAC (its frames must be addressed to it), 6 bytes; tunnelGso says it is set. */
export const TUNNEL_MAC: usize = memory.data(8, 8);
export let tunnelGso = false;
/** The TUN takes GSO packets (vnet header, TUN mode): a peer's whole TSO packet stays whole. */
export let decapGso = false;
export function setTunnelOffloads(macHi: u32, macLo: u32, gso: bool, decap: bool): void {
  store<u16>(TUNNEL_MAC, bswap<u16>(<u16>macHi));
  store<u32>(TUNNEL_MAC, bswap<u32>(macLo), 2);
  tunnelGso = gso; decapGso = decap;
}
@inline export function nextIpId(): u32 { ipId = (ipId + 1) & 0xffff; return ipId; }

/** Bumps a u64 counter. */
@inline export function count(idx: u32, by: u64 = 1): void {
  const p = counters + (<usize>idx << 3);
  store<u64>(p, load<u64>(p) + by);
}
