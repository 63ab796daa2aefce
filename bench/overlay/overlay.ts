// npm run bench -- overlay: pod -> pod across nodes over VXLAN, wasp against the kernel's own vxlan,
// on one topology in one run. Four nodes on one underlay bridge (test/helpers/topology.ts):
//   wasp      nodes A and B run `wasp daemon` (TUN mode, VXLAN UDP 8472 VNI 1), pods attached by
//             the wasp CNI plugin (routed /32, MTU 1450);
//   linux     nodes C and D have flannel.1 set up as flannel's vxlan backend does it (LinuxVxlanNode:
//             vxlan id 1 dstport 8472 nolearning, static FDB/neighbour/route), pods on cni0, MTU 1450.
// Measured the way bench/datapath does (its iperf3 helpers): iperf3 TCP (Gbit/s at the receiver) and
// 64-byte UDP (iperf3 -u -l 64 -b 0: packets the server received per second), pod on A -> pod on B
// and pod on C -> pod on D, interleaved (wasp TCP, Linux TCP, wasp UDP, Linux UDP, repeated) so that
// both see the same machine load. Medians of 3 (1 with --quick).
// On veth the kernel's vxlan never segments: a pod's 64 KiB TSO super-packet crosses vxlan, both
// veths and the bridge as one skb (UDP tunnel GSO; measured: 99.9% of the underlay bytes in frames
// over 1514 B, up to 64 KiB), where a real NIC would segment it in hardware, and nothing is copied.
// wasp reads the super-packet from its TUN, encapsulates it once in the wasm core and writes it to
// its tunnel TAP with the same UDP-tunnel GSO offload (Linux 6.17+), so it also crosses whole; the
// receiving daemon takes it from its UDP socket and writes it to its TUN as one GSO packet. That is
// still four user/kernel copies per byte (TUN read, TAP write, UDP receive, TUN write) that the
// kernel's own path does not make. wasp_cut_tcp_gbps is wasp with that offload turned off
// (WASP_NO_TUNNEL_GSO=1, daemons restarted): the engine cuts each super-packet into VXLAN packets
// sent as UDP GSO datagrams and the receiver merges them again. For scale, Linux is also measured
// with tunnel segmentation offload off on its underlay ports (linux_vxlan_nogso_tcp_gbps: the
// kernel then segments in software before the veth, as it would for a NIC without the offload).
// Offload mode (wasp_offload_*: established flows in the kernel, its own vxlan device) is measured in
// its own turn, and Linux's TCP again right after it, so the two are side by side; linux_vxlan_tcp_gbps
// is the median of both positions. The offload nodes' kernels track every packet (the table offload
// mode needs registers conntrack and NAT hooks, as any kube-proxy node's rules do); the Linux nodes
// track none. linux_vxlan_ct_tcp_gbps is the Linux nodes with that same table applied (ensureOffloadTable):
// what conntrack costs Linux's own path, measured in the same turn.
// Namespaces are the topology's (wasp-t-<pid>-*), removed at the end, also on failure; every
// process is ended by its PID.
import { execFileSync } from "node:child_process";
import { median, round, writeResults } from "../lib/results.js";
import { procs, spawnTracked, tcpGbps, udpKpps } from "../datapath/datapath.js";
import { inNs, stop } from "../../test/helpers/netns.js";
import { LinuxVxlanNode, Topology, waitFor, control, type Pod } from "../../test/helpers/topology.js";
import { ensureOffloadTable, removeOffloadTable, type NftRunner } from "../../src/daemon/offload-net.js";

