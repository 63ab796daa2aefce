// What a TUN device and the underlay socket share: readiness callbacks from the event loop, and
// the packets the kernel refused in the last batch written or sent (native fills `drops`).
import { errnoCode, type IoError } from "./errno.js";
import { DROP_FIELDS, DropField } from "./native.js";
import { Readiness } from "./readiness.js";

export abstract class BatchDevice {
  /** Packets refused by the kernel in the last batch written or sent (full queue, malformed packet, no route). */
  lastDropped = 0;
  /** The errno code of the last refused packet, '' when none. */
  lastDropCode = "";
  /** Tunnel frames the kernel refused as malformed in the last batch (the engine should stop
   *  making them: the host turns tunnel GSO off). */
  lastTunnelRefused = 0;
  protected readonly drops = new Int32Array(DROP_FIELDS);
  protected closed = false;
  private readonly readiness: Readiness;

  protected constructor(fd: number, label: string) {
    this.readiness = new Readiness(fd, label);
  }

  /** Reads what native wrote into `drops` for the batch just written. */
  protected takeDrops(): void {
    const d = this.drops;
    this.lastDropped = d[DropField.Dropped]!;
    this.lastTunnelRefused = d[DropField.TunnelRefused]!;
    this.lastDropCode = this.lastDropped ? errnoCode(d[DropField.LastErrno]!) : "";
  }

  /** Calls cb from the event loop whenever packets wait (level-triggered: drain them in cb). */
  onReadable(cb: (err?: IoError) => void): void { this.readiness.on(cb); }

  /** Stops the readiness callbacks; onReadable starts them again. */
  stop(): void { this.readiness.stop(); }

  /** Stops polling; true the first time (the caller then closes its fds). */
  protected beginClose(): boolean {
    if (this.closed) return false;
    this.closed = true;
    this.readiness.close();
    return true;
  }
}
