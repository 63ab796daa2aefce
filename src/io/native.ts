// Loads native/build/Release/wasp_native.node lazily, so importing src/io never fails on a
// machine without the addon until a device is actually opened.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface OpenResult { fd?: number; udpFd?: number; rawFd?: number; mac?: string; errno?: number; stage?: string }

/** The fields of the Int32Array in which writeBatch and sendBatch report what the kernel refused
 *  (native/src/drops.h: DropField). A device makes one and passes it to every batch: no second call
 *  and no allocation per batch. */
export enum DropField {
  /** Packets the kernel refused (full queue, no route, malformed). */
  Dropped = 0,
  /** The errno of the last of them, 0 when none. */
  LastErrno = 1,
  /** Tunnel-GSO frames the tunnel TAP refused as malformed (sendBatch). */
  TunnelRefused = 2,
}
export const DROP_FIELDS = 3;

export interface NativePoller {
  /** 0, or -errno from libuv. */
  start(): number;
  stop(): void;
  close(): void;
}

/** The addon's surface; every number result below 0 is -errno. */
export interface Native {
  /** persist: true keeps the device after its last fd closes (TUNSETPERSIST), false undoes that,
   *  absent leaves it as it is. */
  openTun(name: string, tap: boolean, vnetHdr: boolean, multiQueue: boolean, netns?: string, persist?: boolean): OpenResult;
  /** flags: SlotFlag bits every slot read gets (VNET, ETHERNET). */
  readBatch(fd: number, memory: ArrayBuffer, slotsAddr: number, count: number, vnet: boolean,
    uring: boolean, flags: number): number;
  /** Packets written; drops (Int32Array of DROP_FIELDS) is set to this batch's DropField values. */
  writeBatch(fd: number, memory: ArrayBuffer, slotsAddr: number, count: number, verdictMask: number,
    vnet: boolean, uring: boolean, drops: Int32Array): number;
  /** 0 when io_uring works on this thread, else -errno. */
  probeUring(): number;
  close(fd: number): number;
  /** Datagrams the kernel dropped at the socket (its receive buffer full), or -errno. */
  socketDrops(fd: number): number;
  openUnderlay(bindIp: string, port: number, netns?: string): OpenResult;
  /** A TAP taking encapsulated TSO packets with UDP-tunnel GSO (Linux 6.17+): { fd, mac }. */
  openTunnelTap(name: string, netns?: string): OpenResult;
  recvBatch(fd: number, memory: ArrayBuffer, slotsAddr: number, count: number, innerMtu: number,
    keepWhole: boolean): number;
  /** Datagrams (UDP GRO) whose segments did not fit the last recvBatch and wait for the next. */
  recvPending(fd: number): number;
  /** Packets sent; tapFd: the tunnel TAP for slots noted TUNNEL_GSO, -1 when there is none; drops as
   *  for writeBatch. */
  sendBatch(fd: number, memory: ArrayBuffer, slotsAddr: number, count: number, verdictMask: number,
    tapFd: number, drops: Int32Array): number;
  Poller: new (fd: number, callback: (status: number) => void) => NativePoller;
  /** A NETLINK_ROUTE socket made inside the namespace at netns (the caller's when absent). */
  netlinkOpen(netns?: string): OpenResult;
  /** Sends one rtnetlink request (NLM_F_ACK set) and waits off the JS thread for its ack: errno 0 or
   *  the kernel's errno, its extended-ack sentence, and the answers that came before the ack. */
  netlinkRequest(fd: number, message: Buffer): Promise<{ errno: number; message?: string; replies: Buffer }>;
  /** A NETLINK_NETFILTER socket (ctnetlink) made inside the namespace at netns. */
  ctOpen(netns?: string): OpenResult;
  /** Sends buffer[offset, offset+length) (requests with seq 1..results.length) in one sendmsg and
   *  puts each request's answer in results: the kernel's errno, or 0 (acked, or no answer: a
   *  request without NLM_F_ACK is answered only when refused). Returns how many were answered. */
  ctTransact(fd: number, buffer: ArrayBuffer, offset: number, length: number, results: Int32Array): number;
}

const ADDON_PATH = join("native", "build", "Release", "wasp_native.node");
let loaded: Native | undefined;

/** WASP_NATIVE, else wasp_native.node beside the executable (dist/wasp), else the first
 *  native/build/... above this file. */
export function addonPath(): string {
  if (process.env.WASP_NATIVE) return process.env.WASP_NATIVE;
  const beside = join(dirname(process.execPath), "wasp_native.node");
  if (existsSync(beside)) return beside;
  // src/io/ in development, dist/js/src/io/ when compiled: walk up to the repository.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, ADDON_PATH);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..", ADDON_PATH);
}

export function native(): Native {
  if (loaded) return loaded;
  const path = addonPath();
  try {
    loaded = createRequire(import.meta.url)(path) as Native;
  } catch (e) {
    throw new Error(`cannot load the native addon ${path}: ${(e as Error).message}. ` +
      "Build it (npm run build:native) or point WASP_NATIVE at the packaged wasp_native.node");
  }
  return loaded;
}
