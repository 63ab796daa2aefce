// `wasp doctor`: checks this node (the network namespace it runs in) for what breaks pod networking,
// each finding with its fix. Exit 1 when a check fails. Every path it reads can be pointed elsewhere
// (--ipam-dir, --cni-conf-dir, --dev-tun, --proc-sys), so tests check a namespace of their own;
// without --cni-conf-dir it reads the conflist dirs the runtimes are told to read (runtimeConfDirs),
// without --ipam-dir it finds the IPAM stores from the wasp conflists and from the networks the
// running daemon served. Its own probe of the datapath is a TCP connection to a service, which the
// engine passes both ways: it adds no drop to the daemon's counters.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { connect } from "node:net";
import { readSysctl } from "../io/sysctl.js";
import { ConntrackSocket } from "../io/conntrack.js";
import { join } from "node:path";
import { DEFAULT_DATA_DIR, strictProblems } from "../cni/config.js";
import { readFallbacks } from "../cni/fallback.js";
import type { Config } from "../config/index.js";
import { cidrsOverlap, parseCidr, parseIp, type Cidr } from "../model/index.js";
import { VXLAN_OVERHEAD } from "../model/vxlan.js";
import { CliError, EXIT, request } from "./client.js";
import { plural, printJson, table } from "./format.js";

export type Level = "ok" | "warn" | "fail" | "skip";
export interface Finding { check: string; level: Level; detail: string; fix?: string }

/** The daemon's vxlan device in offload mode (src/daemon/offload-net.ts). */
const OFFLOAD_VXLAN = "waspvx";

const DEVICE = "wasp0";

interface Env {
  socket: string; configPath?: string;
  /** Named on the command line; else found (ipamDirs, confDirs in runDoctor). */
  ipamDir?: string; cniConfDir?: string;
  devTun: string; procSys: string;
}

export const DEFAULT_CNI_CONF_DIR = "/etc/cni/net.d";
/** Where dist/wasp asks when neither WASP_CNI_SOCKET nor the conflist's cniSocket says (native/front/wasp-front.c). */
export const DEFAULT_CNI_SOCKET = "/run/wasp/cni.sock";

/** A wasp plugin entry of a network config file, with what the runtime adds (name, cniVersion). */
export interface WaspNetwork {
  file: string; name: string; podCIDR?: string; podCIDRv6?: string; dataDir: string; cniSocket?: string;
  mtu: number; underlayMTU: number; entry: Record<string, unknown>;
}
/** A network the daemon answered calls for (its status: cni.networks). */
interface Served { name: string; dataDir: string; podCIDR: string; podCIDRv6?: string; cniSocket?: string }

/** Every wasp plugin entry of the .conflist/.conf/.json files in `dirs`, in the order a runtime reads them. */
/** The conflist dirs this node's runtimes are told to read, /etc/cni/net.d first: podman's
 *  network_config_dir ($CONTAINERS_CONF, /etc/containers/containers.conf) and containerd's CRI conf_dir
 *  (/etc/containerd/config.toml). A CNI call does not say which file its config came from, so the
 *  daemon cannot tell doctor; the runtimes' own configs can. */
export function runtimeConfDirs(env: NodeJS.ProcessEnv = process.env, read = (f: string) => readFileSync(f, "utf8")): string[] {
  const dirs = [DEFAULT_CNI_CONF_DIR];
  const setting = (file: string | undefined, key: string) => {
    if (!file) return;
    let text = "";
    try { text = read(file); } catch { return; /* no such runtime here */ }
    const m = new RegExp(`^[ \t]*${key}[ \t]*=[ \t]*"([^"]+)"`, "m").exec(text);
    if (m) dirs.push(m[1]!.replace(/(.)\/+$/, "$1"));
  };
  setting(env.CONTAINERS_CONF, "network_config_dir");
  setting("/etc/containers/containers.conf", "network_config_dir");
  setting("/etc/containerd/config.toml", "conf_dir");
  return [...new Set(dirs)];
}

export function waspNetworks(dirs: readonly string[]): WaspNetwork[] {
  const out: WaspNetwork[] = [];
  for (const dir of dirs) {
    let files: string[];
    try { files = readdirSync(dir).filter((f) => /\.(conflist|conf|json)$/.test(f)).sort(); } catch { continue; }
    for (const f of files) {
      let j: any;
      try { j = JSON.parse(readFileSync(join(dir, f), "utf8")); } catch { continue; /* not JSON: not ours to judge */ }
      const plugins: any[] = Array.isArray(j?.plugins) ? j.plugins : [j];
      for (const w of plugins.filter((p) => p?.type === "wasp")) {
        const underlayMTU = typeof w.underlayMTU === "number" ? w.underlayMTU : 1500;
        out.push({
          file: join(dir, f), name: String(w.name ?? j.name ?? ""), podCIDR: typeof w.podCIDR === "string" ? w.podCIDR : undefined,
          ...(typeof w.podCIDRv6 === "string" ? { podCIDRv6: w.podCIDRv6 } : {}),
          dataDir: typeof w.dataDir === "string" ? w.dataDir : DEFAULT_DATA_DIR, ...(typeof w.cniSocket === "string" ? { cniSocket: w.cniSocket } : {}),
          mtu: typeof w.mtu === "number" ? w.mtu : underlayMTU - VXLAN_OVERHEAD, underlayMTU, entry: w as Record<string, unknown>,
        });
      }
    }
  }
  return out;
}

