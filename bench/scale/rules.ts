// The scale benchmark's service set and the rule sets kube-proxy would program for it, one generator
// per mode, written the way kube-proxy writes them (pkg/proxy/iptables, pkg/proxy/nftables and
// pkg/proxy/ipvs in Kubernetes 1.31):
//   iptables  one iptables-restore input (kube-proxy's full sync): KUBE-SERVICES -> KUBE-SVC-<hash>
//             -> KUBE-SEP-<hash> with `-m statistic --mode random --probability 1/(n-i)`,
//             KUBE-MARK-MASQ for traffic from outside the cluster CIDR and hairpin, KUBE-POSTROUTING
//             masquerading marked packets; the filter table's KUBE-FORWARD;
//   nftables  one `nft -f` transaction for the table `ip kube-proxy`: the service-ips verdict map
//             (daddr . proto . dport : goto service-<hash>-ns/name/proto/port), per service port a
//             chain with `numgen random mod n vmap`, per endpoint a chain that DNATs; the
//             cluster-ips set and its check; and the incremental transaction kube-proxy sends when
//             some services' endpoints change (flush the service chain, new endpoint chains, delete
//             the stale ones);
//   ipvs      `ipvsadm -R` input (a virtual server per service port, its real servers in masquerading
//             mode), the edit when endpoints change, and the VIPs that kube-proxy puts on the dummy
//             device kube-ipvs0.
// Chain names use kube-proxy's hashes (sha256, base32, truncated), so the rule text and the name
// lengths are what a real node has.
import { createHash } from "node:crypto";

export interface ServicePort { name: string; port: number; protocol: "TCP" | "UDP"; targetPort: number }
export interface ScaleService {
  namespace: string;
  name: string;
  clusterIP: string;
  ports: ServicePort[];
  /** Endpoint addresses (pods); each serves every port of the service on its targetPort. */
  backends: string[];
}

export const MASQ_MARK = "0x4000";

/** Dotted quad of a 32-bit number. */
export function ipv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}
function ipv4Number(s: string): number {
  const p = s.split(".").map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`"${s}" is not an IPv4 address`);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

export interface ServiceSetOptions {
  /** Services in all, the target included (the target is the last). */
  count: number;
  /** Service CIDR base; service i (1-based) gets base + i. */
  serviceBase: string;
  /** The target's endpoints: the pods that really serve. */
  targetBackends: [string, string];
  /** Base for the other services' (never contacted) endpoints; each gets two. */
  fillerBackendBase: string;
  targetPorts: ServicePort[];
}

/**
 * `count` ClusterIP services with 2 endpoints each. The last one is the target (the one a linear
 * scan such as KUBE-SERVICES meets last); the others have one TCP port 80 -> 8080 and endpoints that
 * are never contacted.
 */
export function serviceSet(o: ServiceSetOptions): ScaleService[] {
  if (!Number.isInteger(o.count) || o.count < 1) throw new Error(`the service count is ${o.count}; it must be an integer >= 1`);
  const base = ipv4Number(o.serviceBase), beBase = ipv4Number(o.fillerBackendBase);
  const out: ScaleService[] = [];
  for (let i = 1; i < o.count; i++) {
    out.push({
      namespace: "scale", name: `svc-${i}`, clusterIP: ipv4(base + i),
      ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }],
      backends: [ipv4(beBase + 2 * i), ipv4(beBase + 2 * i + 1)],
    });
  }
  out.push({ namespace: "scale", name: "target", clusterIP: ipv4(base + o.count), ports: o.targetPorts, backends: [...o.targetBackends] });
  return out;
}

/** A copy of `services` where each service at `indexes` has its second endpoint replaced (an endpoint change). */
export function withChangedBackends(services: readonly ScaleService[], indexes: readonly number[], round: number, base: string): ScaleService[] {
  const out = services.slice();
  const b = ipv4Number(base);
  for (const i of indexes) {
    const s = out[i];
    if (!s) throw new Error(`service index ${i} is out of range (0-${services.length - 1})`);
    out[i] = { ...s, backends: [s.backends[0]!, ipv4(b + ((round * 7919 + i) % 60000))] };
  }
  return out;
}

