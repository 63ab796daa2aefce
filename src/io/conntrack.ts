// The kernel's connection tracking over ctnetlink (native/src/conntrack.cc): offload mode hands it
// the engine's per-flow NAT bindings, a batch of requests per sendmsg.
import { errnoCode, ioError, NEED_ROOT } from "./errno.js";
import { native } from "./native.js";

export class ConntrackSocket {
  private closed = false;
  private constructor(readonly fd: number, readonly where: string) {}

  /** A NETLINK_NETFILTER socket in the namespace at netns (the caller's when absent). */
  static open(netns?: string): ConntrackSocket {
    const r = native().ctOpen(netns);
    const where = netns ?? "this namespace";
    if (r.fd !== undefined) return new ConntrackSocket(r.fd, where);
    const code = errnoCode(r.errno ?? 0);
    const fix = code === "EPERM" ? NEED_ROOT
      : code === "EPROTONOSUPPORT" ? "The kernel lacks ctnetlink: modprobe nf_conntrack_netlink" : "";
    throw ioError(`cannot open ctnetlink in ${where} (${r.stage})`, r.errno ?? 0, fix);
  }

  /** Sends the requests in buffer[offset, offset + length) (seq 1..results.length) in one sendmsg
   *  and fills results with each request's errno, or 0 (the kernel handles them inside sendmsg, so
   *  a request it did not answer went in: only NLM_F_ACK asks for an answer to success).
   *  Returns how many were answered; throws when the send itself failed. */
  transact(buffer: ArrayBuffer, offset: number, length: number, results: Int32Array): number {
    const n = native().ctTransact(this.fd, buffer, offset, length, results);
    if (n < 0) throw ioError(`cannot send ${results.length} conntrack requests in ${this.where}`, -n);
    return n;
  }

  /** Sends requests built by the host (src/netlink/conntrack.ts, seq 1..n in order) and returns
   *  each one's answer: 0 or the kernel's errno. */
  send(messages: Buffer[]): Int32Array {
    const all = Buffer.concat(messages), results = new Int32Array(messages.length);
    if (messages.length) this.transact(all.buffer, all.byteOffset, all.length, results);
    return results;
  }

  /** One request whose answers come back as messages until NLMSG_DONE (a dump), read off the JS
   *  thread; use a socket of its own, so no batch's acks land in between. */
  async dump(request: Buffer): Promise<Buffer> {
    const r = await native().netlinkRequest(this.fd, request);
    if (r.errno) throw ioError(`conntrack dump in ${this.where}`, r.errno);
    return r.replies;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native().close(this.fd);
  }
}
