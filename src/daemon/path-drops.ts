// Where a packet can be lost on wasp's path outside the engine (whose own drops the core counts by
// reason): the kernel's queues in front of wasp and behind it. The kernel's counters are read once
// a second off the packet path (rtnetlink, getsockopt), never per packet; what wasp's own writes
// lost is counted as they happen.
import { Rtnl } from "../netlink/rtnl.js";
import { native } from "../io/native.js";

/** Each place, as `wasp counters`, status and metrics name it, and what is lost there. */
export const PATH_DROP_PLACES = {
  tun_queue_full: "packets the kernel had for wasp and dropped because wasp0's queue was full: wasp read too slowly (wasp0's tx_dropped)",
  tun_rx_dropped: "packets wasp wrote to wasp0 that the kernel took and then dropped (wasp0's rx_dropped)",
  write_refused: "packets wasp wrote back or sent to another node that the kernel refused (a full queue, a malformed packet; io_uring writes too)",
  underlay_rcvbuf_full: "VXLAN datagrams from other nodes dropped at wasp's underlay socket: its receive buffer was full",
  tunnel_tap_dropped: "encapsulated TSO packets the tunnel TAP dropped (its rx and tx drops)",
} as const;
export type PathDropPlace = keyof typeof PATH_DROP_PLACES;
export type PathDrops = Record<PathDropPlace, number>;

/** What the meter reads: the devices by name, the underlay socket's fd while there is one. */
export interface PathDropSources {
  device: string;
  tunnelTap(): string | undefined;
  underlayFd(): number | undefined;
  /** Counted by the datapath as its writes are refused. */
  writeRefused(): number;
}

export class PathDropMeter {
  private kernel = { tun_queue_full: 0, tun_rx_dropped: 0, underlay_rcvbuf_full: 0, tunnel_tap_dropped: 0 };
  private timer: NodeJS.Timeout | undefined;
  private rtnl: Rtnl | undefined;
  /** Why the kernel's counters cannot be read, '' while they can. */
  unreadable = "";

  constructor(private readonly src: PathDropSources) {}

  /** Reads the kernel's counters now and then once a second. */
  start(): void {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), 1000);
    this.timer.unref();
  }

  async refresh(): Promise<void> {
    try {
      this.rtnl ??= Rtnl.open();
      const tun = await this.rtnl.linkDrops(this.src.device);
      const tapName = this.src.tunnelTap();
      const tap = tapName ? await this.rtnl.linkDrops(tapName) : undefined;
      const fd = this.src.underlayFd();
      const sock = fd === undefined ? 0 : native().socketDrops(fd);
      // a device that is gone keeps its last figures (a counter never goes back)
      if (tun) { this.kernel.tun_queue_full = tun.txDropped; this.kernel.tun_rx_dropped = tun.rxDropped; }
      if (tap) this.kernel.tunnel_tap_dropped = tap.rxDropped + tap.txDropped;
      if (sock >= 0) this.kernel.underlay_rcvbuf_full = sock;
      this.unreadable = "";
    } catch (e) {
      this.unreadable = (e as Error).message;
    }
  }

  drops(): PathDrops {
    return { ...this.kernel, write_refused: this.src.writeRefused() };
  }

  stop(): void {
    clearInterval(this.timer);
    this.rtnl?.close();
    this.rtnl = undefined;
  }
}