/** Indexes of the `k` services that change in an update: spread over the set, never the target (the last). */
export function changeIndexes(count: number, k: number): number[] {
  const others = count - 1;
  if (others <= 0) return [];
  const n = Math.min(k, others);
  return Array.from({ length: n }, (_, j) => Math.floor((j * others) / n + others / (2 * n)));
}

/** The services whose endpoints differ between two versions of one set, as [before, after] pairs;
 *  `who` names the caller in the error when anything but endpoints changed. */
function endpointChanges(before: readonly ScaleService[], after: readonly ScaleService[], who: string): Array<[ScaleService, ScaleService]> {
  if (before.length !== after.length) throw new Error(`${who} changes endpoints only; the service count went from ${before.length} to ${after.length}`);
  return after.flatMap((s, i): Array<[ScaleService, ScaleService]> => {
    const old = before[i]!;
    if (old.clusterIP !== s.clusterIP || old.name !== s.name) throw new Error(`${who}: service ${i} is ${s.name} ${s.clusterIP}, was ${old.name} ${old.clusterIP}; only endpoints may change`);
    return old.backends.join() === s.backends.join() ? [] : [[old, s]];
  });
}

// ── iptables ────────────────────────────────────────────────────────────────────────────────────

function base32Sha256(text: string): string {
  const h = createHash("sha256").update(text).digest();
  const A = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0, acc = 0, out = "";
  for (const byte of h) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) { out += A[(acc >>> (bits - 5)) & 31]; bits -= 5; }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += A[(acc << (5 - bits)) & 31];
  return out; // unpadded; kube-proxy takes a prefix, so padding never shows
}

/** kube-proxy's ServicePortName string: namespace/name:port. */
function svcPortName(s: ScaleService, p: ServicePort): string {
  return `${s.namespace}/${s.name}:${p.name}`;
}
const proto = (p: ServicePort) => p.protocol.toLowerCase();

/** KUBE-SVC-<16 base32 of sha256(svcPortName + protocol)> (pkg/proxy/iptables servicePortChainName). */
export function iptSvcChain(s: ScaleService, p: ServicePort): string {
  return `KUBE-SVC-${base32Sha256(svcPortName(s, p) + proto(p)).slice(0, 16)}`;
}
/** KUBE-SEP-<16 base32 of sha256(svcPortName + protocol + ip:port)> (servicePortEndpointChainName). */
export function iptSepChain(s: ScaleService, p: ServicePort, backend: string): string {
  return `KUBE-SEP-${base32Sha256(svcPortName(s, p) + proto(p) + `${backend}:${p.targetPort}`).slice(0, 16)}`;
}

/** The chains a service set has in the nat table (for deleting stale ones on the next sync). */
export function iptChains(services: readonly ScaleService[]): Set<string> {
  const out = new Set<string>();
  for (const s of services) for (const p of s.ports) {
    out.add(iptSvcChain(s, p));
    for (const b of s.backends) out.add(iptSepChain(s, p, b));
  }
  return out;
}

/** kube-proxy's probability text: 1/(n-i) with ten decimals. */
export function probability(n: number): string {
  return (1 / n).toFixed(10);
}

/**
 * iptables-restore input for a full sync (apply with `iptables-restore --noflush`, as kube-proxy
 * does): every kube chain is declared (which flushes it) and refilled; chains of `previous` that the
 * new set no longer has are deleted with -X.
 */
