// CNI results and their per-version shapes.
import type { Dns } from "./config.js";
import type { CniVersion } from "./version.js";

export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
}
export interface IpConfig {
  address: string;
  gateway?: string;
  interface?: number;
}
export interface Route {
  dst: string;
  gw?: string;
}
export interface Result {
  cniVersion: string;
  interfaces: Interface[];
  ips: IpConfig[];
  routes: Route[];
  dns: Dns;
}

/**
 * The result in the shape of the requested version: 0.4.0 carries ips[].version ("4"/"6");
 * 1.0.0 dropped it; 1.1.0 added interfaces[].mtu (and more, which wasp does not set).
 */
export function formatResult(r: Result, v: CniVersion): Record<string, unknown> {
  const interfaces = r.interfaces.map((i) => {
    const o: Record<string, unknown> = { name: i.name };
    if (i.mac !== undefined) o.mac = i.mac;
    if (v === "1.1.0" && i.mtu !== undefined) o.mtu = i.mtu;
    if (i.sandbox !== undefined) o.sandbox = i.sandbox;
    return o;
  });
  const ips = r.ips.map((ip) => {
    const o: Record<string, unknown> = {};
    if (v === "0.4.0") o.version = ip.address.includes(":") ? "6" : "4";
    o.address = ip.address;
    if (ip.gateway !== undefined) o.gateway = ip.gateway;
    if (ip.interface !== undefined) o.interface = ip.interface;
    return o;
  });
  return { cniVersion: v, interfaces, ips, routes: r.routes.map((x) => ({ ...x })), dns: { ...r.dns } };
}

/** Reads a prevResult of any supported version into the internal form (unknown fields dropped). */
export function parseResult(raw: unknown): Result | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  const arr = (x: unknown) => (Array.isArray(x) ? (x as Array<Record<string, unknown>>) : []);
  const str = (x: unknown) => (typeof x === "string" ? x : undefined);
  return {
    cniVersion: str(o.cniVersion) ?? "",
    interfaces: arr(o.interfaces).map((i) => ({ name: str(i.name) ?? "", mac: str(i.mac), mtu: typeof i.mtu === "number" ? i.mtu : undefined, sandbox: str(i.sandbox) })),
    ips: arr(o.ips).map((i) => ({ address: str(i.address) ?? "", gateway: str(i.gateway), interface: typeof i.interface === "number" ? i.interface : undefined })),
    routes: arr(o.routes).map((r) => ({ dst: str(r.dst) ?? "", ...(str(r.gw) ? { gw: str(r.gw) } : {}) })),
    dns: typeof o.dns === "object" && o.dns !== null ? (o.dns as Dns) : {},
  };
}

/** ADD after another plugin: keep what came before, append ours (interface indexes shifted). */
export function mergeResults(prev: Result | undefined, ours: Result): Result {
  if (!prev) return ours;
  const shift = prev.interfaces.length;
  const dnsEmpty = (d: Dns) => !d.nameservers?.length && !d.domain && !d.search?.length && !d.options?.length;
  return {
    cniVersion: ours.cniVersion,
    interfaces: [...prev.interfaces, ...ours.interfaces],
    ips: [...prev.ips, ...ours.ips.map((i) => ({ ...i, interface: i.interface === undefined ? undefined : i.interface + shift }))],
    routes: [...prev.routes, ...ours.routes],
    dns: dnsEmpty(ours.dns) ? prev.dns : ours.dns,
  };
}
