// The VXLAN underlay: a UDP socket receives (recvmmsg), a raw IPv4 socket sends the complete
// outer packets the engine built (sendmmsg), both straight from and into wasm memory. Consecutive
// packets of one flow (a pod's GSO super-packet, cut by the engine) leave instead as one UDP GSO
// datagram from a UDP socket bound to that flow's outer source port (native: GsoSocket; at most
// 1,024 such sockets, ports 49152-65535 of the node's address, send-only); the receiving socket
// has UDP GRO on, and recvBatch cuts a coalesced datagram back into one packet per slot.
// WASP_NO_UDP_GSO=1 / WASP_NO_UDP_GRO=1 turn either off (for comparison).
// With a tunnel TAP (Linux 6.17+, UnderlayOptions.tunnelTap) a TSO packet is not cut at all: the
// engine encapsulates it once and the kernel forwards it whole with UDP-tunnel GSO, as it does for
// its own vxlan device (WASP_NO_TUNNEL_GSO=1 turns it off).
import { EAGAIN, EFAULT, EINVAL, IoError, errnoCode, ioError, NEED_ROOT } from "./errno.js";
import { bufferOf, slotsOutsideMemory, type BatchMemory } from "./memory.js";
import { BatchDevice } from "./batch-device.js";
import { native } from "./native.js";

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
  /** Name of the tunnel TAP to make for UDP-tunnel GSO sends (absent: none). Where the kernel
   *  cannot (before 6.17, strict rp_filter) the socket opens without it; tunnelOff says why. */
  tunnelTap?: string;
}

/** The tunnel TAP: its fd and MAC (frames are addressed to it). */
export interface TunnelTap { fd: number; mac: string; name: string }

function openFix(stage: string, code: string, opts: UnderlayOptions): string {
  if (code === "EPERM" || code === "EACCES") return NEED_ROOT;
  if (code === "EADDRINUSE") {
    return "Another VXLAN endpoint (a kernel vxlan device, flannel, another wasp) uses the port; " +
      "stop it or pick another port";
  }
  if (code === "EADDRNOTAVAIL") return `${opts.bindIp} is on no interface of the namespace; add it or fix bindIp`;
  return "";
}

export class UnderlaySocket extends BatchDevice {
  private readonly label: string;
  /** The tunnel TAP when open, else undefined and tunnelOff says why ('' when none was asked). */
  tunnel: TunnelTap | undefined;
  tunnelOff = "";

  private constructor(readonly udpFd: number, readonly rawFd: number, readonly bindIp: string,
    readonly port: number, private readonly innerMtu: number) {
    super(udpFd, `underlay socket ${bindIp}:${port}`);
    this.label = `underlay socket ${bindIp}:${port}`;
  }

  static open(opts: UnderlayOptions): UnderlaySocket {
    const r = native().openUnderlay(opts.bindIp, opts.port, opts.netns);
    if (r.udpFd !== undefined && r.rawFd !== undefined) {
      const u = new UnderlaySocket(r.udpFd, r.rawFd, opts.bindIp, opts.port, opts.innerMtu ?? 1450);
      if (opts.tunnelTap) u.openTunnel(opts.tunnelTap, opts.netns);
      return u;
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

  /** Opens the tunnel TAP, or says in tunnelOff why not: the socket works without it. */
  private openTunnel(name: string, netns: string | undefined): void {
    if (process.env.WASP_NO_TUNNEL_GSO === "1") { this.tunnelOff = "turned off (WASP_NO_TUNNEL_GSO=1)"; return; }
    const r = native().openTunnelTap(name, netns);
    if (r.fd !== undefined && r.mac !== undefined) { this.tunnel = { fd: r.fd, mac: r.mac, name }; return; }
    const code = errnoCode(r.errno ?? 0);
    this.tunnelOff = r.stage === "offload" ? `this kernel has no UDP-tunnel GSO for TAP devices (Linux 6.17+; ${code})`
      : r.stage === "rpfilter" ? "net.ipv4.conf.all.rp_filter is 1 (strict): frames from this node's own address would be dropped"
      : `cannot make tunnel TAP ${name} (${r.stage}: ${code})`;
  }

  /**
   * Receives up to count datagrams: payload (the VXLAN header on) at each slot's data, len,
   * peer = sender IPv4 (host order), FROM_OVERLAY in flags. Returns how many, 0 when none waits.
   * keepWhole: a peer's unsegmented TCP packet with its checksum left to offload stays whole (the
   * engine passes it on as one GSO packet); otherwise it is cut into frames of innerMtu.
   */
  recvBatch(memory: BatchMemory, slotsAddr: number, count: number, keepWhole = false): number {
    const buffer = bufferOf(memory);
    const n = native().recvBatch(this.udpFd, buffer, slotsAddr, count, this.innerMtu, keepWhole);
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
    const buffer = bufferOf(memory);
    const n = native().sendBatch(this.rawFd, buffer, slotsAddr, count, verdictMask, this.tunnel?.fd ?? -1, this.drops);
    this.takeDrops();
    if (n >= 0) return n;
    if (n === -EFAULT) throw slotsOutsideMemory("sendBatch", this.label, buffer, slotsAddr, count);
    throw ioError(`cannot send on ${this.label}`, -n);
  }

  close(): void {
    if (!this.beginClose()) return;
    native().close(this.udpFd);
    native().close(this.rawFd);
    if (this.tunnel) native().close(this.tunnel.fd);
  }
}