function sh(cmd: string, args: readonly string[]): { ok: boolean; out: string; err: string } {
  try {
    return { ok: true, out: execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 }), err: "" };
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string; code?: string; message: string };
    return { ok: false, out: x.stdout ?? "", err: x.code === "ENOENT" ? `${cmd} is not installed` : (x.stderr ?? x.message).trim() };
  }
}

function readSys(env: Env, key: string): string | undefined {
  return readSysctl(key, env.procSys);
}

interface Link { ifname: string; mtu: number; operstate: string; flags: string[]; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }
function links(): Link[] {
  const r = sh("ip", ["-j", "addr", "show"]);
  if (!r.ok) return [];
  try { return JSON.parse(r.out) as Link[]; } catch { return []; }
}

// ── the checks ─────────────────────────────────────────────────────────────────────────────

function checkForwarding(env: Env): Finding {
  const v = readSys(env, "net.ipv4.ip_forward");
  if (v === undefined) return { check: "ip forwarding", level: "skip", detail: `cannot read ${join(env.procSys, "net/ipv4/ip_forward")}` };
  if (v === "1") return { check: "ip forwarding", level: "ok", detail: "net.ipv4.ip_forward = 1" };
  return {
    check: "ip forwarding", level: "fail", detail: `net.ipv4.ip_forward = ${v}: the node drops every packet between pods, wasp0 and the underlay`,
    fix: "sysctl -w net.ipv4.ip_forward=1 (and net.ipv4.ip_forward = 1 in /etc/sysctl.d/ to keep it; the daemon sets it at start)",
  };
}

function checkRpFilter(env: Env, ls: Link[]): Finding {
  // The kernel uses max(conf.all, conf.DEV): strict (1) on wasp0 drops what the engine writes back,
  // whose source (a pod or a client) is routed through a veth or the underlay, not wasp0.
  const all = readSys(env, "net.ipv4.conf.all.rp_filter");
  const devs = ls.some((l) => l.ifname === DEVICE) ? [DEVICE] : ["default"];
  const bad: string[] = [];
  for (const d of devs) {
    const v = readSys(env, `net.ipv4.conf.${d}.rp_filter`);
    const eff = Math.max(Number(all ?? 0), Number(v ?? 0));
    if (eff === 1) bad.push(`${d} (conf.all ${all}, conf.${d} ${v})`);
  }
  if (all === undefined) return { check: "rp_filter", level: "skip", detail: "cannot read net.ipv4.conf.all.rp_filter" };
  if (!bad.length) return { check: "rp_filter", level: "ok", detail: `no strict reverse-path filter on ${devs.join(", ")} (conf.all ${all})` };
  return {
    check: "rp_filter", level: "fail", detail: `strict reverse-path filtering (1) on ${bad.join(", ")}: the kernel drops every packet wasp writes back from a service`,
    fix: `sysctl -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.${DEVICE}.rp_filter=0 (2, loose, also works)`,
  };
}

function checkTun(env: Env): Finding {
  try {
    const s = statSync(env.devTun);
    const major = Math.floor(s.rdev / 256), minor = s.rdev % 256;
    if (!s.isCharacterDevice() || major !== 10 || minor !== 200) {
      return { check: "/dev/net/tun", level: "fail", detail: `${env.devTun} is not the TUN device (char 10:200; found ${s.isCharacterDevice() ? `char ${major}:${minor}` : "no character device"})`, fix: `rm ${env.devTun}; mknod ${env.devTun} c 10 200` };
    }
    return { check: "/dev/net/tun", level: "ok", detail: `${env.devTun} is char 10:200` };
  } catch (e) {
    return {
      check: "/dev/net/tun", level: "fail", detail: `${env.devTun}: ${(e as NodeJS.ErrnoException).code}; the daemon cannot create wasp0`,
      fix: `modprobe tun (in a container: mount the host's /dev/net/tun, e.g. a hostPath volume)`,
    };
  }
}

/** The underlay device: the link that holds the node's underlay address. */
function underlayLink(ls: Link[], config: Config | undefined): Link | undefined {
  if (!config) return undefined;
  return ls.find((l) => l.addr_info?.some((a) => a.local === config.node.underlayIP));
}