export function iptablesRestore(services: readonly ScaleService[], clusterCidr: string, previous: ReadonlySet<string> = new Set()): string {
  const filter: string[] = [
    "*filter",
    ":KUBE-NODEPORTS - [0:0]", ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]",
    ":KUBE-FORWARD - [0:0]", ":KUBE-PROXY-FIREWALL - [0:0]",
    `-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP`,
    `-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark ${MASQ_MARK}/${MASQ_MARK} -j ACCEPT`,
    `-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
    "COMMIT",
  ];
  const chains: string[] = [
    ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]",
  ];
  const rules: string[] = [
    `-A KUBE-POSTROUTING -m mark ! --mark ${MASQ_MARK}/${MASQ_MARK} -j RETURN`,
    `-A KUBE-POSTROUTING -j MARK --xor-mark ${MASQ_MARK}`,
    `-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`,
    `-A KUBE-MARK-MASQ -j MARK --or-mark ${MASQ_MARK}`,
  ];
  const svcRules: string[] = [];
  const now = new Set<string>();
  for (const s of services) {
    for (const p of s.ports) {
      const name = svcPortName(s, p), svc = iptSvcChain(s, p), l4 = proto(p);
      chains.push(`:${svc} - [0:0]`);
      now.add(svc);
      svcRules.push(`-A KUBE-SERVICES -m comment --comment "${name} cluster IP" -m ${l4} -p ${l4} -d ${s.clusterIP}/32 --dport ${p.port} -j ${svc}`);
      rules.push(`-A ${svc} -m comment --comment "${name} cluster IP" -m ${l4} -p ${l4} -d ${s.clusterIP}/32 --dport ${p.port} ! -s ${clusterCidr} -j KUBE-MARK-MASQ`);
      const n = s.backends.length;
      s.backends.forEach((b, i) => {
        const sep = iptSepChain(s, p, b), ep = `${b}:${p.targetPort}`;
        chains.push(`:${sep} - [0:0]`);
        now.add(sep);
        rules.push(i < n - 1
          ? `-A ${svc} -m comment --comment "${name} -> ${ep}" -m statistic --mode random --probability ${probability(n - i)} -j ${sep}`
          : `-A ${svc} -m comment --comment "${name} -> ${ep}" -j ${sep}`);
        rules.push(`-A ${sep} -m comment --comment ${name} -s ${b}/32 -j KUBE-MARK-MASQ`);
        rules.push(`-A ${sep} -m comment --comment ${name} -m ${l4} -p ${l4} -j DNAT --to-destination ${ep}`);
      });
    }
  }
  svcRules.push(`-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`);
  const stale = [...previous].filter((c) => !now.has(c));
  // A stale chain is declared (flushed) before it is deleted, as kube-proxy's restore does.
  const nat = ["*nat", ...chains, ...stale.map((c) => `:${c} - [0:0]`), ...svcRules, ...rules, ...stale.map((c) => `-X ${c}`), "COMMIT"];
  return [...filter, ...nat, ""].join("\n");
}

/** The jumps from the built-in chains into kube-proxy's (made once per node, outside the restore). */
export function iptablesJumps(): string[][] {
  return [
    ["-t", "nat", "-A", "PREROUTING", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"],
    ["-t", "nat", "-A", "OUTPUT", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"],
    ["-t", "nat", "-A", "POSTROUTING", "-m", "comment", "--comment", "kubernetes postrouting rules", "-j", "KUBE-POSTROUTING"],
    ["-t", "filter", "-A", "FORWARD", "-m", "comment", "--comment", "kubernetes forwarding rules", "-j", "KUBE-FORWARD"],
    ["-t", "filter", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"],
  ];
}

// ── nftables ────────────────────────────────────────────────────────────────────────────────────

export const NFT_TABLE = "kube-proxy";
const NFT_CHAIN_MAX = 256 - 1;

/** kube-proxy's hashAndTruncate: 8 base32 chars of sha256(name), "-", name. */
function hashAndTruncate(name: string): string {
  const n = `${base32Sha256(name).slice(0, 8)}-${name}`;
  return n.length > NFT_CHAIN_MAX ? `${n.slice(0, NFT_CHAIN_MAX - 3)}...` : n;
}
export function nftSvcChain(s: ScaleService, p: ServicePort): string {
  return `service-${hashAndTruncate(`${s.namespace}/${s.name}/${proto(p)}/${p.name}`)}`;
}
export function nftEndpointChain(s: ScaleService, p: ServicePort, backend: string): string {
  return `endpoint-${hashAndTruncate(`${s.namespace}/${s.name}/${proto(p)}/${p.name}__${backend}/${p.targetPort}`)}`;
}

/** The fixed part of the table (kube-proxy's setupNFTables), for a table that does not exist yet. */
function nftBase(serviceCidr: string): string[] {
  const t = `ip ${NFT_TABLE}`;
  return [
    `add table ${t} { comment "rules for kube-proxy" ; }`,
    `add chain ${t} mark-for-masquerade`,
    `add rule ${t} mark-for-masquerade mark set mark or ${MASQ_MARK}`,
    `add chain ${t} masquerading`,
    `add rule ${t} masquerading mark and ${MASQ_MARK} == 0 return`,
    `add rule ${t} masquerading mark set mark xor ${MASQ_MARK}`,
    `add rule ${t} masquerading masquerade fully-random`,
    `add set ${t} cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }`,
    `add chain ${t} cluster-ips-check`,
    `add rule ${t} cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"`,
    `add rule ${t} cluster-ips-check ip daddr { ${serviceCidr} } drop comment "Drop traffic to unallocated ClusterIPs"`,
    `add map ${t} no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }`,
    `add chain ${t} service-endpoints-check`,
    `add rule ${t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services`,
    `add map ${t} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`,
    `add map ${t} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }`,
    `add chain ${t} services`,
    `add rule ${t} services ip daddr . meta l4proto . th dport vmap @service-ips`,
    `add rule ${t} services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports`,
    `add chain ${t} filter-forward { type filter hook forward priority -110 ; }`,
    `add rule ${t} filter-forward ct state new jump service-endpoints-check`,
    `add rule ${t} filter-forward ct state new jump cluster-ips-check`,
    `add chain ${t} filter-output { type filter hook output priority -110 ; }`,
    `add rule ${t} filter-output ct state new jump service-endpoints-check`,
    `add chain ${t} filter-output-post-dnat { type filter hook output priority -90 ; }`,
    `add rule ${t} filter-output-post-dnat ct state new jump cluster-ips-check`,
    `add chain ${t} nat-prerouting { type nat hook prerouting priority -100 ; }`,
    `add rule ${t} nat-prerouting jump services`,
    `add chain ${t} nat-output { type nat hook output priority -100 ; }`,
    `add rule ${t} nat-output jump services`,
    `add chain ${t} nat-postrouting { type nat hook postrouting priority 100 ; }`,
    `add rule ${t} nat-postrouting jump masquerading`,
  ];
}

