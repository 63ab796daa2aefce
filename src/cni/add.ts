// ADD in routed mode: a veth pair, the pod end as CNI_IFNAME with a /32 (/128), a link-local
// gateway answered by the host end, and a host route per pod address. Nothing is left half-made:
// every step pushes its undo, and a failure runs the undo list in reverse.
import { closeSync, openSync } from "node:fs";
import { SysctlError, writeSysctl } from "../io/sysctl.js";
import { allocate, PoolExhaustedError, StoreError } from "../ipam/index.js";
import { Code, CniError } from "./errors.js";
import { GW4, GW6, openStore, owner, pools, type Ctx } from "./context.js";
import { NetlinkError, withRtnl, type Rtnl } from "../netlink/rtnl.js";
import { hostRouteDevices, IpError, localLinks } from "./ip.js";
import { hostVethName, randomMac } from "./names.js";
import { mergeResults, parseResult, type Result } from "./result.js";

export async function cmdAdd(ctx: Ctx): Promise<Result> {
  const { env, conf } = ctx;
  const host = hostVethName(env.containerId, env.ifname);
  const store = await openStore(conf);
  const undo: Array<() => Promise<unknown>> = [];
  try {
    const ips: Array<{ ip: string; v6: boolean }> = [];
    undo.push(() => store.release(owner(env)));
    for (const [range, pool] of pools(conf).entries()) {
      const a = await allocate(store, pool, owner(env), range);
      ips.push({ ip: a.ip, v6: pool.family === 6 });
    }
    failpoint("after-claim");
    const v4 = ips.filter((x) => !x.v6).map((x) => x.ip);
    const v6 = ips.filter((x) => x.v6).map((x) => x.ip);
    // The store just gave us the address, so a host route to it through another live device is
    // another pod's, handed out by another IPAM store (two networks on one podCIDR): replacing it
    // would cut that pod off, and deleting this pod later would take its route for good.
    for (const ip of [...v4, ...v6]) {
      const other = hostRouteDevices(ip).find((d) => d !== host);
      if (other) {
        throw new CniError(Code.Internal, `${ip} is already routed to ${other}, another pod's veth: ${store.dir} handed out an address another IPAM store had given`,
          "two wasp networks (conflists with another name or dataDir) share this podCIDR: give them one name and dataDir, or disjoint podCIDRs (wasp doctor names them)");
      }
    }

    const hostMac = randomMac(), podMac = randomMac();
    const podNs = openSync(env.netns, "r");
    undo.push(() => withRtnl(undefined, (nl) => nl.delLink(host)));
    try {
      await withRtnl(undefined, async (nl) => {
        // A veth of this attachment can only be left over from an ADD that was killed: remove it
        // (asking the kernel by name costs the same however many links the node has).
        await nl.delLink(host);
        // The peer is created straight inside the pod's namespace with its final name and MTU.
        await nl.addVeth({ name: host, mtu: conf.mtu, mac: hostMac, peer: { name: env.ifname, mtu: conf.mtu, mac: podMac, netnsFd: podNs } });
        const i = await linkIndex(nl, host);
        for (const _ of v6.slice(0, 1)) await nl.addAddr(i, host, GW6, 64, { nodad: true });
        await nl.linkUp(i, host);
        for (const ip of v4) await nl.addRoute({ dst: ip, prefix: 32, oif: i, scope: "link", replace: true }, host);
        for (const ip of v6) await nl.addRoute({ dst: ip, prefix: 128, oif: i, replace: true }, host);
      });
    } finally {
      closeSync(podNs);
    }

    // proxy_arp: the host end answers ARP for 169.254.1.1 (for any address it routes elsewhere);
    // proxy_delay 0: answer at once instead of after a random delay of up to 0.8 s.
    sysctl(`ipv4/conf/${host}/proxy_arp`, "1");
    sysctl(`ipv4/neigh/${host}/proxy_delay`, "0");
    // rp_filter 0: the node's policy routing sends a pod's traffic into wasp0, not back out of this
    // veth, so strict reverse-path filtering (a distribution default of 1) would drop the pod's packets.
    sysctl(`ipv4/conf/${host}/rp_filter`, "0");
    failpoint("after-veth");

    await withRtnl(env.netns, async (nl) => {
      const i = await linkIndex(nl, env.ifname);
      for (const ip of v4) await nl.addAddr(i, env.ifname, ip, 32);
      for (const ip of v6) await nl.addAddr(i, env.ifname, ip, 128, { nodad: true });
      await nl.linkUp(i, env.ifname);
      if (v4.length) {
        await nl.addRoute({ dst: GW4, prefix: 32, oif: i, scope: "link" }, env.ifname);
        await nl.addRoute({ dst: "0.0.0.0", prefix: 0, gateway: GW4, oif: i, onlink: true }, env.ifname);
        // The gateway's MAC is known: a permanent entry spares the first packet an ARP round trip
        // and does not depend on the node having a route that makes proxy_arp answer.
        await nl.replaceNeigh(i, env.ifname, GW4, hostMac);
      }
      if (v6.length) {
        await nl.addRoute({ dst: "::", prefix: 0, gateway: GW6, oif: i, onlink: true }, env.ifname);
        await nl.replaceNeigh(i, env.ifname, GW6, hostMac);
      }
    });
    failpoint("after-pod");

    const ours: Result = {
      cniVersion: ctx.version,
      interfaces: [
        { name: host, mac: hostMac, mtu: conf.mtu },
        { name: env.ifname, mac: podMac, mtu: conf.mtu, sandbox: env.netns },
      ],
      ips: [
        ...v4.map((ip) => ({ address: `${ip}/32`, gateway: GW4, interface: 1 })),
        ...v6.map((ip) => ({ address: `${ip}/128`, gateway: GW6, interface: 1 })),
      ],
      routes: [
        ...(v4.length ? [{ dst: "0.0.0.0/0", gw: GW4 }] : []),
        ...(v6.length ? [{ dst: "::/0", gw: GW6 }] : []),
      ],
      dns: conf.dns,
    };
    return mergeResults(conf.prevResult ? parseResult(conf.prevResult) : undefined, ours);
  } catch (e) {
    for (const u of undo.reverse()) {
      try { await u(); } catch { /* best effort: GC removes what is left */ }
    }
    throw toCniError(e);
  }
}