function checkMtu(nets: readonly WaspNetwork[], ls: Link[], config: Config | undefined): Finding {
  const check = "pod MTU vs underlay MTU";
  const u = underlayLink(ls, config);
  if (!config || !u) return { check, level: "skip", detail: config ? `no link holds the underlay address ${config.node.underlayIP}` : "no config (daemon not running and no --config)" };
  const limit = u.mtu - VXLAN_OVERHEAD, problems: string[] = [];
  if (config.node.underlayMTU > u.mtu) problems.push(`the config says underlayMTU ${config.node.underlayMTU} but ${u.ifname} has MTU ${u.mtu}`);
  const c = nets[0];
  if (c && c.mtu > limit) problems.push(`${c.file} gives pods MTU ${c.mtu}, more than ${u.ifname}'s MTU ${u.mtu} - ${VXLAN_OVERHEAD} (VXLAN) = ${limit}`);
  const pods = ls.filter((l) => l.ifname.startsWith("wasp") && l.ifname !== DEVICE && l.mtu > limit);
  if (pods.length) problems.push(`pod veths with MTU above ${limit}: ${pods.map((l) => `${l.ifname} (${l.mtu})`).join(", ")}`);
  if (!problems.length) return { check, level: "ok", detail: `pods ${c ? `MTU ${c.mtu} (${c.file})` : "(no wasp conflist found)"} fit ${u.ifname} MTU ${u.mtu} with VXLAN` };
  return {
    check, level: "fail", detail: `${problems.join("; ")}: large packets between nodes are dropped (TCP connects, then stalls)`,
    fix: `set "mtu": ${limit} (or "underlayMTU": ${u.mtu}) in the wasp conflist and underlayMTU: ${u.mtu} in the daemon config, then recreate the pods`,
  };
}

function checkCidrs(config: Config | undefined, ls: Link[]): Finding {
  const check = "CIDR overlaps";
  if (!config) return { check, level: "skip", detail: "no config (daemon not running and no --config)" };
  const named: Array<[string, Cidr | undefined]> = [
    ["serviceCIDR", parseCidr(config.serviceCIDR)], ["clusterCIDR", parseCidr(config.clusterCIDR)],
    [`node ${config.node.name} podCIDR`, parseCidr(config.node.podCIDR)],
    ...config.nodes.map((n): [string, Cidr | undefined] => [`node ${n.name} podCIDR`, parseCidr(n.podCIDR)]),
  ];
  const u = underlayLink(ls, config)?.addr_info?.find((a) => a.local === config.node.underlayIP);
  if (u) named.push([`underlay network ${u.local}/${u.prefixlen}`, parseCidr(`${u.local}/${u.prefixlen}`)]);
  // the node's own networks: routes not through wasp0 or a pod's veth
  const r = sh("ip", ["-j", "-4", "route", "show", "table", "main"]);
  let routes: Array<{ dst: string; dev?: string; protocol?: string }> = [];
  try { routes = r.ok ? JSON.parse(r.out || "[]") : []; } catch { routes = []; }
  for (const rt of routes) {
    if (rt.dst === "default" || !rt.dev || rt.dev.startsWith("wasp")) continue;
    const c = parseCidr(rt.dst.includes("/") ? rt.dst : `${rt.dst}/32`);
    if (u && rt.dst === `${text(parseCidr(`${u.local}/${u.prefixlen}`)!)}`) continue;
    if (c) named.push([`route ${rt.dst} dev ${rt.dev}`, c]);
  }
  const problems: string[] = [];
  const cluster = named[1]![1];
  for (let i = 0; i < named.length; i++) {
    for (let j = i + 1; j < named.length; j++) {
      const [an, a] = named[i]!, [bn, b] = named[j]!;
      if (!a || !b || a.family !== b.family) continue;
      // pod CIDRs lie inside the cluster CIDR by design
      if (an === "clusterCIDR" && bn.endsWith("podCIDR")) continue;
      if (an.startsWith("route ") && bn.startsWith("route ")) continue;
      if (cidrsOverlap(a, b)) problems.push(`${an} ${text(a)} overlaps ${bn} ${text(b)}`);
    }
  }
  for (const [n, c] of named) {
    if (n.endsWith("podCIDR") && c && cluster && c.family === cluster.family && !cidrsOverlap(c, cluster)) problems.push(`${n} ${text(c)} is outside clusterCIDR ${text(cluster)} (its pods' traffic to services is masqueraded)`);
  }
  if (!problems.length) return { check, level: "ok", detail: `service ${config.serviceCIDR}, cluster ${config.clusterCIDR}, ${plural(config.nodes.length + 1, "pod CIDR")}${u ? " and the underlay" : ""} are disjoint` };
  return { check, level: "fail", detail: problems.join("; "), fix: "give the service range, the pod ranges and the underlay network addresses of their own (kubeadm: --service-cidr, --pod-network-cidr)" };
}

function text(c: Cidr): string {
  const b = c.bytes;
  return c.family === 4 ? `${b[12]}.${b[13]}.${b[14]}.${b[15]}/${c.prefixLen}` : `${[...b].map((x) => x.toString(16)).join("")}/${c.prefixLen}`;
}

