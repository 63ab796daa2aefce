// Three wasp nodes on one underlay switch (a bridge in a namespace, test/helpers/topology.ts), a pod
// or two on each, every node running `wasp daemon`: pod-to-pod across nodes without NAT, a
// ClusterIP with its backends on the other two nodes, path MTU through the tunnel, VXLAN from
// strangers dropped and counted, and node leave / join / IP change as reloads while a flow between
// the other two nodes loses nothing. Judges: the kernels of the pods (what they received, from whom,
// the path MTU they learned), tcpdump captures decoded by tshark, the daemons' control sockets.
import { strict as assert } from "node:assert";
import { type ChildProcess } from "node:child_process";
import { inNs, ip, spawnInNs, stop } from "../helpers/netns.js";
import { packet } from "../helpers/packets.js";
import { LINKTYPE_ETHERNET } from "../helpers/pcap.js";
import { CHECKSUM_GOOD, dissect } from "../helpers/tshark.js";
import { askUntilCovered, assertStreamed, control, everyBackend, startCapture, Topology, waitFor, type DaemonProc, type Pod } from "../helpers/topology.js";

const A = { name: "node-a", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" };
const B = { name: "node-b", underlayIP: "10.99.0.3", podCIDR: "10.244.2.0/24" };
const C = { name: "node-c", underlayIP: "10.99.0.4", podCIDR: "10.244.3.0/24" };
const A_NEW_IP = "10.99.0.5";
const VIP = "10.96.0.70";
const BULK_VIP = "10.96.0.71";
const UNDERLAY_MTU = 1500;
// RFC 7348 overhead: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
const TUNNEL_MTU = UNDERLAY_MTU - 50;

/** Prints each datagram that arrives on argv[1] as one line: "<from> <payload>". */
const LISTEN = `
const u = require("node:dgram").createSocket("udp4");
u.on("message", (m, r) => console.log(r.address + " " + m.toString()));
u.bind(Number(process.argv[1]), "0.0.0.0", () => console.log("ready"));`;

/** Sends argv[3] (hex) from argv[1] (bound, any port) to argv[2]:8472, once. */
const INJECT = `
const s = require("node:dgram").createSocket("udp4");
s.bind(0, process.argv[1], () => s.send(Buffer.from(process.argv[3], "hex"), 8472, process.argv[2], (e) => { if (e) { console.error(e.message); process.exitCode = 1; } s.close(); }));`;

/** A steady UDP flow: 4 datagrams every 4 ms carrying a sequence number to argv[1]:argv[2] for
 *  argv[3] ms, then "end" a few times; prints how many it sent. */
const FLOW_SEND = `
const s = require("node:dgram").createSocket("udp4"), host = process.argv[1], port = Number(process.argv[2]);
const end = Date.now() + Number(process.argv[3]); let seq = 0;
const t = setInterval(() => {
  if (Date.now() > end) {
    clearInterval(t);
    let k = 0; const fin = setInterval(() => { s.send("end", port, host); if (++k === 5) { clearInterval(fin); setTimeout(() => { console.log(JSON.stringify({ sent: seq })); s.close(); }, 50); } }, 20);
    return;
  }
  for (let i = 0; i < 4; i++) s.send(String(seq++), port, host);
}, 4);`;

/** Counts the flow's datagrams on argv[1] until "end": received, distinct, missing sequence numbers. */
const FLOW_RECV = `
const u = require("node:dgram").createSocket("udp4"), seen = new Set(); let n = 0, max = -1, done = false, from = "";
u.on("message", (m, r) => {
  const s = m.toString();
  if (s === "end") { if (!done) { done = true; let missing = 0; for (let i = 0; i <= max; i++) if (!seen.has(i)) missing++;
    console.log(JSON.stringify({ received: n, distinct: seen.size, max, missing, from })); u.close(); } return; }
  n++; from = r.address; const q = Number(s); seen.add(q); if (q > max) max = q;
});
u.bind(Number(process.argv[1]), "0.0.0.0", () => console.log("ready"));`;

function mac(s: string): number[] { return s.split(":").map((x) => parseInt(x, 16)); }
const vtepMac = (underlay: string) => [2, ...underlay.split(".").map(Number), 1];

/** A VXLAN payload (RFC 7348 §5: I flag, 24-bit VNI) carrying an Ethernet frame with `inner`. */
function vxlan(vni: number, dstMac: number[], srcMac: number[], inner: Uint8Array): Buffer {
  const h = Buffer.alloc(8 + 14);
  h[0] = 0x08; h.writeUIntBE(vni, 4, 3);
  Buffer.from(dstMac).copy(h, 8); Buffer.from(srcMac).copy(h, 14); h.writeUInt16BE(0x0800, 20);
  return Buffer.concat([h, inner]);
}

/** full-wasm: every node's overlay is the engine's; mixed: one node in offload mode among them. */
const LAYOUT_NAMES = { "full-wasm": "every node full-wasm", mixed: "node A in offload mode, B and C full-wasm" } as const;

for (const layout of ["full-wasm", "mixed"] as const) {
  describe(`overlay: three wasp nodes on one underlay switch, ${LAYOUT_NAMES[layout]} (integration, needs root)`, function () {
    this.timeout(180_000);
    let ta: Topology, tb: Topology, tc: Topology;
    let da: DaemonProc, db: DaemonProc, dc: DaemonProc;
    let pa: Pod, pbig: Pod, pb: Pod, pc: Pod, pcbig: Pod;
    const extra = new Set<ChildProcess>();

    const services = () => [{
      name: "spread", clusterIP: VIP,
      ports: [{ name: "http", port: 80, targetPort: 8080 }, { name: "dns", port: 53, protocol: "UDP", targetPort: 5353 }],
      backends: [{ ip: pb.ip, nodeName: B.name }, { ip: pc.ip, nodeName: C.name }],
    }, {
      name: "bulk", clusterIP: BULK_VIP, ports: [{ name: "sink", port: 5201, targetPort: 5201 }],
      backends: [{ ip: pb.ip, nodeName: B.name }],
    }];
    const config = (self: typeof A, peers: Array<typeof A>) => ({
      mode: "tun", node: { ...self, underlayMTU: UNDERLAY_MTU }, serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16",
      services: services(), nodes: peers,
    });
    const reloads = (d: DaemonProc) => d.lines().filter((l) => String(l.msg).startsWith("reload applied")).length;
    /** Writes each node's new config and waits until each daemon applied it. */
    async function reload(changes: Array<[Topology, DaemonProc, unknown]>): Promise<void> {
      const before = changes.map(([, d]) => reloads(d));
      for (const [t, , c] of changes) t.writeConfig(c);
      await Promise.all(changes.map(([, d], i) => waitFor(() => reloads(d) > before[i]!, "the reload", 10000)));
    }
    function run(ns: string, script: string, ...args: string[]): { child: ChildProcess; out: () => string } {
      const child = spawnInNs(ns, process.execPath, ["-e", script, ...args]);
      extra.add(child);
      let text = "";
      child.stdout?.on("data", (d: Buffer) => { text += d.toString(); });
      child.stderr?.on("data", (d: Buffer) => { text += d.toString(); });
      return { child, out: () => text };
    }
    async function runToEnd(ns: string, script: string, ...args: string[]): Promise<string> {
      const r = run(ns, script, ...args);
      await new Promise((resolve) => r.child.once("exit", resolve));
      extra.delete(r.child);
      return r.out();
    }
    function raiseMtu(t: Topology, pod: Pod): void {
      const hostVeth = (JSON.parse(ip(t.node, "-j", "route", "get", pod.ip)) as Array<{ dev: string }>)[0]!.dev;
      ip(t.node, "link", "set", hostVeth, "mtu", String(UNDERLAY_MTU));
      ip(pod.ns, "link", "set", "eth0", "mtu", String(UNDERLAY_MTU));
    }
    const drops = async (t: Topology) => (await control(t.socketPath, { cmd: "status" })).counters.drops as Record<string, number>;

    before(async () => {
      ta = new Topology({ nodeIp: A.underlayIP, podCidr: A.podCIDR });
      tb = new Topology({ nodeIp: B.underlayIP, podCidr: B.podCIDR, ext: ta.ext });
      tc = new Topology({ nodeIp: C.underlayIP, podCidr: C.podCIDR, ext: ta.ext });
      // full-wasm: the engine's overlay (encap, GSO, PMTU, decap checks) on every node; mixed: node A
      // in offload mode (the kernel's vxlan device carries its established flows) beside two
      // full-wasm nodes, as a cluster mid-upgrade runs
      for (const t of [ta, tb, tc]) t.daemonArgs = ["--offload", "off"];
      if (layout === "mixed") ta.daemonArgs = ["--offload", "on"];
      pa = await ta.addPod("pa");
      pbig = await ta.addPod("pbig");
      pb = await tb.addPod("pb");
      pc = await tc.addPod("pc");
      pcbig = await tc.addPod("pcbig");
      // Pods whose links are not reduced by the overlay (as with a runtime that ignores the CNI MTU).
      raiseMtu(ta, pbig);
      raiseMtu(tc, pcbig);
      ta.writeConfig(config(A, [B, C]));
      tb.writeConfig(config(B, [A, C]));
      tc.writeConfig(config(C, [A, B]));
      for (const [t, p] of [[ta, pa], [tb, pb], [tc, pc]] as const) await t.serve(p.ns, [8080], 5353);
      await tb.sink(pb.ns, 5201);
      await tc.sink(pcbig.ns, 5201);
      // one after another: three daemons compiling their TypeScript at once can starve a 2-core machine
      da = await ta.startDaemon();
      db = await tb.startDaemon();
      dc = await tc.startDaemon();
    });

    after(async () => {
      for (const c of extra) await stop(c);
      await tc?.destroy();
      await tb?.destroy();
      await ta?.destroy();
    });

    it("pod -> pod across every pair of nodes, TCP, UDP and ICMP, without NAT: the receiver sees the sender's pod IP", async () => {
      const pairs: Array<[Topology, Pod, Pod]> = [[ta, pa, pb], [ta, pa, pc], [tb, pb, pc], [tc, pc, pa], [tb, pb, pa], [tc, pc, pb]];
      for (const [t, from, to] of pairs) {
        const [tcp, udp] = await t.requests(from.ns, [{ host: to.ip, port: 8080 }, { proto: "udp", host: to.ip, port: 5353 }]);
        assert.ok(tcp!.ok && udp!.ok, `${from.name} -> ${to.name}: ${JSON.stringify([tcp, udp])}`);
        assert.equal(tcp!.seen!.remote, from.ip, `${to.name} saw the TCP client as ${tcp!.seen!.remote}`);
        assert.equal(udp!.seen!.remote, from.ip, `${to.name} saw the UDP client as ${udp!.seen!.remote}`);
        assert.equal(udp!.from, to.ip);
        const ping = inNs(from.ns, "busybox", "ping", "-c", "1", "-W", "2", to.ip);
        assert.match(ping, new RegExp(`1 packets received`), `${from.name} -> ${to.name}: ${ping}`);
      }
    });

    it("a ClusterIP on node A with backends on nodes B and C: both answer, each sees the client's pod IP, replies come from the VIP", async () => {
      const first = await ta.requests(pa.ns, [
        ...Array.from({ length: 16 }, () => ({ host: VIP, port: 80 })),
        ...Array.from({ length: 4 }, () => ({ proto: "udp" as const, host: VIP, port: 53 })),
      ]);
      // 16 TCP connections, and more until both backends have answered (64 at most)
      const tcp = await askUntilCovered(first.slice(0, 16), everyBackend(pb.ip, pc.ip),
        (n) => ta.requests(pa.ns, Array.from({ length: n }, () => ({ host: VIP, port: 80 }))));
      const udp = first.slice(16), out = [...tcp, ...udp];
      assert.ok(out.every((o) => o.ok), JSON.stringify(out.filter((o) => !o.ok)));
      assert.deepEqual(new Set(tcp.map((o) => o.seen!.local)), new Set([pb.ip, pc.ip]), `random choice over ${tcp.length} connections reaches both backends`);
      for (const o of out) assert.equal(o.seen!.remote, pa.ip, "no SNAT for a pod client");
      for (const o of udp) assert.equal(o.from, VIP, "the UDP reply is reverse-NATed on node A");
    });

    if (layout === "mixed") {
      it("8 MiB to a ClusterIP whose backend is on full-wasm node B, from a pod on offload node A, arrive intact without SNAT (A's kernel NATs and encapsulates, B's engine decapsulates)", async () => {
        const r = await ta.stream(pa.ns, BULK_VIP, 5201, 8 << 20);
        assertStreamed(r, 8 << 20, pa.ip, "the backend sees the client pod");
        const st = await control(ta.socketPath, { cmd: "status" });
        assert.equal(st.offload.on, true, "node A runs offload mode");
        assert.ok(st.counters.named.offloaded > 0, `node A's engine handed flows to its kernel: ${JSON.stringify(st.counters.named)}`);
      });
      return;   // the rest checks the engine's own overlay
    }

    it("8 MiB to a ClusterIP whose backend is on node B arrive intact without SNAT: node A's kernel cuts the DNATed TSO packets, its TCP checksums made from the partial sum the engine patched, and node B checks them", async () => {
      // software segmentation on A's underlay port: the checksums are computed there, not left to
      // B's kernel to trust (wasp on B verifies what it merges; the pod's kernel the rest)
      ta.wireLikeUnderlay();
      const before = (await control(ta.socketPath, { cmd: "status" })).counters.named.tunnel_gso_sent as number;
      const r = await ta.stream(pa.ns, BULK_VIP, 5201, 8 << 20);
      assertStreamed(r, 8 << 20, pa.ip, "the backend sees the client pod");
      const st = await control(ta.socketPath, { cmd: "status" });
      if (st.tunnelGso && "device" in st.tunnelGso) assert.ok(st.counters.named.tunnel_gso_sent > before, JSON.stringify(st.counters.named));
      else assert.ok(st.tunnelGso?.off, JSON.stringify(st.tunnelGso));
    });

    it("PMTU: a DF datagram from a pod with MTU 1500 too big for the tunnel gets ICMP fragmentation-needed with MTU 1450, and the pod's kernel learns it", async () => {
      const before = await drops(ta);
      const cap = await startCapture(pbig.ns, "eth0", "icmp or udp port 9999");
      // Linux UDP sockets set DF by default (IP_PMTUDISC_WANT): 1472 bytes + 28 = a 1500-byte packet.
      // The socket stays open a while: the kernel takes the ICMP error's MTU only for a socket the
      // quoted datagram belongs to (__udp4_lib_err).
      const send = `const s = require("node:dgram").createSocket("udp4"); s.send(Buffer.alloc(1472, 120), 9999, "${pb.ip}", () => setTimeout(() => s.close(), 1500));`;
      const sender = run(pbig.ns, send);
      await waitFor(() => /mtu 1450/.test(ip(pbig.ns, "route", "get", pb.ip)), "the pod's route cache to learn the tunnel MTU", 5000);
      await stop(sender.child);
      extra.delete(sender.child);
      const frames = dissect((await cap.stop()).map((f) => f.data), LINKTYPE_ETHERNET);
      const sent = frames.find((f) => f.get("udp.dstport") === "9999" && !f.has("icmp.type"));
      assert.ok(sent, "the pod sent the datagram");
      assert.equal(sent.get("ip.len"), "1500");
      assert.equal(sent.get("ip.flags.df"), "1", "sent with DF");
      const err = frames.find((f) => f.get("icmp.type") === "3");
      assert.ok(err, "an ICMP error came back");
      assert.equal(err.get("icmp.code"), "4", "fragmentation needed and DF set (RFC 792)");
      assert.equal(err.get("icmp.mtu"), String(TUNNEL_MTU), "RFC 1191: next-hop MTU = underlay MTU - 50");
      assert.equal(err.get("icmp.checksum.status"), CHECKSUM_GOOD);
      assert.equal(err.all("ip.dst")[0], pbig.ip);
      assert.equal(err.all("ip.dst")[1], pb.ip, "it quotes the datagram to the remote pod");
      assert.equal(((await drops(ta)).too_big ?? 0) - (before.too_big ?? 0), 1, "counted as too_big");
    });

    it("large TCP transfers cross the tunnel: 16 MiB at the default pod MTU, and 8 MiB between two MTU-1500 pods by PMTU discovery; no underlay packet exceeds 1500 bytes, none is fragmented", async () => {
      // Every node sends a pod's TSO packet as one UDP-tunnel GSO frame (A the data) and a run of one
      // flow's packets as one UDP GSO datagram (B and C their ACKs), which a veth passes on whole:
      // segment them as a NIC would, to see the wire.
      for (const t of [ta, tb, tc]) t.wireLikeUnderlay();
      const sentWhole = (await control(ta.socketPath, { cmd: "status" })).counters.named.tunnel_gso_sent as number;
      const cap = await startCapture(ta.ext, "n1", "udp port 8472", 96);
      const r1 = await ta.stream(pa.ns, pb.ip, 5201, 16 << 20);
      // Both ends at MTU 1500 advertise MSS 1460: only the ICMP errors from node A's engine make
      // the sender's TCP fit its segments to the tunnel.
      const before = await drops(ta);
      const r2 = await ta.stream(pbig.ns, pcbig.ip, 5201, 8 << 20);
      const tooBig = ((await drops(ta)).too_big ?? 0) - (before.too_big ?? 0);
      const frames = await cap.stop();
      assertStreamed(r1, 16 << 20, pa.ip);
      assertStreamed(r2, 8 << 20);
      assert.ok(tooBig >= 1, "PMTU discovery was needed: the engine answered too-big segments");
      assert.match(ip(pbig.ns, "route", "get", pcbig.ip), /mtu 1450/);
      assert.ok(frames.length > 10000, `${frames.length} underlay frames`);
      const ipLens = frames.map((f) => f.orig - 14);
      const largest = Math.max(...ipLens);
      assert.ok(largest <= UNDERLAY_MTU, `largest underlay packet ${largest} bytes`);
      assert.equal(largest, UNDERLAY_MTU, "full-sized segments fill the underlay MTU exactly");
      // IPv4 flags/fragment offset: MF or an offset means a fragment
      const fragments = frames.filter((f) => (((f.data[14 + 6]! << 8) | f.data[14 + 7]!) & 0x3fff) !== 0);
      assert.equal(fragments.length, 0, "no fragments on the underlay");
      // what the kernel cut from wasp's whole frames is among what was checked, where it can
      const st = await control(ta.socketPath, { cmd: "status" });
      if (st.tunnelGso && "device" in st.tunnelGso) assert.ok(st.counters.named.tunnel_gso_sent > sentWhole, JSON.stringify(st.counters.named));
      else assert.ok(st.tunnelGso?.off, JSON.stringify(st.tunnelGso));
    });

    it("VXLAN with a wrong VNI, from an unknown underlay source, or with a spoofed inner source is dropped and counted; the same packet done right is delivered", async () => {
      const listener = run(pb.ns, LISTEN, "7777");
      await waitFor(() => listener.out().includes("ready"), "the listener in pod b");
      const inner = (src: string, what: string) => packet({ src, dst: pb.ip, ttl: 64 }, { proto: "udp", sport: 4444, dport: 7777, payload: Buffer.from(what) });
      const frame = (vni: number, src: string, what: string) => vxlan(vni, vtepMac(B.underlayIP), mac("02:0a:63:00:01:01"), inner(src, what)).toString("hex");
      const before = await drops(tb);
      await runToEnd(ta.node, INJECT, A.underlayIP, B.underlayIP, frame(1, pa.ip, "right"));
      await runToEnd(ta.node, INJECT, A.underlayIP, B.underlayIP, frame(2, pa.ip, "wrong-vni"));
      await runToEnd(ta.ext, INJECT, "10.99.0.2", B.underlayIP, frame(1, pa.ip, "unknown-peer"));
      await runToEnd(ta.node, INJECT, A.underlayIP, B.underlayIP, frame(1, "10.244.3.50", "spoofed"));
      await waitFor(() => listener.out().includes("right"), "the well-formed datagram in pod b", 5000);
      await new Promise((r) => setTimeout(r, 300));
      await stop(listener.child);
      const lines = listener.out().trim().split("\n").filter((l) => l !== "ready");
      assert.deepEqual(lines, [`${pa.ip} right`], "only the well-formed packet reaches the pod");
      const after = await drops(tb);
      const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
      assert.deepEqual({ unknown_vni: delta("unknown_vni"), unknown_peer: delta("unknown_peer"), spoofed_inner_source: delta("spoofed_inner_source") },
        { unknown_vni: 1, unknown_peer: 1, spoofed_inner_source: 1 });
    });

    it("node A leaves, joins again and changes its underlay IP (reloads on B and C, a restart on A) while a UDP flow from B to C loses nothing", async () => {
      const recv = run(pc.ns, FLOW_RECV, "6000");
      await waitFor(() => recv.out().includes("ready"), "the flow receiver");
      const send = run(pb.ns, FLOW_SEND, pc.ip, "6000", "7000");
      const sendDone = new Promise((resolve) => send.child.once("exit", resolve));
      const steps: string[] = [];
      await new Promise((r) => setTimeout(r, 500));
      // leave
      await reload([[tb, db, config(B, [C])], [tc, dc, config(C, [B])]]);
      steps.push("leave");
      const gone = await tb.request(pb.ns, { host: pa.ip, port: 8080, timeoutMs: 1000 });
      assert.ok(!gone.ok, "B no longer routes to A's pods");
      // join
      await reload([[tb, db, config(B, [A, C])], [tc, dc, config(C, [A, B])]]);
      steps.push("join");
      // IP change: A restarts on its new address; B and C learn it by reload
      const A2 = { ...A, underlayIP: A_NEW_IP };
      await ta.stopProcess(da.child);
      ip(ta.node, "addr", "add", `${A_NEW_IP}/24`, "dev", "eth0");
      ta.writeConfig(config(A2, [B, C]));
      da = await ta.startDaemon();
      await reload([[tb, db, config(B, [A2, C])], [tc, dc, config(C, [A2, B])]]);
      steps.push("ip change");
      await sendDone;
      await waitFor(() => recv.child.exitCode !== null, "the flow receiver to finish", 5000);
      extra.delete(send.child); extra.delete(recv.child);
      const sent = JSON.parse(send.out().trim().split("\n").pop()!).sent as number;
      const got = JSON.parse(recv.out().trim().split("\n").pop()!) as { received: number; distinct: number; missing: number; from: string };
      assert.deepEqual(steps, ["leave", "join", "ip change"], "all three changes happened during the flow");
      assert.ok(sent > 2000, `${sent} datagrams sent`);
      assert.deepEqual({ distinct: got.distinct, missing: got.missing }, { distinct: sent, missing: 0 }, JSON.stringify(got));
      assert.equal(got.from, pb.ip);
      // A on its new address works with both; B's and C's view of A follows the reload
      const [ab, ac] = await ta.requests(pa.ns, [{ host: pb.ip, port: 8080 }, { host: pc.ip, port: 8080 }]);
      assert.ok(ab!.ok && ac!.ok, JSON.stringify([ab, ac]) + da.log());
      const ba = await tb.request(pb.ns, { host: pa.ip, port: 8080 });
      assert.ok(ba.ok, JSON.stringify(ba));
      assert.equal(ba.seen!.remote, pb.ip);
    });
  });
}