/**
 * Crash testing: WASP_CNI_FAILPOINT=<name> makes the plugin kill itself with SIGKILL at that step,
 * exactly as `kill -9` would, so tests can prove that every intermediate state is cleaned up.
 */
function failpoint(name: string): void {
  if (process.env.WASP_CNI_FAILPOINT === name) process.kill(process.pid, "SIGKILL");
}

async function linkIndex(nl: Rtnl, name: string): Promise<number> {
  const i = await nl.linkIndex(name);
  if (i === undefined) throw new NetlinkError(`${name} vanished right after it was made in ${nl.where}`, 19);
  return i;
}

function sysctl(key: string, value: string): void {
  try {
    writeSysctl(`net/${key}`, value);
  } catch (e) {
    // an IpError carries the CNI error code of a failed node change
    if (e instanceof SysctlError) throw new IpError(e.what, e.why);
    throw e;
  }
}

export function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof PoolExhaustedError) return new CniError(Code.TryAgainLater, e.message, "every pod address is in use; it frees up when pods are deleted (or run GC)");
  if (e instanceof StoreError) return new CniError(e.retryable ? Code.TryAgainLater : Code.Io, e.message);
  if (e instanceof IpError || e instanceof NetlinkError) return new CniError(Code.Internal, e.message);
  const err = e as NodeJS.ErrnoException;
  if (err.code && err.syscall) return new CniError(Code.Io, `${err.syscall} ${err.path ?? ""}: ${err.message}`.replace(/ {2}/, " "));
  return new CniError(Code.Internal, err.message ?? String(e));
}
