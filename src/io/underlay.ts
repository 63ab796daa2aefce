// The VXLAN underlay: a UDP socket receives (recvmmsg), a raw IPv4 socket sends the complete
// outer packets the engine built (sendmmsg), both straight from and into wasm memory. Consecutive
// packets of one flow (a pod's GSO super-packet, cut by the engine) leave instead as one UDP GSO
// datagram from a UDP socket bound to that flow's outer source port (native: GsoSocket; at most
// 1,024 such sockets, ports 49152-65535 of the node's address, send-only); the receiving socket
// has UDP GRO on, and recvBatch cuts a coalesced datagram back into one packet per slot.
// WASP_NO_UDP_GSO=1 / WASP_NO_UDP_GRO=1 turn either off (for comparison).
import { EAGAIN, EFAULT, EINVAL, IoError, errnoCode, ioError, NEED_ROOT } from "./errno.js";
import { bufferOf, slotsOutsideMemory, type BatchMemory } from "./memory.js";
import { native } from "./native.js";
import { Readiness } from "./readiness.js";

export interface UnderlayOptions {
  /** This node's underlay IPv4 address (or 0.0.0.0). */
  bindIp: string;
  /** The VXLAN UDP port (8472 on Linux and flannel, 4789 IANA). */
  port: number;
  /** A network namespace file (/var/run/netns/NAME); both sockets are made there. */
  netns?: string;
  /** The largest inner IP packet, the pods' MTU (underlay MTU - 50; default 1450): a peer's
   *  unsegmented TCP packet (Linux vxlan over a veth) is cut into frames of this size. */
  innerMtu?: number;
}

function openFix(stage: string, code: string, opts: UnderlayOptions): string {
  if (code === "EPERM" || code === "EACCES") return NEED_ROOT;
  if (code === "EADDRINUSE") {
    return "Another VXLAN endpoint (a kernel vxlan device, flannel, another wasp) uses the port; " +
      "stop it or pick another port";
  }
  if (code === "EADDRNOTAVAIL") return `${opts.bindIp} is on no interface of the namespace; add it or fix bindIp`;
  return "";
}

export class UnderlaySocket {
  /** Packets refused by the kernel in the last sendBatch (no route, full buffer). */
  lastDropped = 0;
  /** The errno code of the last refused packet, '' when none. */
  lastDropCode = "";
  private readonly readiness: Readiness;
  private closed = false;
  private readonly label: string;

  private constructor(readonly udpFd: number, readonly rawFd: number, readonly bindIp: string,
    readonly port: number, private readonly innerMtu: number) {
    this.label = `underlay socket ${bindIp}:${port}`;
    this.readiness = new Readiness(udpFd, this.label);
  }

  static open(opts: UnderlayOptions): UnderlaySocket {
    const r = native().openUnderlay(opts.bindIp, opts.port, opts.netns);
    if (r.udpFd !== undefined && r.rawFd !== undefined) {
      return new UnderlaySocket(r.udpFd, r.rawFd, opts.bindIp, opts.port, opts.innerMtu ?? 1450);
    }
    const errno = r.errno ?? 0, stage = r.stage ?? "", code = errnoCode(errno);
    if (stage === "address") {
      throw new IoError(`cannot open underlay socket ${opts.bindIp}:${opts.port}: not an IPv4 address and ` +
        "a port 0-65535 (EINVAL). Fix bindIp and port", errno || EINVAL);
    }
    if (stage === "netns") {
      const ns = opts.netns ?? "";
      const hint = code === "ENOENT" ? `Create it (ip netns add ${ns.split("/").pop()}) or fix the path` : "";
      throw ioError(`cannot enter network namespace ${ns}`, errno, hint || openFix(stage, code, opts));
    }
    const what = stage === "bind" ? `cannot bind underlay UDP socket to ${opts.bindIp}:${opts.port}`
      : stage === "raw" ? "cannot open the underlay's raw IPv4 socket"
      : `cannot open underlay UDP socket for ${opts.bindIp}:${opts.port}`;
    throw ioError(what, errno, openFix(stage, code, opts));
  }

  /**
   * Receives up to count datagrams: payload (the VXLAN header on) at each slot's data, len,
   * peer = sender IPv4 (host order), FROM_OVERLAY in flags. Returns how many, 0 when none waits.
   */
  recvBatch(memory: BatchMemory, slotsAddr: number, count: number): number {
    const buffer = bufferOf(memory);
    const n = native().recvBatch(this.udpFd, buffer, slotsAddr, count, this.innerMtu);
    if (n >= 0) return n;
    if (n === -EAGAIN) return 0;
    if (n === -EFAULT) throw slotsOutsideMemory("recvBatch", this.label, buffer, slotsAddr, count);
    throw ioError(`cannot receive on ${this.label}`, -n);
  }

  /** True when segments of a received datagram wait for the next recvBatch (the socket may be
   *  empty meanwhile: drain again without waiting for readiness). */
  hasPending(): boolean {
    return native().recvPending(this.udpFd) > 0;
  }

  /** Sends every selected slot's [data, data+len), a whole IPv4 packet, to its peer (host order). */
  sendBatch(memory: BatchMemory, slotsAddr: number, count: number, verdictMask: number): number {
    const nat = native(), buffer = bufferOf(memory);
    const n = nat.sendBatch(this.rawFd, buffer, slotsAddr, count, verdictMask);
    const [dropped, errno] = nat.lastWriteErrors();
    this.lastDropped = dropped;
    this.lastDropCode = dropped ? errnoCode(errno) : "";
    if (n >= 0) return n;
    if (n === -EFAULT) throw slotsOutsideMemory("sendBatch", this.label, buffer, slotsAddr, count);
    throw ioError(`cannot send on ${this.label}`, -n);
  }

  /** Calls cb from the event loop whenever datagrams wait (level-triggered: drain them in cb). */
  onReadable(cb: (err?: IoError) => void): void { this.readiness.on(cb); }

  stop(): void { this.readiness.stop(); }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.readiness.close();
    native().close(this.udpFd);
    native().close(this.rawFd);
  }
}
