// The batch loop: wasp0 (or the VXLAN underlay socket) readable -> read a batch straight into the
// engine's slots -> one process() -> the Tun and Host verdicts written back to wasp0 in one batch,
// the Overlay verdicts sent to their nodes in one batch. Drops are counted by the core.
import { Note, SLOT_DATA, SLOT_FLAGS, SLOT_NOTE, SLOT_SIZE, SLOT_VERDICT, SlotFlag, VNET_HDR_LEN, Verdict } from "../engine/abi.js";
import type { Engine } from "../engine/engine.js";
import type { IoError, TunDevice, UnderlaySocket } from "../io/index.js";

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

  constructor(private readonly engine: Engine, private readonly tun: TunDevice,
    private readonly onError: (err: Error) => void,
    private readonly onNotice: (what: string) => void = () => {}) {
    this.decapGso = tun.vnet && !tun.tap;
  }

  /** Prepares the slots for a read: data after the headroom (and the vnet header for the TUN),
   *  everything the core may have changed cleared; bufStart and bufEnd were set once by setSlot. */
  private reset(n: number, fromTun: boolean): void {
    const u32 = new Uint32Array(this.engine.memory), e = this.engine, vnet = fromTun && this.tun.vnet;
    const flags = vnet ? SlotFlag.VNET : 0;
    for (let i = 0; i < n; i++) {
      const s = (e.slots + i * SLOT_SIZE) >>> 2;
      u32[s + (SLOT_DATA >>> 2)] = e.packetAddr(i, vnet);
      u32[s + 1] = 0;                          // len
      u32[s + (SLOT_FLAGS >>> 2)] = flags;     // flags u16, verdict u8, reason u8
      u32[s + 3] = 0;                          // peer
      u32[s + 6] = 0;                          // service
      u32[s + 7] = 0;                          // note
    }
  }

  start(): void {
    for (let i = 0; i < this.engine.maxBatch; i++) this.engine.setSlot(i, 0);
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
    const b = Buffer.from((mac ?? "00:00:00:00:00:00").replaceAll(":", ""), "hex");
    this.engine.exports.setTunnelOffloads(b.readUInt16BE(0), b.readUInt32BE(2), mac ? 1 : 0, this.decapGso ? 1 : 0);
  }

  private guard(err: IoError | undefined, f: () => void): void {
    if (err) { this.onError(err); return; }
    try { f(); } catch (e) { this.onError(e as Error); }
  }

  private drain(fromTun: boolean): void {
    const e = this.engine, tun = this.tun, max = e.maxBatch, mem = e.exports.memory;
    const batches = Math.max(1, Math.floor(PACKETS_PER_TURN / max));
    for (let b = 0; b < batches && this.running; b++) {
      this.reset(max, fromTun);
      const n = fromTun ? tun.readBatch(mem, e.slots, max) : this.underlay!.recvBatch(mem, e.slots, max, this.decapGso);
      if (n === 0) return;
      e.process(n, nowSec());
      // A decapsulated packet has no virtio_net_hdr; the bytes before it (the inner Ethernet
      // header) become an empty one for the vnet TUN: no offloads pending.
      if (!fromTun && tun.vnet) {
        this.clearVnetHeaders(n);
        // one flow's TCP segments from the tunnel become one GSO packet (the kernel's GRO)
        if (this.coalesce) e.exports.coalesce(n, tun.tap ? ETH_HLEN : 0);
      }
      tun.writeBatch(mem, e.slots, n, TUN_MASK);
      this.noteDrops(tun.lastDropped, tun.lastDropCode);
      // Every packet for another node, GSO segments included, in the order the inner packets
      // came (the core's overlayOut list): a TCP flow's segments must not overtake each other.
      const out = e.exports.overlayOutCount();
      if (this.underlay && out > 0) {
        this.underlay.sendBatch(mem, e.exports.overlayOutAddr(), out, OVERLAY_MASK);
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

  private clearVnetHeaders(n: number): void {
    const m = new Uint8Array(this.engine.memory), v = this.engine.view(), e = this.engine;
    for (let i = 0; i < n; i++) {
      const s = e.slots + i * SLOT_SIZE, verdict = v.getUint8(s + SLOT_VERDICT);
      if (verdict !== Verdict.Tun && verdict !== Verdict.Host) continue;
      // a whole TSO packet from a peer carries the GSO header the core wrote (wholeTsoHeader)
      if (v.getUint32(s + SLOT_NOTE, true) & Note.GSO) continue;
      const data = v.getUint32(s + SLOT_DATA, true);
      m.fill(0, data - VNET_HDR_LEN, data);
    }
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