function checkKubeProxy(): Finding {
  const check = "kube-proxy leftovers";
  const found: string[] = [];
  const notes: string[] = [];
  for (const tool of ["iptables-save", "ip6tables-save"]) {
    const r = sh(tool, []);
    if (!r.ok) { notes.push(`${tool}: ${r.err.split("\n")[0]}`); continue; }
    const chains = [...new Set(r.out.match(/^:(KUBE-[A-Z0-9-]+)/gm)?.map((c) => c.slice(1)) ?? [])];
    if (chains.length) found.push(`${tool}: chains ${chains.slice(0, 5).join(", ")}${chains.length > 5 ? ` and ${chains.length - 5} more` : ""}`);
  }
  const nft = sh("nft", ["list", "tables"]);
  if (nft.ok && /\bkube-proxy\b/.test(nft.out)) found.push("nft: table kube-proxy");
  const ipvs = sh("ipvsadm", ["-Ln"]);
  if (ipvs.ok && /^(TCP|UDP|SCTP)\s/m.test(ipvs.out)) found.push(`IPVS: ${ipvs.out.split("\n").filter((l) => /^(TCP|UDP|SCTP)\s/.test(l)).length} virtual servers`);
  if (links().some((l) => l.ifname === "kube-ipvs0")) found.push("link kube-ipvs0");
  if (!found.length) return { check, level: "ok", detail: `no KUBE-* iptables chains, kube-proxy nft table or IPVS services${notes.length ? ` (${notes.join("; ")})` : ""}` };
  return {
    check, level: "fail", detail: `${found.join("; ")}: kube-proxy's rules DNAT service traffic before it reaches wasp0, and the two fight over every connection`,
    fix: "stop kube-proxy (kubectl -n kube-system delete ds kube-proxy), then clean its rules on each node: kube-proxy --cleanup",
  };
}

/** The node forwards pod traffic through wasp0 and, for other nodes, the overlay's whole TSO frames
 *  from wasp0tnl (UDP-tunnel GSO): a FORWARD chain that drops by default (Docker sets that) must
 *  accept them. */
function checkForwardFirewall(): Finding {
  const check = "FORWARD firewall";
  const r = sh("iptables-save", ["-t", "filter"]);
  const notes: string[] = [];
  let dropping = "";
  if (!r.ok) notes.push(`iptables-save: ${r.err.split("\n")[0]}`);
  else {
    const policy = /^:FORWARD (\w+)/m.exec(r.out)?.[1] ?? "ACCEPT";
    const accepts = (dev: string) => new RegExp(`^-A \\S+ .*-[io] ${dev} .*-j ACCEPT`, "m").test(r.out);
    if (policy !== "ACCEPT") {
      const missing = [["wasp0", accepts("wasp0")], ["wasp0tnl", accepts("wasp0tnl")]].filter(([, ok]) => !ok).map(([d]) => d);
      if (missing.length) dropping = `iptables FORWARD policy ${policy} and no rule accepting ${missing.join(" or ")}`;
    }
  }
  // nft chains of their own (iptables-nft's ip filter FORWARD is the one iptables-save showed)
  const nft = sh("nft", ["list", "ruleset"]);
  const nftDrops = !nft.ok ? [] : [...nft.out.matchAll(/^table (\S+) (\S+) \{([\s\S]*?)^\}/gm)].flatMap(([, fam, table, body]) =>
    [...body!.matchAll(/chain (\S+) \{([^}]*)\}/g)]
      .filter(([, chain, text]) => /hook forward/.test(text!) && /policy drop;/.test(text!) && !(r.ok && table === "filter" && chain === "FORWARD" && (fam === "ip" || fam === "ip6")))
      .map(([, chain]) => `${fam} ${table} ${chain}`));
  if (nftDrops.length && !/iifname "wasp0/.test(nft.out)) {
    const what = `nft chain ${nftDrops.join(", ")} drops forwarded packets by default and names no wasp device`;
    dropping = dropping ? `${dropping}; ${what}` : what;
  }
  if (!dropping) {
    if (!r.ok && !nft.ok) return { check, level: "skip", detail: notes.join("; ") };
    return { check, level: "ok", detail: "forwarded packets are not dropped by default" };
  }
  return {
    check, level: "warn", detail: `${dropping}: unless other rules accept them, the node drops pod traffic through wasp0 and the overlay's whole TSO frames from wasp0tnl`,
    fix: "iptables -I FORWARD -i wasp0 -j ACCEPT; iptables -I FORWARD -o wasp0 -j ACCEPT; iptables -I FORWARD -i wasp0tnl -j ACCEPT (or WASP_NO_TUNNEL_GSO=1 for the daemon: the overlay then sends from a socket, not forwarded)",
  };
}