/** The chains of one service port: the service chain and one per endpoint. */
function nftChains(s: ScaleService, p: ServicePort): string[] {
  return [nftSvcChain(s, p), ...s.backends.map((b) => nftEndpointChain(s, p, b))];
}

/** The rules of one service port's chains (the chains exist already: a goto needs its target). */
function nftServicePortRules(s: ScaleService, p: ServicePort, clusterCidr: string): string[] {
  const t = `ip ${NFT_TABLE}`, svc = nftSvcChain(s, p), l4 = proto(p);
  const out = [`add rule ${t} ${svc} ip daddr ${s.clusterIP} ${l4} dport ${p.port} ip saddr != ${clusterCidr} jump mark-for-masquerade`];
  const vmap = s.backends.map((b, i) => `${i} : goto ${nftEndpointChain(s, p, b)}`).join(" , ");
  out.push(`add rule ${t} ${svc} numgen random mod ${s.backends.length} vmap { ${vmap} }`);
  for (const b of s.backends) {
    const ep = nftEndpointChain(s, p, b);
    out.push(`add rule ${t} ${ep} ip saddr ${b} jump mark-for-masquerade`);
    out.push(`add rule ${t} ${ep} meta l4proto ${l4} dnat to ${b}:${p.targetPort}`);
  }
  return out;
}

/** One `nft -f` transaction that programs the whole service set into a node without the table. */
export function nftRuleset(services: readonly ScaleService[], serviceCidr: string, clusterCidr: string): string {
  const t = `ip ${NFT_TABLE}`;
  const out = nftBase(serviceCidr);
  const ips = new Set<string>();
  // Every chain first, then the rules, as kube-proxy's transaction orders them: a goto must find its chain.
  for (const s of services) for (const p of s.ports) for (const c of nftChains(s, p)) out.push(`add chain ${t} ${c}`);
  for (const s of services) {
    ips.add(s.clusterIP);
    for (const p of s.ports) out.push(...nftServicePortRules(s, p, clusterCidr));
  }
  // Elements go in batches, as kube-proxy's transaction does; one line per element would work too.
  const list = [...ips];
  for (let i = 0; i < list.length; i += 1000) out.push(`add element ${t} cluster-ips { ${list.slice(i, i + 1000).join(" , ")} }`);
  const elems = services.flatMap((s) => s.ports.map((p) => `${s.clusterIP} . ${proto(p)} . ${p.port} : goto ${nftSvcChain(s, p)}`));
  for (let i = 0; i < elems.length; i += 1000) out.push(`add element ${t} service-ips { ${elems.slice(i, i + 1000).join(" , ")} }`);
  return out.join("\n") + "\n";
}

