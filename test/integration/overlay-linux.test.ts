// A wasp node and a node whose overlay is the kernel's own vxlan device, set up as flannel's vxlan
// backend sets it up (LinuxVxlanNode: flannel.1 `vxlan id 1 dstport 8472 nolearning`, static FDB,
// neighbour and route entries), on one underlay bridge. The kernel is the independent judge: it
// decapsulates what wasp encapsulates and the other way round; a capture on the underlay is decoded
// by tshark (VXLAN on 8472, checksum validation on).
import { strict as assert } from "node:assert";
import { inNs } from "../helpers/netns.js";
import { CHECKSUM_BAD, CHECKSUM_GOOD, CHECKSUM_NOT_PRESENT, dissect, type Dissected } from "../helpers/tshark.js";
import { LINKTYPE_ETHERNET } from "../helpers/pcap.js";
import { assertStreamed, control, LinuxVxlanNode, startCapture, Topology, type DaemonProc, type Pod } from "../helpers/topology.js";

const A = { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" };
const L = { underlayIP: "10.99.0.3", podCIDR: "10.244.2.0/24" };
// wasp's own VTEP MAC when the config names none: 02 + the underlay address + 01 (src/model
// deriveVtepMac); the Linux side is told it as flannel would be told a node annotation.
const A_VTEP_MAC = "02:0a:63:00:01:01";

/** A wasp node A and a Linux vxlan node L that know each other, a pod on each; `offloads` false
 *  makes L's eth0 checksum in software, as a NIC's wire would show. */
async function waspLinuxPair(offloads: boolean): Promise<{ ta: Topology; ln: LinuxVxlanNode; pa: Pod; pl: Pod }> {
  const ta = new Topology({ nodeIp: A.underlayIP, podCidr: A.podCIDR });
  // the engine's own overlay against Linux's (in offload mode the node's overlay is a Linux vxlan device too)
  ta.daemonArgs = ["--offload", "off"];
  let ln: LinuxVxlanNode | undefined;
  try {
    ln = new LinuxVxlanNode(ta.ext, L.underlayIP, L.podCIDR);
    if (!offloads) inNs(ln.node, "ethtool", "-K", "eth0", "tx", "off");
    const pa = await ta.addPod("pa"), pl = ln.addPod("pl");
    ln.peer({ underlayIP: A.underlayIP, podCIDR: A.podCIDR, vtepMAC: A_VTEP_MAC });
    ta.writeConfig({
      mode: "tun", node: A, serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16", services: [],
      nodes: [ln.asPeer("linux-b")],
    });
    return { ta, ln, pa, pl };
  } catch (e) {
    ln?.destroy();
    await ta.destroy();
    throw e;
  }
}

describe("overlay: wasp node <-> Linux vxlan node in the flannel convention (integration, needs root)", function () {
  this.timeout(60_000);
  let ta: Topology, ln: LinuxVxlanNode;
  let da: DaemonProc;
  let pa: Pod, pl: Pod;
  let frames: Dissected[] = [];

  before(async () => {
    // Real checksums on the wire (not the partial ones veth offload leaves) so tshark can judge them.
    ({ ta, ln, pa, pl } = await waspLinuxPair(false));
    await ta.serve(pa.ns, [8080]);
    await ta.serve(pl.ns, [8080]);
    da = await ta.startDaemon();
  });

  after(async () => {
    ln?.destroy();
    await ta?.destroy();
  });

  it("ICMP echo and TCP both ways: the kernel decapsulates wasp's VXLAN and wasp the kernel's; each side sees the other's pod IP", async () => {
    ta.wireLikeUnderlay(); // wasp may send a flow's segments as one UDP GSO datagram: see the wire's frames
    const cap = await startCapture(ta.ext, ln.port, "udp port 8472");
    try {
      const ping1 = inNs(pa.ns, "busybox", "ping", "-c", "2", "-W", "2", pl.ip);
      assert.match(ping1, /2 packets received/, ping1);
      const ping2 = inNs(pl.ns, "busybox", "ping", "-c", "2", "-W", "2", pa.ip);
      assert.match(ping2, /2 packets received/, ping2);
      const t1 = await ta.request(pa.ns, { host: pl.ip, port: 8080 });
      assert.ok(t1.ok, JSON.stringify(t1) + da.log());
      assert.equal(t1.seen!.remote, pa.ip, "the Linux pod sees the wasp pod's own address");
      const t2 = await ta.request(pl.ns, { host: pa.ip, port: 8080 });
      assert.ok(t2.ok, JSON.stringify(t2) + da.log());
      assert.equal(t2.seen!.remote, pl.ip, "the wasp pod sees the Linux pod's own address");
    } finally {
      frames = dissect((await cap.stop()).map((f) => f.data), LINKTYPE_ETHERNET);
    }
    assert.ok(frames.length >= 16, `${frames.length} VXLAN frames captured`);
  });

  it("tshark decodes every underlay frame as VXLAN VNI 1 to UDP 8472, inner Ethernet to the receiving VTEP's MAC, inner addresses the pods'", () => {
    const dirs = new Set<string>();
    for (const f of frames) {
      const [outerSrc, innerSrc] = f.all("ip.src"), [outerDst, innerDst] = f.all("ip.dst");
      assert.ok(f.has("vxlan.vni"), `not VXLAN: ${JSON.stringify([...f.fields.keys()])}`);
      assert.equal(f.get("vxlan.vni"), "1");
      assert.equal(f.get("udp.dstport"), "8472");
      const fromWasp = outerSrc === A.underlayIP;
      assert.deepEqual([outerSrc, outerDst], fromWasp ? [A.underlayIP, L.underlayIP] : [L.underlayIP, A.underlayIP]);
      assert.deepEqual([innerSrc, innerDst].sort(), [pa.ip, pl.ip].sort());
      // eth.dst: the outer frame's, then the inner frame's
      assert.equal(f.all("eth.dst")[1], fromWasp ? ln.vtepMac : A_VTEP_MAC);
      // RFC 7348 §5: the outer source port is a flow hash, in the dynamic range for wasp
      if (fromWasp) assert.ok(Number(f.get("udp.srcport")) >= 49152, `outer source port ${f.get("udp.srcport")} in the dynamic range 49152-65535`);
      dirs.add(`${fromWasp ? "wasp->linux" : "linux->wasp"} ${f.has("tcp.srcport") ? "tcp" : f.has("icmp.type") ? "icmp" : "other"}`);
    }
    assert.deepEqual([...dirs].sort(), ["linux->wasp icmp", "linux->wasp tcp", "wasp->linux icmp", "wasp->linux tcp"]);
  });

  it("every checksum on the underlay is valid: outer and inner IPv4, outer UDP (from wasp zero, as RFC 7348 allows, or computed where a flow's segments went as one UDP GSO datagram), inner TCP and ICMP", () => {
    let tcp = 0, icmp = 0;
    for (const f of frames) {
      const fromWasp = f.get("ip.src") === A.underlayIP;
      if (f.has("tcp.srcport")) tcp++;
      if (f.has("icmp.type")) icmp++;
      const ipSums = f.all("ip.checksum.status");
      assert.deepEqual(ipSums, [CHECKSUM_GOOD, CHECKSUM_GOOD], `IPv4 checksums ${ipSums}`);
      const udpSum = f.get("udp.checksum.status");
      assert.ok(fromWasp ? udpSum === CHECKSUM_NOT_PRESENT || udpSum === CHECKSUM_GOOD : udpSum === CHECKSUM_GOOD, `outer UDP checksum status ${udpSum}`);
      if (f.has("tcp.srcport")) assert.equal(f.get("tcp.checksum.status"), CHECKSUM_GOOD, `inner TCP checksum (${fromWasp ? "from wasp" : "from Linux"})`);
      if (f.has("icmp.type")) assert.equal(f.get("icmp.checksum.status"), CHECKSUM_GOOD, "inner ICMP checksum");
      assert.ok(!f.all("_ws.expert.message").some((m) => /checksum/i.test(m)), f.expert().join("; "));
      assert.ok(!ipSums.includes(CHECKSUM_BAD), `no IPv4 checksum marked bad: ${ipSums}`);
    }
    assert.ok(tcp >= 8 && icmp >= 8, `${tcp} TCP and ${icmp} ICMP frames judged`);
  });

  it("the wasp daemon dropped nothing on the way", async () => {
    const s = await control(ta.socketPath, { cmd: "status" });
    const drops = Object.entries(s.counters.drops as Record<string, number>).filter(([, n]) => n > 0);
    assert.deepEqual(drops, [], JSON.stringify(drops));
    assert.ok(s.counters.verdicts.overlay > 0, JSON.stringify(s.counters.verdicts));
  });
});

// The same pair with the Linux node's offloads as the kernel leaves them on a veth (or a virtio NIC
// that passes offloads on to the receiving VM): its vxlan sends a pod's TSO packet as ONE frame of up
// to 64 KiB, and every TCP checksum inside as the partial (pseudo-header) sum that a NIC would have
// finished. The kernel's own vxlan receiver gets that state with the skb; wasp's UDP socket gets only
// the bytes, so wasp must pass the frame on as one GSO packet (its vnet TUN takes it whole, as the
// kernel's vxlan receiver would) or cut it as a NIC would and finish the checksums; otherwise the
// pod's TCP drops every segment (before this was handled: not even the SYN got through). The other
// way wasp sends its pod's TSO packets whole too (UDP-tunnel GSO), and the Linux node takes them.
describe("overlay: a Linux vxlan node that leaves segmentation and checksums to offload (veth underlay) (integration, needs root)", function () {
  this.timeout(90_000);
  let ta: Topology, ln: LinuxVxlanNode;
  let pa: Pod, pl: Pod;

  before(async () => {
    ({ ta, ln, pa, pl } = await waspLinuxPair(true));
    await ta.sink(pa.ns, 5001);
    await ta.sink(pl.ns, 5001);
    await ta.startDaemon();
  });

  after(async () => {
    ln?.destroy();
    await ta?.destroy();
  });

  it("the Linux node's eth0 offloads checksums and UDP tunnel segmentation (the premise)", () => {
    const k = inNs(ln.node, "ethtool", "-k", "eth0");
    assert.match(k, /^tx-checksumming: on/m, k);
    assert.match(k, /^tx-udp_tnl-segmentation: on/m, k);
  });

  it("32 MiB Linux pod -> wasp pod and 32 MiB back arrive intact; the TSO packets crossed whole both ways (or wasp completed their partial checksums) and wasp dropped nothing", async () => {
    const bytes = 32 << 20;
    const toWasp = await ta.stream(pl.ns, pa.ip, 5001, bytes);
    assertStreamed(toWasp, bytes, pl.ip, "no NAT between pods");
    const toLinux = await ta.stream(pa.ns, pl.ip, 5001, bytes);
    assertStreamed(toLinux, bytes);
    const s = await control(ta.socketPath, { cmd: "status" });
    // Every byte from Linux came with a partial checksum: whole in a GSO packet passed on (at most
    // 65,535 bytes each) or in a frame whose checksum wasp completed (at most 1,398 payload bytes).
    const n = s.counters.named;
    assert.ok(n.tunnel_gso_received * 65535 + n.inner_csum_completed * 1398 >= bytes, JSON.stringify(n));
    // and wasp's pod sent TSO packets the kernel took whole, unless this kernel cannot (status says why)
    if (s.tunnelGso && "device" in s.tunnelGso) assert.ok(n.tunnel_gso_sent > 0, JSON.stringify(n));
    else assert.ok(s.tunnelGso?.off, JSON.stringify(s.tunnelGso));
    const drops = Object.entries(s.counters.drops as Record<string, number>).filter(([, n]) => n > 0);
    assert.deepEqual(drops, [], JSON.stringify(drops));
  });
});
