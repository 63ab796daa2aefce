// CHECK: the pod's interface, addresses and routes, the host veth and route, and the IPAM record
// must still be what ADD reported in prevResult.
import { existsSync } from "node:fs";
import { Code, CniError } from "./errors.js";
import { GW4, GW6, openStore, owner, type Ctx } from "./context.js";
import { ipJson, IpError, SELF, type Ns } from "./ip.js";
import { hostVethName } from "./names.js";
import { parseResult } from "./result.js";
import { toCniError } from "./add.js";

interface LinkJson { ifname: string; address?: string; mtu?: number; flags?: string[]; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }
interface RouteJson { dst: string; gateway?: string; dev?: string; scope?: string; flags?: string[] }

export async function cmdCheck(ctx: Ctx): Promise<void> {
  const { env, conf } = ctx;
  const prev = parseResult(conf.prevResult);
  if (!prev) throw new CniError(Code.InvalidConfig, "CHECK needs prevResult (the result of the ADD)", "the runtime passes the cached ADD result as prevResult");
  const idx = prev.interfaces.findIndex((i) => i.name === env.ifname && (i.sandbox === undefined || i.sandbox === env.netns));
  if (idx < 0) throw new CniError(Code.CheckMismatch, `prevResult lists no interface ${env.ifname} in sandbox ${env.netns}`);
  const want = prev.interfaces[idx]!;
  const ips = prev.ips.filter((i) => i.interface === idx).map((i) => i.address);
  if (!ips.length) throw new CniError(Code.CheckMismatch, `prevResult lists no address on ${env.ifname} (interface index ${idx})`);
  if (!existsSync(env.netns)) throw new CniError(Code.UnknownContainer, `CNI_NETNS ${env.netns} does not exist`);

  const pod: Ns = { kind: "path", path: env.netns };
  const host = hostVethName(env.containerId, env.ifname);
  const wrong: string[] = [];
  try {
    const [podLinks, podRoutes4, podRoutes6, hostLinks, hostRoutes, records] = await Promise.all([
      ipJson<LinkJson[]>(pod, ["addr", "show", "dev", env.ifname], `pod interface ${env.ifname}`).catch(() => []),
      ipJson<RouteJson[]>(pod, ["-4", "route", "show"], "pod IPv4 routes"),
      ipJson<RouteJson[]>(pod, ["-6", "route", "show"], "pod IPv6 routes"),
      ipJson<LinkJson[]>(SELF, ["link", "show", "dev", host], `host veth ${host}`).catch(() => []),
      Promise.all([["-4"], ["-6"]].map((f) => ipJson<RouteJson[]>(SELF, [...f, "route", "show", "dev", host], `routes via ${host}`).catch(() => []))).then((r) => r.flat()),
      // only the records of the addresses CHECK looks at, not every pod's
      openStore(conf).then((s) => Promise.all(ips.map((a) => s.recordOf(a.split("/")[0]!)))),
    ]);
    const link = podLinks[0];
    if (!link) {
      wrong.push(`the pod has no interface ${env.ifname}`);
    } else {
      if (want.mac && link.address?.toLowerCase() !== want.mac.toLowerCase()) wrong.push(`${env.ifname} has MAC ${link.address}, prevResult says ${want.mac}`);
      if (!link.flags?.includes("UP")) wrong.push(`${env.ifname} is down`);
      if (link.mtu !== conf.mtu) wrong.push(`${env.ifname} has MTU ${link.mtu}, the config says ${conf.mtu}`);
      const have = new Set((link.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
      for (const a of ips) if (!have.has(a)) wrong.push(`${env.ifname} lacks address ${a}`);
    }
    const v4 = ips.filter((a) => !a.includes(":")), v6 = ips.filter((a) => a.includes(":"));
    if (v4.length) {
      if (!podRoutes4.some((r) => r.dst === "default" && r.gateway === GW4 && r.dev === env.ifname)) wrong.push(`the pod has no route default via ${GW4} dev ${env.ifname}`);
      if (!podRoutes4.some((r) => r.dst === GW4 && r.dev === env.ifname)) wrong.push(`the pod has no route ${GW4} dev ${env.ifname} scope link`);
    }
    if (v6.length && !podRoutes6.some((r) => r.dst === "default" && r.gateway === GW6 && r.dev === env.ifname)) {
      wrong.push(`the pod has no route default via ${GW6} dev ${env.ifname}`);
    }
    const hostLink = hostLinks[0];
    if (!hostLink) wrong.push(`the host veth ${host} is missing`);
    else if (!hostLink.flags?.includes("UP")) wrong.push(`the host veth ${host} is down`);
    const hostDsts = new Set(hostRoutes.map((r) => r.dst));
    for (const a of ips) {
      const bare = a.split("/")[0]!;
      if (!hostDsts.has(bare) && !hostDsts.has(a)) wrong.push(`the node has no route ${a} dev ${host}`);
      const rec = records[ips.indexOf(a)];
      if (!rec || rec.containerId !== owner(env).containerId || rec.ifname !== env.ifname) wrong.push(`IPAM holds no record of ${bare} for ${env.containerId}/${env.ifname}`);
    }
  } catch (e) {
    throw e instanceof IpError ? new CniError(Code.Internal, e.message) : toCniError(e);
  }
  if (wrong.length) throw new CniError(Code.CheckMismatch, `CHECK failed: ${wrong.join("; ")}`);
}