function checkIpam(dirs: readonly string[], explicit: boolean): Finding {
  const check = "IPAM records";
  const stale: string[] = [], seen: string[] = [], missing: string[] = [];
  let total = 0;
  for (const dir of dirs) {
    let nets: string[];
    try { nets = readdirSync(dir); } catch (e) { missing.push(`${dir}: ${(e as NodeJS.ErrnoException).code}`); continue; }
    seen.push(dir);
    for (const net of nets) {
      let files: string[];
      try { files = readdirSync(join(dir, net)); } catch { continue; }
      for (const f of files) {
        const ip = parseIp(f);
        if (!ip) continue;
        total++;
        // CNI ADD routes each pod's /32 to its host-side veth; the veth dies with the pod's netns.
        const r = sh("ip", ["-j", ip.family === 4 ? "-4" : "-6", "route", "show", "exact", `${f}/${ip.family === 4 ? 32 : 128}`]);
        let routed = false;
        try { routed = r.ok && (JSON.parse(r.out || "[]") as unknown[]).length > 0; } catch { routed = false; }
        if (!routed) {
          let owner = "";
          try { owner = readFileSync(join(dir, net, f), "utf8").split(/\r?\n/)[0]?.trim() ?? ""; } catch { /* raced with a DEL */ }
          stale.push(`${join(dir, net, f)}${owner ? ` (container ${owner.slice(0, 12)})` : ""}`);
        }
      }
    }
  }
  const where = seen.join(", ");
  if (!seen.length) return { check, level: "skip", detail: `${missing.join("; ")} (no pods allocated here yet${explicit ? "" : "; name a store with --ipam-dir"})` };
  if (!stale.length) return { check, level: "ok", detail: `${total} address${total === 1 ? "" : "es"} allocated under ${where}, each routed to a live pod` };
  return {
    check, level: "fail", detail: `${stale.length} of ${total} records belong to containers that no longer exist (no route, no veth): ${stale.slice(0, 5).join(", ")}${stale.length > 5 ? ", ..." : ""}; their addresses are never handed out again`,
    fix: `let the runtime run CNI GC (containerd does at start), or remove the files: ${stale.slice(0, 3).map((x) => `rm ${x.split(" ")[0]!}`).join("; ")}`,
  };
}

/** The wasp networks of the conflists and of the daemon's calls: fields wasp does not read, an ipam
 *  section, two IPAM stores on one pod CIDR (they hand out the same addresses), a pod CIDR the
 *  daemon does not route as this node's. */
function checkNetworks(nets: readonly WaspNetwork[], served: readonly Served[], confDirs: readonly string[], config: Config | undefined): Finding {
  const check = "wasp networks";
  if (!nets.length && !served.length) return { check, level: "skip", detail: `no wasp conflist in ${confDirs.join(", ")} (name its dir with --cni-conf-dir)` };
  const problems: string[] = [], fixes = new Set<string>();
  for (const n of nets) {
    for (const p of strictProblems(n.entry)) { problems.push(`${n.file}: ${p.message}`); fixes.add(`correct ${n.file}`); }
  }
  const store = (x: { name: string; dataDir: string }) => join(x.dataDir, x.name);
  type Net = { what: string; name: string; dataDir: string; cidrs: Cidr[] };
  const all: Net[] = [
    ...nets.map((n) => ({ what: `${n.file} (network ${n.name})`, name: n.name, dataDir: n.dataDir, cidrs: [n.podCIDR, n.podCIDRv6].flatMap((c) => (c && parseCidr(c) ? [parseCidr(c)!] : [])) })),
    ...served.filter((s) => !nets.some((n) => n.name === s.name && n.dataDir === s.dataDir))
      .map((s) => ({ what: `network ${s.name} the daemon served`, name: s.name, dataDir: s.dataDir, cidrs: [s.podCIDR, s.podCIDRv6].flatMap((c) => (c && parseCidr(c) ? [parseCidr(c)!] : [])) })),
  ];
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const a = all[i]!, b = all[j]!;
      if (store(a) === store(b)) continue;
      const shared = a.cidrs.find((x) => b.cidrs.some((y) => cidrsOverlap(x, y)));
      if (!shared) continue;
      problems.push(`${a.what} and ${b.what} share pod addresses (${text(shared)}) but keep them in two IPAM stores (${store(a)}, ${store(b)}): each hands out addresses the other gave to a live pod`);
      fixes.add("give every wasp conflist of this node the same name and dataDir (one store), or disjoint podCIDRs; then recreate the pods of one of them");
    }
  }
  const own = config && parseCidr(config.node.podCIDR);
  for (const n of all) {
    const v4 = n.cidrs.find((c) => c.family === 4);
    if (own && v4 && text(v4) !== text(own)) {
      problems.push(`${n.what} gives pods ${text(v4)}, but the daemon's node podCIDR is ${text(own)}: their traffic is not routed as this node's`);
      fixes.add(`set "podCIDR": "${text(own)}" in the wasp conflist (or the daemon's node.podCIDR to match)`);
    }
  }
  const unseen = served.filter((s) => !nets.some((n) => n.name === s.name && n.dataDir === s.dataDir));
  const note = unseen.length ? `; the daemon served ${unseen.map((s) => `${s.name} (${s.dataDir})`).join(", ")}, whose conflist is not in ${confDirs.join(", ")} (name its dir with --cni-conf-dir to check it)` : "";
  if (problems.length) return { check, level: "fail", detail: problems.join("; ") + note, fix: [...fixes].join("; ") };
  const detail = `${plural(all.length, "wasp network")} (${all.map((n) => `${n.name}: ${n.cidrs.map(text).join(" ")} in ${n.dataDir}`).join("; ")}), one IPAM store per pod CIDR${note}`;
  return { check, level: unseen.length ? "warn" : "ok", detail };
}

