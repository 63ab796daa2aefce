// The batch loop: wasp0 (or the VXLAN underlay socket) readable -> read a batch straight into the
// engine's slots -> one process() -> the Tun and Host verdicts written back to wasp0 in one batch,
// the Overlay verdicts sent to their nodes in one batch. Drops are counted by the core.
import { Verdict } from "../engine/abi.js";
import type { Engine } from "../engine/engine.js";
import type { ConntrackSocket, IoError, TunDevice, UnderlaySocket } from "../io/index.js";

const ETH_HLEN = 14;
const TUN_MASK = (1 << Verdict.Tun) | (1 << Verdict.Host);
const OVERLAY_MASK = 1 << Verdict.Overlay;
/** Packets per readiness callback before yielding to the event loop (uv_poll is level-triggered:
 *  what is left is read on the next turn, after timers, reloads and the control socket); whole
 *  batches, at least one. */
const PACKETS_PER_TURN = 1024;

/** Seconds on a monotonic clock (never 0, which the core may read as "unset"). */
export function nowSec(): number {
  return (1000 + Math.floor(performance.now() / 1000)) >>> 0;
}

export class Datapath {
  /** Packets the kernel refused in writeBatch / sendBatch (full queue, malformed packet, no route). */
  writeDropped = 0;
  lastWriteError = "";
  /** Why tunnel GSO was turned off while running ('' while it was not). */
  tunnelOff = "";
  private running = false;
  private underlay: UnderlaySocket | undefined;
  /** Coalesce decapsulated TCP segments into GSO writes (WASP_NO_GRO=1 turns it off, to compare). */
  private readonly coalesce = process.env.WASP_NO_GRO !== "1";

  /** A peer's whole TSO packet is passed on as one GSO packet (a vnet TUN, not TAP mode). */
  private readonly decapGso: boolean;

  /** Offload mode: new flows' NAT bindings go to the kernel over this socket before a batch is written back. */
  private readonly ct: ConntrackSocket | undefined;
  /** Offload mode: batches of requests the kernel could not take at all (the send failed). */
  offloadSendFailed = 0;
  lastOffloadError = "";

  constructor(private readonly engine: Engine, private readonly tun: TunDevice,
    private readonly onError: (err: Error) => void,
    private readonly onNotice: (what: string) => void = () => {}, ct?: ConntrackSocket) {
    this.decapGso = tun.vnet && !tun.tap;
    this.ct = ct;
  }

  start(): void {
    this.engine.initSlots();
    this.running = true;
    this.tun.onReadable((err?: IoError) => this.guard(err, () => this.drain(true)));
  }

  /** Also carries VXLAN: decapsulates what arrives, sends the Overlay verdicts. */
  attachUnderlay(u: UnderlaySocket): void {
    this.underlay = u;
    this.setTunnelOffloads(u.tunnel?.mac);
    u.onReadable((err?: IoError) => this.guard(err, () => this.drain(false)));
  }

  private setTunnelOffloads(mac: string | undefined): void {
    this.engine.setTunnelOffloads(mac, this.decapGso);
  }

  private guard(err: IoError | undefined, f: () => void): void {
    if (err) { this.onError(err); return; }
    try { f(); } catch (e) { this.onError(e as Error); }
  }

  private drain(fromTun: boolean): void {
    const e = this.engine, tun = this.tun, max = e.maxBatch, mem = e.wasmMemory;
    const batches = Math.max(1, Math.floor(PACKETS_PER_TURN / max));
    for (let b = 0; b < batches && this.running; b++) {
      this.engine.prepareRead(max, fromTun && tun.vnet);
      const n = fromTun ? tun.readBatch(mem, e.slots, max) : this.underlay!.recvBatch(mem, e.slots, max, this.decapGso);
      if (n === 0) return;
      e.process(n, nowSec());
      if (this.ct) this.offload();
      // A decapsulated packet has no virtio_net_hdr; the bytes before it (the inner Ethernet
      // header) become an empty one for the vnet TUN: no offloads pending.
      if (!fromTun && tun.vnet) {
        e.clearOutputVnet(n);
        // one flow's TCP segments from the tunnel become one GSO packet (the kernel's GRO)
        if (this.coalesce) e.coalesce(n, tun.tap ? ETH_HLEN : 0);
      }
      tun.writeBatch(mem, e.slots, n, TUN_MASK);
      this.noteDrops(tun.lastDropped, tun.lastDropCode);
      // early fragments of a datagram whose first fragment came in this batch, after it
      const held = e.releasedOut();
      if (held.count > 0) {
        if (tun.vnet) e.clearOutputVnet(held.count, held.addr);
        tun.writeBatch(mem, held.addr, held.count, TUN_MASK);
        this.noteDrops(tun.lastDropped, tun.lastDropCode);
      }
      // Every packet for another node, GSO segments included, in the order the inner packets
      // came (the core's overlayOut list): a TCP flow's segments must not overtake each other.
      const out = e.overlayOut();
      if (this.underlay && out.count > 0) {
        this.underlay.sendBatch(mem, out.addr, out.count, OVERLAY_MASK);
        this.noteDrops(this.underlay.lastDropped, this.underlay.lastDropCode);
        // The kernel refused the tunnel frames themselves (not a full queue): cut TSO packets
        // again from now on; TCP resends what was lost.
        if (this.underlay.lastTunnelRefused > 0 && this.underlay.tunnel && !this.tunnelOff) {
          this.setTunnelOffloads(undefined);
          this.tunnelOff = `the kernel refused UDP-tunnel GSO frames on ${this.underlay.tunnel.name} (${this.underlay.lastDropCode})`;
          this.onNotice(`${this.tunnelOff}: TSO packets for other nodes are cut by the engine again`);
        }
      }
      if (n < max) return;
    }
    // The turn's batches are used up: what the socket holds makes it readable again, but segments
    // of a datagram already read (UDP GRO) would wait for the next datagram: drain them soon.
    if (!fromTun && this.running && this.underlay?.hasPending()) setImmediate(() => this.guard(undefined, () => { if (this.running) this.drain(false); }));
  }

  /** Offload mode: the batch's ctnetlink requests go to the kernel (one sendmsg, every ack read)
   *  before the batch is written back, so its packets meet their new conntrack entries. */
  private offload(): void {
    const e = this.engine, req = e.offloadRequests();
    if (req.count === 0) return;
    const results = e.offloadResults(req.count);
    try {
      this.ct!.transact(e.memory, req.addr, req.bytes, results);
    } catch (err) {
      // nothing went in: every flow of the batch is refused (its packet dropped; the client retries)
      results.fill(5);   // EIO
      this.offloadSendFailed++;
      this.lastOffloadError = (err as Error).message;
    }
    e.finishOffload();
  }

  private noteDrops(n: number, code: string): void {
    if (n) { this.writeDropped += n; this.lastWriteError = code; }
  }

  stop(): void {
    this.running = false;
    this.tun.stop();
    this.underlay?.stop();
  }
}