const PORT = 5201;
const A = { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" };
const B = { name: "node-b", underlayIP: "10.99.0.3", podCIDR: "10.244.2.0/24" };
const C = { underlayIP: "10.99.0.4", podCIDR: "10.244.3.0/24" };
const D = { underlayIP: "10.99.0.5", podCIDR: "10.244.4.0/24" };

type Kind = "wasp" | "wasp_cut" | "wasp_offload" | "linux" | "linux_nogso" | "linux_ct";
type WaspMode = "full" | "cut" | "offload";
const TUNNEL_GSO = ["tx-udp_tnl-segmentation", "tx-udp_tnl-csum-segmentation"];

/** Offload mode's nftables table on the Linux nodes (conntrack and NAT hooks on every packet), or gone:
 *  made and removed as a daemon does it (offload-net.ts), by `nft -f -` in each node's namespace. */
function offloadTable(nodes: LinuxVxlanNode[], on: boolean): void {
  for (const n of nodes) {
    const nft: NftRunner = (script) => execFileSync("ip", ["netns", "exec", n.node, "nft", "-f", "-"], { input: script, encoding: "utf8" });
    if (on) ensureOffloadTable("flannel.1", nft);
    else if (!removeOffloadTable(nft)) throw new Error(`offload mode's table was not in ${n.node} to remove`);
  }
}

function tunnelGso(nodes: LinuxVxlanNode[], on: boolean): void {
  for (const n of nodes) inNs(n.node, "ethtool", "-K", "eth0", ...TUNNEL_GSO.flatMap((f) => [f, on ? "on" : "off"]));
}

async function iperfServer(pod: Pod): Promise<void> {
  const s = spawnTracked(pod.ns, "iperf3", ["-s", "-p", String(PORT), "--forceflush"]);
  await waitFor(() => s.out().includes("listening") || s.child.exitCode !== null, `iperf3 server in ${pod.name}`);
  if (s.child.exitCode !== null) throw new Error(`iperf3 server in ${pod.name}: ${s.out()}`);
}

export async function run(quick: boolean): Promise<Record<string, number>> {
  const reps = quick ? 1 : 3;
  const secs = quick ? 2 : 4;
  const tcp: Record<Kind, number[]> = { wasp: [], wasp_cut: [], wasp_offload: [], linux: [], linux_nogso: [], linux_ct: [] };
  const udp: Record<Kind, number[]> = { wasp: [], wasp_cut: [], wasp_offload: [], linux: [], linux_nogso: [], linux_ct: [] };
  const ta = new Topology({ nodeIp: A.underlayIP, podCidr: A.podCIDR });
  let tb: Topology | undefined, lc: LinuxVxlanNode | undefined, ld: LinuxVxlanNode | undefined;
  let cleaned = false;
  async function cleanup(): Promise<void> {
    if (cleaned) return;
    cleaned = true;
    for (const c of [...procs]) await stop(c);
    ld?.destroy();
    lc?.destroy();
    await tb?.destroy();
    await ta.destroy();
  }
  const onSignal = () => { void cleanup().finally(() => process.exit(130)); };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let overlayPackets = 0, drops = 0;
  try {
    tb = new Topology({ nodeIp: B.underlayIP, podCidr: B.podCIDR, ext: ta.ext });
    lc = new LinuxVxlanNode(ta.ext, C.underlayIP, C.podCIDR);
    ld = new LinuxVxlanNode(ta.ext, D.underlayIP, D.podCIDR);
    lc.peer({ ...D, vtepMAC: ld.vtepMac });
    ld.peer({ ...C, vtepMAC: lc.vtepMac });
    const pa = await ta.addPod("pa"), pb = await tb.addPod("pb");
    const pc = lc.addPod("pc"), pd = ld.addPod("pd");
    const base = { mode: "tun", serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16", services: [] };
    ta.writeConfig({ ...base, node: A, nodes: [B] });
    tb.writeConfig({ ...base, node: B, nodes: [A] });
    // full-wasm by default; offload mode (the kernel's vxlan carries the established flows) in its own turn
    for (const t of [ta, tb]) t.daemonArgs = ["--offload", "off"];
    let daemons = await Promise.all([ta.startDaemon(), tb.startDaemon()]);
    await iperfServer(pb);
    await iperfServer(pd);
    // The wasp figures are only meaningful if the packets went through the engines' tunnel, the
    // way each figure says (status: tunnel GSO on or off).
    const account = async (cut: boolean): Promise<void> => {
      for (const t of [ta, tb!]) {
        const s = await control(t.socketPath, { cmd: "status" });
        overlayPackets += s.counters.verdicts.overlay as number;
        drops += Object.values(s.counters.drops as Record<string, number>).reduce((a, b) => a + b, 0);
        if (cut !== !("device" in (s.tunnelGso ?? {}))) {
          throw new Error(`tunnel GSO was ${cut ? "on" : "off"} where it should not be: ${JSON.stringify(s.tunnelGso)}`);
        }
      }
    };
    let current: WaspMode = "full";
    const restart = async (next: WaspMode): Promise<void> => {
      if (current !== "offload") await account(current === "cut");
      for (const [t, d] of [[ta, daemons[0]], [tb!, daemons[1]]] as const) await t.stopProcess(d.child);
      if (next === "cut") process.env.WASP_NO_TUNNEL_GSO = "1";
      for (const t of [ta, tb!]) t.daemonArgs = ["--offload", next === "offload" ? "on" : "off"];
      try {
        daemons = await Promise.all([ta.startDaemon(), tb!.startDaemon()]);
      } finally {
        delete process.env.WASP_NO_TUNNEL_GSO;
      }
      current = next;
    };

    const client: Record<Kind, [Pod, Pod]> = { wasp: [pa, pb], wasp_cut: [pa, pb], wasp_offload: [pa, pb], linux: [pc, pd], linux_nogso: [pc, pd], linux_ct: [pc, pd] };
    for (let i = 0; i < reps; i++) {
      for (const k of ["wasp", "linux", "linux_nogso"] as const) {
        if (k === "linux_nogso") tunnelGso([lc, ld], false);
        try {
          tcp[k].push(await tcpGbps(client[k][0].ns, secs, client[k][1].ip));
        } finally {
          if (k === "linux_nogso") tunnelGso([lc, ld], true);
        }
      }
      for (const k of ["wasp", "linux"] as const) udp[k].push(await udpKpps(client[k][0].ns, secs, client[k][1].ip));
      await restart("cut");
      tcp.wasp_cut.push(await tcpGbps(pa.ns, secs, pb.ip));
      await restart("offload");
      tcp.wasp_offload.push(await tcpGbps(pa.ns, secs, pb.ip));
      tcp.linux.push(await tcpGbps(pc.ns, secs, pd.ip));
      offloadTable([lc, ld], true);
      try {
        tcp.linux_ct.push(await tcpGbps(pc.ns, secs, pd.ip));
      } finally {
        offloadTable([lc, ld], false);
      }
      udp.wasp_offload.push(await udpKpps(pa.ns, secs, pb.ip));
      await restart("full");
      console.log(`rep ${i + 1}: tcp wasp ${tcp.wasp[i]!.toFixed(2)} (cutting ${tcp.wasp_cut[i]!.toFixed(2)}, offload ${tcp.wasp_offload[i]!.toFixed(2)}) linux ${tcp.linux[2 * i]!.toFixed(2)}, ${tcp.linux[2 * i + 1]!.toFixed(2)} (with conntrack ${tcp.linux_ct[i]!.toFixed(2)}) ` +
        `linux without tunnel GSO ${tcp.linux_nogso[i]!.toFixed(2)} Gbit/s; udp wasp ${udp.wasp[i]!.toFixed(0)} (offload ${udp.wasp_offload[i]!.toFixed(0)}) linux ${udp.linux[i]!.toFixed(0)} kpps`);
    }
    await account(false);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }
  if (overlayPackets === 0) throw new Error("the wasp nodes encapsulated nothing: the wasp figures did not cross the engines");

  const m = (xs: number[], d = 3) => round(median(xs), d);
  const metrics: Record<string, number> = {
    wasp_tcp_gbps: m(tcp.wasp),
    wasp_cut_tcp_gbps: m(tcp.wasp_cut),
    linux_vxlan_tcp_gbps: m(tcp.linux),
    linux_vxlan_nogso_tcp_gbps: m(tcp.linux_nogso),
    linux_vxlan_ct_tcp_gbps: m(tcp.linux_ct),
    wasp_udp_kpps: m(udp.wasp, 1),
    linux_vxlan_udp_kpps: m(udp.linux, 1),
    wasp_offload_tcp_gbps: m(tcp.wasp_offload),
    wasp_offload_udp_kpps: m(udp.wasp_offload, 1),
  };
  metrics.wasp_offload_vs_linux_tcp_ratio = round(metrics.wasp_offload_tcp_gbps! / metrics.linux_vxlan_tcp_gbps!, 2);
  metrics.wasp_offload_vs_linux_ct_tcp_ratio = round(metrics.wasp_offload_tcp_gbps! / metrics.linux_vxlan_ct_tcp_gbps!, 2);
  metrics.linux_ct_vs_linux_tcp_ratio = round(metrics.linux_vxlan_ct_tcp_gbps! / metrics.linux_vxlan_tcp_gbps!, 2);
  metrics.wasp_offload_vs_linux_udp_ratio = round(metrics.wasp_offload_udp_kpps! / metrics.linux_vxlan_udp_kpps!, 2);
  metrics.wasp_vs_linux_tcp_ratio = round(metrics.wasp_tcp_gbps! / metrics.linux_vxlan_tcp_gbps!, 2);
  metrics.wasp_tunnel_gso_gain_ratio = round(metrics.wasp_tcp_gbps! / metrics.wasp_cut_tcp_gbps!, 2);
  metrics.wasp_vs_linux_nogso_tcp_ratio = round(metrics.wasp_tcp_gbps! / metrics.linux_vxlan_nogso_tcp_gbps!, 2);
  metrics.wasp_vs_linux_udp_ratio = round(metrics.wasp_udp_kpps! / metrics.linux_vxlan_udp_kpps!, 2);
  metrics.wasp_overlay_packets = overlayPackets;
  metrics.wasp_drops = drops;
  metrics.repetitions = reps;
  metrics.seconds_per_measurement = secs;
  writeResults("overlay", metrics);
  return metrics;
}
