// Readiness of one fd through the addon's uv_poll: the event loop calls back when data waits
// (level-triggered), so the batch loop never blocks and never busy-polls. Shared by the TUN/TAP
// device and the underlay socket.
import { IoError, ioError } from "./errno.js";
import { native, type NativePoller } from "./native.js";

export class Readiness {
  private poller: NativePoller | undefined;
  private readable: (err?: IoError) => void = () => undefined;

  /** label names the fd in errors, e.g. "device wasp0". */
  constructor(private readonly fd: number, private readonly label: string) {}

  /** Calls cb whenever data waits; a later call replaces the callback. */
  on(cb: (err?: IoError) => void): void {
    this.readable = cb;
    this.poller ??= new (native().Poller)(this.fd, (status) => {
      if (status < 0) this.readable(ioError(`cannot poll ${this.label}`, -status));
      else this.readable();
    });
    const r = this.poller.start();
    if (r < 0) throw ioError(`cannot poll ${this.label}`, -r);
  }

  /** Stops the callbacks; on() starts them again. */
  stop(): void { this.poller?.stop(); }

  /** Stops for good (before the fd is closed). */
  close(): void {
    this.poller?.close();
    this.poller = undefined;
  }
}