/** Whether dist/wasp reaches the daemon for every runtime call: the conflists name its CNI socket
 *  (or it is the default), no call was declined, none missed it (recorded by wasp-node). */
function checkCniSocket(nets: readonly WaspNetwork[], st: any): Finding {
  const check = "CNI socket";
  if (!st) return { check, level: "skip", detail: "no daemon answers" };
  const cni = st.cni as { socket: string; answered: number; declined: number; lastDeclined?: { at: string; command: string; reason: string } } | undefined;
  if (!cni) {
    return { check, level: "warn", detail: "the daemon serves no CNI socket (--cni-socket \"\"): every CNI call starts Node in wasp-node (~150 ms)", fix: "start the daemon without --cni-socket \"\" (its CNI socket is cni.sock beside the control socket)" };
  }
  const problems: string[] = [], fixes: string[] = [];
  for (const n of nets) {
    const asked = n.cniSocket ?? DEFAULT_CNI_SOCKET;
    if (asked === cni.socket) continue;
    problems.push(`${n.file} ${n.cniSocket ? `names cniSocket ${n.cniSocket}` : `names no cniSocket, so dist/wasp asks ${DEFAULT_CNI_SOCKET}`}, but the daemon's CNI socket is ${cni.socket}: a runtime call without WASP_CNI_SOCKET (podman's cleanup DEL) runs in wasp-node instead (a Node start-up each)`);
    fixes.push(`add "cniSocket": "${cni.socket}" to the wasp plugin's entry in ${n.file}`);
  }
  if (cni.declined) {
    const l = cni.lastDeclined;
    problems.push(`the daemon declined ${plural(cni.declined, "call")}${l ? ` (last: ${l.command} at ${l.at}: ${l.reason})` : ""}: each ran in wasp-node`);
    fixes.push("run the runtime in the daemon's network namespace and mount namespace, so both see the same sandbox paths (README: Trying wasp as a CNI plugin on one machine)");
  }
  const since = Date.now() - Number(st.uptimeSec ?? 0) * 1000;
  const dirs = [...new Set([cni.socket, DEFAULT_CNI_SOCKET])];
  const missed = dirs.flatMap((sock) => readFallbacks(sock)).filter((f) => Date.parse(f.at) >= since && !/declined/.test(f.why));
  if (missed.length) {
    const l = missed[missed.length - 1]!;
    problems.push(`${plural(missed.length, "call")} since the daemon started found no daemon and ran in wasp-node (last: ${l.command} of ${l.containerId.slice(0, 12)} at ${l.at}: ${l.why})`);
    fixes.push(`name the daemon's socket in the conflist ("cniSocket": "${cni.socket}")`);
  }
  if (problems.length) return { check, level: "warn", detail: problems.join("; "), fix: fixes.join("; ") };
  return { check, level: "ok", detail: `dist/wasp reaches the daemon at ${cni.socket}${nets.length ? ` (${nets.map((n) => n.file).join(", ")})` : ""}; ${plural(cni.answered, "call")} answered, none declined` };
}

/** Sockets bound to UDP `port` (/proc/net/udp, udp6): inode 0 is a kernel socket (a vxlan device). */
function udpOwners(port: number, procNet = "/proc/net"): Array<{ inode: number; local: string }> {
  const out: Array<{ inode: number; local: string }> = [];
  for (const f of ["udp", "udp6"]) {
    let t = "";
    try { t = readFileSync(join(procNet, f), "utf8"); } catch { continue; }
    for (const line of t.split("\n").slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 10) continue;
      const [addr, p] = c[1]!.split(":");
      if (parseInt(p!, 16) === port) out.push({ inode: Number(c[9]), local: addr! });
    }
  }
  return out;
}

