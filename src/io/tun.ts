// A TUN/TAP device read and written in batches straight into wasm memory (see native/).
import { SlotFlag } from "../engine/abi.js";
import { EAGAIN, EFAULT, EINVAL, IoError, errnoCode, ioError, NEED_ROOT } from "./errno.js";
import { bufferOf, slotsOutsideMemory, type BatchMemory } from "./memory.js";
import { BatchDevice } from "./batch-device.js";
import { native } from "./native.js";

export interface TunOptions {
  /** Interface name, at most 15 bytes (IFNAMSIZ). */
  name: string;
  /** Ethernet frames (IFF_TAP) instead of IP packets. */
  tap?: boolean;
  /** IFF_VNET_HDR with checksum and TSO offload: GSO super-packets up to 64 KiB, each after a
   *  10-byte virtio_net_hdr at data - 10. */
  vnetHdr?: boolean;
  /** IFF_MULTI_QUEUE: open the same name again for one queue per worker. */
  multiQueue?: boolean;
  /** A network namespace file (/var/run/netns/NAME); the device is created there. */
  netns?: string;
  /** Batch the reads and writes through io_uring (one io_uring_enter per batch) instead of a
   *  read()/write() per packet. */
  ioUring?: boolean;
  /** true: the device outlives this process (its routes stay, its packets are dropped while nobody
   *  reads it) and a later open attaches to it; false: it goes with the last fd again. */
  persist?: boolean;
}

function openFix(stage: string, code: string, opts: TunOptions): string {
  if (code === "EPERM" || code === "EACCES") return NEED_ROOT;
  if (stage === "open" && code === "ENOENT") return "Load the module: modprobe tun";
  if (stage === "setiff" && code === "EBUSY") {
    return "Another process holds it; stop it or pick another name (or open with multiQueue)";
  }
  if (stage === "setiff" && code === "EINVAL") {
    return `The name is not a valid interface name, or ${opts.name} exists with other flags (TUN/TAP, ` +
      `vnet header, multi-queue); delete it (ip link del ${opts.name}) or pick another name`;
  }
  if (stage === "vnethdr" || stage === "offload") return "This kernel lacks TUN offloads; open without vnetHdr";
  return "";
}

export class TunDevice extends BatchDevice {
  private readonly readFlags: number;

  private constructor(readonly name: string, readonly fd: number, readonly vnet: boolean,
    readonly tap: boolean, readonly ioUring: boolean) {
    super(fd, `device ${name}`);
    this.readFlags = (vnet ? SlotFlag.VNET : 0) | (tap ? SlotFlag.ETHERNET : 0);
  }

  static open(opts: TunOptions): TunDevice {
    const kind = opts.tap ? "TAP" : "TUN";
    // The kernel would silently cut a longer name (IFNAMSIZ 16 with the NUL): refuse it instead.
    const bytes = Buffer.byteLength(opts.name);
    if (bytes === 0 || bytes > 15 || /[\s/:]/.test(opts.name)) {
      throw new IoError(`cannot create ${kind} device "${opts.name}": invalid argument (EINVAL). An ` +
        "interface name is 1-15 bytes without spaces, '/' or ':'", EINVAL);
    }
    if (opts.ioUring) {
      const u = native().probeUring();
      if (u < 0) {
        throw ioError(`cannot use io_uring for ${kind} device ${opts.name}`, -u,
          "Allow it (sysctl kernel.io_uring_disabled=0) or open without ioUring");
      }
    }
    const r = native().openTun(opts.name, !!opts.tap, !!opts.vnetHdr, !!opts.multiQueue, opts.netns, opts.persist);
    if (r.fd !== undefined) return new TunDevice(opts.name, r.fd, !!opts.vnetHdr, !!opts.tap, !!opts.ioUring);
    const errno = r.errno ?? 0, stage = r.stage ?? "", code = errnoCode(errno);
    if (stage === "netns") {
      const ns = opts.netns ?? "";
      const hint = code === "ENOENT"
        ? `Create it (ip netns add ${ns.split("/").pop()}) or fix the path`
        : openFix(stage, code, opts);
      throw ioError(`cannot enter network namespace ${ns}`, errno, hint);
    }
    const what = stage === "open" ? "cannot open /dev/net/tun"
      : stage === "setiff" ? `cannot create ${kind} device ${opts.name}`
      : stage === "vnethdr" || stage === "offload" ? `cannot enable vnet header offloads on ${kind} device ${opts.name}`
      : stage === "persist" ? `cannot make ${kind} device ${opts.name} persistent (TUNSETPERSIST)`
      : `cannot open ${kind} device ${opts.name} (${stage})`;
    throw ioError(what, errno, openFix(stage, code, opts));
  }

  /**
   * Reads up to count packets into the slots at slotsAddr (data, bufStart, bufEnd filled by the
   * caller); sets len, and VNET (vnetHdr) and ETHERNET (TAP) in flags. Returns how many were
   * read, 0 when none waits.
   */
  readBatch(memory: BatchMemory, slotsAddr: number, count: number): number {
    const buffer = bufferOf(memory);
    const n = native().readBatch(this.fd, buffer, slotsAddr, count, this.vnet, this.ioUring, this.readFlags);
    if (n >= 0) return n;
    if (n === -EAGAIN) return 0;
    if (n === -EFAULT) throw slotsOutsideMemory("readBatch", `device ${this.name}`, buffer, slotsAddr, count);
    throw ioError(`cannot read from device ${this.name}`, -n,
      "The device was deleted or the fd closed; open it again");
  }

  /** Writes every slot whose verdict bit is set in verdictMask; returns how many the kernel took. */
  writeBatch(memory: BatchMemory, slotsAddr: number, count: number, verdictMask: number): number {
    const buffer = bufferOf(memory);
    const n = native().writeBatch(this.fd, buffer, slotsAddr, count, verdictMask, this.vnet, this.ioUring, this.drops);
    this.takeDrops();
    if (n >= 0) return n;
    if (n === -EFAULT) throw slotsOutsideMemory("writeBatch", `device ${this.name}`, buffer, slotsAddr, count);
    throw ioError(`cannot write to device ${this.name}`, -n, "The fd was closed; open the device again");
  }

  /** Stops polling and closes the fd; the kernel deletes a non-persistent device with its last fd. */
  close(): void {
    if (this.beginClose()) native().close(this.fd);
  }
}
