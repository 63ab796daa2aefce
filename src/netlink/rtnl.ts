// An rtnetlink session in one network namespace (the caller's, or a pod's by path): the few
// operations the CNI plugin needs, each one request and its ack, in the order they are called.
// Replaces spawning `ip` (two processes per ADD, ~34 ms of the plugin's time: bench/cni).
import { constants } from "node:os";
import { errnoCode, errnoWords } from "../io/errno.js";
import { native } from "../io/native.js";
import * as m from "./message.js";

const ENODEV = constants.errno.ENODEV;

export class NetlinkError extends Error {
  constructor(readonly what: string, readonly errno: number, kernelSays?: string) {
    super(`${what}: ${describeErrno(errno)}${kernelSays ? ` (${kernelSays})` : ""}`);
  }
}

function describeErrno(e: number): string {
  return `${errnoWords(e)} (${errnoCode(e)})`;
}

export class Rtnl {
  private seq = 1;
  private constructor(private fd: number, readonly where: string) {}

  /** A socket in the namespace at netnsPath, or in the caller's when none is given. */
  static open(netnsPath?: string): Rtnl {
    const r = native().netlinkOpen(netnsPath);
    const where = netnsPath ?? "the node's namespace";
    if (r.fd === undefined) throw new NetlinkError(`cannot open rtnetlink in ${where} (${r.stage})`, r.errno ?? 0);
    return new Rtnl(r.fd, where);
  }

  close(): void {
    if (this.fd >= 0) native().close(this.fd);
    this.fd = -1;
  }

  /** Sends one request; resolves with the answers before the ack, or rejects naming `what`. */
  async request(build: (seq: number) => Buffer, what: string, ok: readonly number[] = []): Promise<Buffer> {
    if (this.fd < 0) throw new NetlinkError(what, constants.errno.EBADF);
    const r = await native().netlinkRequest(this.fd, build(this.seq++));
    if (r.errno !== 0 && !ok.includes(r.errno)) throw new NetlinkError(what, r.errno, r.message);
    return r.replies;
  }

  /** The interface's index, or undefined when there is no such interface. */
  async linkIndex(name: string): Promise<number | undefined> {
    const reply = await this.request((s) => m.getLink(s, name), `cannot look up ${name} in ${this.where}`, [ENODEV]);
    return reply.length ? m.linkIndexOf(reply) : undefined;
  }

  /** The link's drop counters, or undefined when there is no such interface. */
  async linkDrops(name: string): Promise<m.LinkDrops | undefined> {
    const reply = await this.request((s) => m.getLink(s, name), `cannot look up ${name} in ${this.where}`, [ENODEV]);
    return reply.length ? m.linkDropsOf(reply) : undefined;
  }

  async addVeth(v: m.VethSpec): Promise<void> {
    await this.request((s) => m.newVeth(s, v), `cannot create veth ${v.name} <-> ${v.peer.name}`);
  }

  async linkUp(index: number, name: string): Promise<void> {
    await this.request((s) => m.linkUp(s, index), `cannot set ${name} up in ${this.where}`);
  }

  /** Removes the link; true when it was there, false when it was already gone. */
  async delLink(name: string): Promise<boolean> {
    const before = this.seq;
    try {
      await this.request((s) => m.delLink(s, name), `cannot remove ${name} in ${this.where}`);
      return true;
    } catch (e) {
      if (e instanceof NetlinkError && e.errno === ENODEV && this.seq === before + 1) return false;
      throw e;
    }
  }

  async addAddr(index: number, name: string, ip: string, prefix: number, opts: { nodad?: boolean } = {}): Promise<void> {
    await this.request((s) => m.newAddr(s, index, ip, prefix, opts), `cannot add ${ip}/${prefix} to ${name} in ${this.where}`);
  }

  async addRoute(r: m.RouteSpec, name: string): Promise<void> {
    const desc = `${r.dst}/${r.prefix}${r.gateway ? ` via ${r.gateway}` : ""} dev ${name}`;
    await this.request((s) => m.newRoute(s, r), `cannot ${r.replace ? "replace" : "add"} the route ${desc} in ${this.where}`);
  }

  async replaceNeigh(index: number, name: string, ip: string, mac: string): Promise<void> {
    await this.request((s) => m.replaceNeigh(s, index, ip, mac), `cannot set the neighbour ${ip} -> ${mac} on ${name} in ${this.where}`);
  }
}

/** Runs fn with a session that is closed afterwards, whatever happens. */
export async function withRtnl<T>(netnsPath: string | undefined, fn: (nl: Rtnl) => Promise<T>): Promise<T> {
  const nl = Rtnl.open(netnsPath);
  try {
    return await fn(nl);
  } finally {
    nl.close();
  }
}