function pidOfInode(inode: number): { pid: number; comm: string } | undefined {
  const want = `socket:[${inode}]`;
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    let fds: string[];
    try { fds = readdirSync(`/proc/${p}/fd`); } catch { continue; }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${p}/fd/${fd}`) === want) {
          let comm = "?";
          try { comm = readFileSync(`/proc/${p}/comm`, "utf8").trim(); } catch { /* gone */ }
          return { pid: Number(p), comm };
        }
      } catch { /* gone */ }
    }
  }
  return undefined;
}

/** What offload mode needs of the kernel (nf_tables with NAT and conntrack expressions, checked by
 *  the kernel without applying anything; ctnetlink), and the mode the daemon runs in. */
function checkOffload(daemon: { on: boolean; why: string } | undefined): Finding {
  const check = "offload";
  const probe = [
    "add table inet wasp_doctor", "add chain inet wasp_doctor n { type nat hook prerouting priority dstnat; }",
    "add chain inet wasp_doctor f { type filter hook prerouting priority mangle; }", "add rule inet wasp_doctor f ct mark 0x1 counter", "",
  ].join("\n");
  const missing: string[] = [];
  try {
    execFileSync("nft", ["-c", "-f", "-"], { input: probe, stdio: ["pipe", "ignore", "pipe"] });
  } catch (e) {
    const x = e as { code?: string; stderr?: Buffer };
    missing.push(x.code === "ENOENT" ? "nft is not installed" : `nf_tables NAT/conntrack refused: ${String(x.stderr ?? "").trim().split("\n").pop()}`);
  }
  try { ConntrackSocket.open().close(); } catch (e) { missing.push((e as Error).message); }
  const mode = daemon ? `; the daemon runs ${daemon.on ? "offload mode" : `full-wasm (${daemon.why})`}` : "";
  if (!missing.length) return { check, level: "ok", detail: `the kernel has conntrack, NAT and ctnetlink for offload mode${mode}` };
  return {
    check, level: daemon?.on === false ? "warn" : "fail", detail: `offload mode cannot run here: ${missing.join("; ")}${mode}`,
    fix: "modprobe nf_conntrack nf_nat nf_tables nft_ct nf_conntrack_netlink and apt-get install nftables; or run the daemon with --offload off",
  };
}

function checkVxlanPort(config: Config | undefined, daemonPid: number | undefined): Finding {
  const check = "VXLAN port";
  if (!config) return { check, level: "skip", detail: "no config (daemon not running and no --config)" };
  const port = config.vxlan.port;
  const others: string[] = [];
  for (const s of udpOwners(port)) {
    if (s.inode === 0) {
      const vx = sh("ip", ["-d", "-j", "link", "show", "type", "vxlan"]);
      let names: string[] = [];
      try { names = (JSON.parse(vx.out || "[]") as Array<{ ifname: string; linkinfo?: { info_data?: { port?: number } } }>).filter((l) => l.linkinfo?.info_data?.port === port).map((l) => l.ifname); } catch { /* */ }
      // offload mode: the daemon's own overlay is a kernel vxlan device
      if (daemonPid !== undefined && names.length === 1 && names[0] === OFFLOAD_VXLAN) continue;
      others.push(`a kernel vxlan device${names.length ? ` (${names.join(", ")})` : ""}`);
      continue;
    }
    const o = pidOfInode(s.inode);
    if (o && o.pid === daemonPid) continue;
    others.push(o ? `${o.comm} (pid ${o.pid})` : `a socket (inode ${s.inode}) of another namespace's process`);
  }
  if (!others.length) return { check, level: "ok", detail: `UDP ${port} is free${daemonPid ? " or the daemon's own" : ""}` };
  return {
    check, level: "fail", detail: `UDP ${port} is taken by ${[...new Set(others)].join(", ")}: VXLAN from other nodes goes there instead of to wasp`,
    fix: `stop the other overlay (flannel: kubectl -n kube-flannel delete ds kube-flannel-ds; ip link del flannel.1) or give wasp another vxlan.port on every node`,
  };
}

/** A TCP connection to a service with a ready backend, from this node: the SYN goes through wasp0
 *  and the engine (DNAT), the answer back through it (reverse NAT), so an answer proves the whole
 *  loop (route to wasp0, the batch loop, the core, the write back). Refused is an answer too (the
 *  backend's RST came back the same way). Unlike a packet the engine refuses or answers itself, it
 *  adds no drop to the daemon's counters. */
function probeDatapath(host: string, port: number): Promise<{ ok: boolean; ms: number; detail: string }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean, detail: string) => { clearTimeout(timer); s.destroy(); resolve({ ok, ms: performance.now() - t0, detail }); };
    const timer = setTimeout(() => done(false, `no answer from ${host}:${port} within 2 s`), 2000);
    s.once("connect", () => done(true, "connected"));
    s.once("error", (e: NodeJS.ErrnoException) => done(e.code === "ECONNREFUSED", e.code === "ECONNREFUSED" ? "refused by the backend: nothing listens on its port" : e.code ?? e.message));
  });
}