/**
 * The incremental transaction kube-proxy's nftables mode sends when the endpoints of some services
 * change (same VIPs and ports): each changed service chain is flushed and refilled, endpoint chains
 * that are new are added, and those no longer used are flushed and deleted.
 */
export function nftUpdate(before: readonly ScaleService[], after: readonly ScaleService[], clusterCidr: string): string {
  const t = `ip ${NFT_TABLE}`, out: string[] = [];
  for (const [old, s] of endpointChanges(before, after, "nftUpdate")) {
    for (const p of s.ports) {
      const svc = nftSvcChain(s, p), l4 = proto(p);
      out.push(`flush chain ${t} ${svc}`);
      for (const b of s.backends) {
        if (old.backends.includes(b)) continue;
        const ep = nftEndpointChain(s, p, b);
        out.push(`add chain ${t} ${ep}`, `add rule ${t} ${ep} ip saddr ${b} jump mark-for-masquerade`, `add rule ${t} ${ep} meta l4proto ${l4} dnat to ${b}:${p.targetPort}`);
      }
      out.push(`add rule ${t} ${svc} ip daddr ${s.clusterIP} ${l4} dport ${p.port} ip saddr != ${clusterCidr} jump mark-for-masquerade`);
      const vmap = s.backends.map((b, j) => `${j} : goto ${nftEndpointChain(s, p, b)}`).join(" , ");
      out.push(`add rule ${t} ${svc} numgen random mod ${s.backends.length} vmap { ${vmap} }`);
      for (const b of old.backends) {
        if (s.backends.includes(b)) continue;
        const ep = nftEndpointChain(old, p, b);
        out.push(`flush chain ${t} ${ep}`, `delete chain ${t} ${ep}`);
      }
    }
  }
  return out.join("\n") + "\n";
}

// ── IPVS ────────────────────────────────────────────────────────────────────────────────────────

/** ipvsadm's protocol flag and address of one service port's virtual server. */
function virtualServer(s: ScaleService, p: ServicePort): string {
  return `${p.protocol === "TCP" ? "-t" : "-u"} ${s.clusterIP}:${p.port}`;
}

/** `ipvsadm -R` input: a round-robin virtual server per service port, its endpoints masqueraded (-m), weight 1. */
export function ipvsRestore(services: readonly ScaleService[]): string {
  const out: string[] = [];
  for (const s of services) for (const p of s.ports) {
    const vs = virtualServer(s, p);
    out.push(`-A ${vs} -s rr`);
    for (const b of s.backends) out.push(`-a ${vs} -r ${b}:${p.targetPort} -m -w 1`);
  }
  return out.join("\n") + "\n";
}

/** `ipvsadm -R` input that changes the endpoints of `before` into those of `after` on a loaded node,
 *  as kube-proxy's IPVS mode does: the real servers that left are deleted, the new ones added. */
export function ipvsEdit(before: readonly ScaleService[], after: readonly ScaleService[]): string {
  const out: string[] = [];
  for (const [old, s] of endpointChanges(before, after, "ipvsEdit")) for (const p of s.ports) {
    const vs = virtualServer(s, p);
    for (const b of old.backends) if (!s.backends.includes(b)) out.push(`-d ${vs} -r ${b}:${p.targetPort}`);
    for (const b of s.backends) if (!old.backends.includes(b)) out.push(`-a ${vs} -r ${b}:${p.targetPort} -m -w 1`);
  }
  return out.join("\n") + "\n";
}

/** The addresses kube-proxy binds to kube-ipvs0 (one /32 per ClusterIP), for `ip -batch`. */
export function ipvsDummyAddrs(services: readonly ScaleService[], dev = "kube-ipvs0"): string {
  return services.map((s) => `address add ${s.clusterIP}/32 dev ${dev}`).join("\n") + "\n";
}

// ── wasp ────────────────────────────────────────────────────────────────────────────────────────

/** The services as a wasp config's `services:` list. */
export function waspServices(services: readonly ScaleService[]): unknown[] {
  return services.map((s) => ({
    name: s.name, namespace: s.namespace, type: "ClusterIP", clusterIP: s.clusterIP,
    ports: s.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol, targetPort: p.targetPort })),
    backends: s.backends.map((ip) => ({ ip, ready: true })),
  }));
}
