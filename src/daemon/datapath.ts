// The batch loop: wasp0 readable -> read a batch straight into the engine's slots -> one process()
// -> write the Tun and Host verdicts back in one batch. Drops are counted by the core.
import { SLOT_DATA, SLOT_FLAGS, SLOT_SIZE, SlotFlag, Verdict } from "../engine/abi.js";
import type { Engine } from "../engine/engine.js";
import type { IoError, TunDevice } from "../io/index.js";

const WRITE_MASK = (1 << Verdict.Tun) | (1 << Verdict.Host);
/** Batches per readiness callback before yielding to the event loop (uv_poll is level-triggered:
 *  what is left is read on the next turn, after timers, reloads and the control socket). */
const BATCHES_PER_TURN = 16;

/** Seconds on a monotonic clock (never 0, which the core may read as "unset"). */
export function nowSec(): number {
  return (1000 + Math.floor(performance.now() / 1000)) >>> 0;
}

export class Datapath {
  /** Packets the kernel refused in writeBatch (full queue, malformed packet). */
  writeDropped = 0;
  lastWriteError = "";
  private running = false;

  constructor(private readonly engine: Engine, private readonly tun: TunDevice,
    private readonly onError: (err: Error) => void) {}

  /** Fills every slot once: data after the headroom and the vnet header, the buffer bounds. */
  private prefill(): void {
    for (let i = 0; i < this.engine.maxBatch; i++) this.engine.setSlot(i, 0, this.tun.vnet ? SlotFlag.VNET : 0);
  }

  /** Resets what the core may have changed in the first n slots (data moves for replies, verdict);
   *  bufStart and bufEnd stay as prefill set them. */
  private reset(n: number): void {
    const u32 = new Uint32Array(this.engine.memory), e = this.engine, vnet = this.tun.vnet;
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
    this.prefill();
    this.running = true;
    this.tun.onReadable((err?: IoError) => {
      if (err) { this.onError(err); return; }
      try {
        this.drain();
      } catch (e) {
        this.onError(e as Error);
      }
    });
  }

  private drain(): void {
    const e = this.engine, tun = this.tun, max = e.maxBatch;
    for (let b = 0; b < BATCHES_PER_TURN && this.running; b++) {
      const n = tun.readBatch(e.exports.memory, e.slots, max);
      if (n === 0) return;
      e.process(n, nowSec());
      tun.writeBatch(e.exports.memory, e.slots, n, WRITE_MASK);
      if (tun.lastDropped) { this.writeDropped += tun.lastDropped; this.lastWriteError = tun.lastDropCode; }
      this.reset(n);
      if (n < max) return;
    }
  }

  stop(): void {
    this.running = false;
    this.tun.stop();
  }
}