async function checkDaemon(env: Env): Promise<{ finding: Finding; config?: Config; pid?: number; status?: any; offload?: { on: boolean; why: string } }> {
  const check = "daemon";
  let st: any;
  try { st = await request(env.socket, { cmd: "status" }, 3000); } catch (e) {
    return { finding: { check, level: "fail", detail: (e as Error).message.replace(/\. Start it.*$/, ""), fix: "start it: wasp daemon --config FILE (as root, in the node's network namespace), or name its socket with --socket PATH" } };
  }
  const cfg = (await request(env.socket, { cmd: "config" }, 3000).catch(() => undefined)) as { config?: Config } | undefined;
  const problems: string[] = [];
  const ls = links(), dev = ls.find((l) => l.ifname === st.device);
  if (!dev) problems.push(`${st.device} does not exist in this namespace`);
  else if (!dev.flags.includes("UP")) problems.push(`${st.device} is down`);
  for (const [place, n] of Object.entries(st.pathDrops as Record<string, number>)) if (n > 0) problems.push(`${n} packets lost outside the engine at ${place}`);
  let probe = "";
  type Row = { key: string; kind: string; backends: Array<{ eligible: boolean }> };
  const services = ((await request(env.socket, { cmd: "services" }, 3000).catch(() => ({ services: [] }))) as { services: Row[] }).services;
  const target = services.find((s) => s.kind === "ClusterIP" && /^[\d.]+:\d+\/TCP$/.test(s.key) && s.backends.some((b) => b.eligible));
  if (dev && target) {
    const [host, port] = target.key.replace("/TCP", "").split(":") as [string, string];
    const p = await probeDatapath(host, Number(port));
    if (p.ok) probe = `; a TCP connection to ${host}:${port} went through the engine both ways (${p.detail}) in ${p.ms.toFixed(1)} ms`;
    else problems.push(`the datapath does not answer: ${p.detail} (a TCP connection to the service ${host}:${port}, which has a ready backend)`);
  } else if (dev) {
    probe = "; no IPv4 TCP service with a ready backend to probe the datapath through";
  }
  const base = `pid ${st.pid ?? "?"}, generation ${st.generation}, up ${st.uptimeSec} s, ${plural(st.services, "service entry", "service entries")}, ${plural(st.conntrack.entries, "flow")}`;
  const finding: Finding = problems.length
    ? { check, level: "fail", detail: `${base}: ${problems.join("; ")}`, fix: "see the daemon's log; restart it (it rebuilds wasp0 and its rules)" }
    : { check, level: "ok", detail: `${base}${probe}` };
  return { finding, ...(cfg?.config ? { config: cfg.config } : {}), ...(st.pid ? { pid: st.pid } : {}), status: st, ...(st.offload ? { offload: st.offload } : {}) };
}

export async function runDoctor(env: Env): Promise<Finding[]> {
  const d = await checkDaemon(env);
  let config = d.config;
  const extra: Finding[] = [];
  if (env.configPath) {
    const { loadConfigFile, formatProblems } = await import("../config/index.js");
    const r = await loadConfigFile(env.configPath);
    if ("problems" in r) {
      extra.push({
        check: "config", level: "fail", detail: `${env.configPath} is invalid (${plural(r.problems.length, "problem")}): ${formatProblems(env.configPath, r.problems).join("; ")}`,
        fix: `correct ${env.configPath}; the daemon refuses to start (or reload) with it${config ? "; the other checks use the running daemon's config" : ""}`,
      });
    } else {
      config = r.config;
      extra.push({ check: "config", level: "ok", detail: `${env.configPath} is valid` });
    }
  }
  const ls = links();
  const confDirs = env.cniConfDir ? [env.cniConfDir] : runtimeConfDirs();
  const nets = waspNetworks(confDirs);
  const served: Served[] = d.status?.cni?.networks ?? [];
  const ipamDirs = env.ipamDir ? [env.ipamDir] : [...new Set([DEFAULT_DATA_DIR, ...nets.map((n) => n.dataDir), ...served.map((n) => n.dataDir)])];
  return [
    ...extra,
    checkForwarding(env), checkRpFilter(env, ls), checkTun(env), checkMtu(nets, ls, config), checkCidrs(config, ls),
    checkKubeProxy(), checkForwardFirewall(), checkNetworks(nets, served, confDirs, config), checkIpam(ipamDirs, env.ipamDir !== undefined),
    checkVxlanPort(config, d.pid), checkCniSocket(nets, d.status), checkOffload(d.offload), d.finding,
  ];
}

export async function doctor(o: Record<string, any>): Promise<void> {
  const env: Env = {
    socket: String(o.socket), devTun: String(o.devTun), procSys: String(o.procSys),
    ...(o.ipamDir ? { ipamDir: String(o.ipamDir) } : {}), ...(o.cniConfDir ? { cniConfDir: String(o.cniConfDir) } : {}),
    ...(o.config ? { configPath: String(o.config) } : {}),
  };
  const findings = await runDoctor(env);
  const failed = findings.filter((f) => f.level === "fail");
  if (failed.length) process.exitCode = EXIT.FAILED;
  if (o.json) { printJson({ ok: failed.length === 0, findings }); return; }
  const mark: Record<Level, string> = { ok: "ok", warn: "WARN", fail: "FAIL", skip: "skip" };
  process.stdout.write(table(["CHECK", "RESULT", "DETAIL"], findings.map((f) => [f.check, mark[f.level], f.detail])));
  if (failed.length) {
    process.stdout.write(`\n${failed.length} problem${failed.length === 1 ? "" : "s"}:\n`);
    for (const f of failed) process.stdout.write(`  ${f.check}: ${f.detail}\n    fix: ${f.fix ?? "-"}\n`);
  } else {
    process.stdout.write("\nno problem found\n");
  }
}
