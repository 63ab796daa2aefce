// The operator's commands against a running daemon on a one-node cluster in test namespaces
// (test/helpers/topology.ts): each command's table and --json output parsed, exit codes, the error
// when no daemon answers; `wasp trace` compared with what real traffic does for the same tuple
// (the kernel's sockets are the referee); `wasp replay` of a tcpdump capture of wasp0 compared with
// the live daemon's counters over the same packets.
import { strict as assert } from "node:assert";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Cli } from "../helpers/cli.js";
import { inNs, sh, spawnInNs, stop } from "../helpers/netns.js";
import { NODE_IP, POD_CIDR, Topology, waitFor, type DaemonProc, type Pod } from "../helpers/topology.js";

let cli: Cli;

/** Records in a classic pcap file so far (little-endian, as tcpdump writes on this machine). */
function pcapRecords(path: string): number {
  let b: Buffer;
  try { b = readFileSync(path); } catch { return 0; }
  let n = 0;
  for (let o = 24; o + 16 <= b.length; n++) {
    const len = b.readUInt32LE(o + 8);
    if (o + 16 + len > b.length) break;
    o += 16 + len;
  }
  return n;
}
const wasp = (args: readonly string[]) => cli.run(args);

describe("wasp CLI: status, services, backends, conntrack, routes, nodes, counters, trace, replay against a daemon (integration, needs root)", function () {
  this.timeout(90_000);
  let t: Topology;
  let client: Pod, b1: Pod, b2: Pod;
  let daemon: DaemonProc;
  const sock = () => ["--socket", t.socketPath];

  before(async () => {
    cli = await Cli.build();
    ({ t, client, b1, b2 } = await Topology.fullWasmWithPods());
    t.writeConfig({
      mode: "tun",
      node: { name: "node-a", underlayIP: NODE_IP, podCIDR: POD_CIDR },
      serviceCIDR: "10.96.0.0/16",
      clusterCIDR: "10.244.0.0/16",
      services: [
        {
          name: "web", clusterIP: "10.96.0.10",
          ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }, { name: "dns", port: 53, protocol: "UDP", targetPort: 5353 }],
          backends: [{ ip: b1.ip }, { ip: b2.ip }],
        },
        { name: "one", clusterIP: "10.96.0.40", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b2.ip }] },
        { name: "empty", clusterIP: "10.96.0.30", ports: [{ name: "http", port: 80, protocol: "TCP" }, { name: "dns", port: 53, protocol: "UDP" }], backends: [] },
        // its only endpoint is on node-b and the policy keeps pods on this node: dropped, as kube-proxy does
        { name: "local-only", clusterIP: "10.96.0.60", internalTrafficPolicy: "Local", ports: [{ port: 80, protocol: "TCP" }], backends: [{ ip: "10.244.2.9", nodeName: "node-b" }] },
      ],
      nodes: [{ name: "node-b", underlayIP: "10.99.0.5", podCIDR: "10.244.2.0/24" }],
    });
    await t.serve(b1.ns, [8080], 5353);
    await t.serve(b2.ns, [8080], 5353);
    daemon = await t.startDaemon();
    const warm = await t.requests(client.ns, Array.from({ length: 6 }, () => ({ host: "10.96.0.10", port: 80 })));
    assert.ok(warm.every((o) => o.ok), JSON.stringify(warm));
  });

  after(async () => {
    await t?.destroy();
    cli?.remove();
  });

  it("--help of the executable and of a command exits 0 on stdout; an unknown command or option exits 2 (each command's help: test/unit/cli)", async () => {
    const [top, cmd, unknown, badOpt] = await Promise.all([["--help"], ["trace", "--help"], ["frobnicate"], ["status", "--frob"]].map((a) => wasp(a)));
    assert.equal(top!.status, 0, top!.stderr);
    assert.match(top!.stdout, /^Usage: wasp \[options\] \[command\]/m);
    assert.match(top!.stdout, /Exit codes:/);
    assert.equal(cmd!.status, 0);
    assert.match(cmd!.stdout, /^Usage: wasp trace \[options\]/m);
    assert.match(cmd!.stdout, /--from <pod-or-ip>/);
    assert.equal(unknown!.status, 2);
    assert.match(unknown!.stderr, /unknown command 'frobnicate'/);
    assert.equal(badOpt!.status, 2);
    assert.match(badOpt!.stderr, /unknown option '--frob'/);
  });

  it("without a daemon, every daemon command exits 3 and names the socket path and how to start it", async () => {
    const missing = join(t.work, "nope.sock");
    const runs = await Promise.all(["status", "conntrack"].map((c) => wasp([c, "--socket", missing])));
    for (const r of runs) {
      assert.equal(r.status, 3, r.stderr);
      assert.ok(r.stderr.includes(`no control socket at ${missing}`), r.stderr);
      assert.match(r.stderr, /wasp daemon --config FILE/);
    }
  });

  it("status: text and --json agree with the daemon (mode, device, generation, counters)", async () => {
    const [text, json] = await Promise.all([wasp(["status", ...sock()]), wasp(["status", "--json", ...sock()])]);
    assert.equal(json.status, 0, json.stderr);
    const s = JSON.parse(json.stdout);
    assert.equal(s.mode, "tun");
    assert.equal(s.device, "wasp0");
    assert.equal(s.node, "node-a");
    assert.ok(s.counters.verdicts.tun >= 24, JSON.stringify(s.counters)); // 6 connections, >= 4 packets each way
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^node: +node-a$/m);
    assert.match(text.stdout, new RegExp(`^generation: +${s.generation}$`, "m"));
    // io_uring is the daemon's default where the kernel allows it; the line says which path it took.
    assert.equal(typeof s.ioUring, "boolean");
    const tail = s.ioUring ? ", io_uring" : "";
    assert.match(text.stdout, new RegExp(`^mode: +tun \\(device wasp0, 10\\.244\\.1\\.1${tail}\\)$`, "m"));
  });

  it("services and backends: every entry with its backends; a bare name, namespace/name and an entry key all find one; an unknown one exits 1 listing the known", async () => {
    const [text, json, byName, byKey, unknown] = await Promise.all([
      wasp(["services", ...sock()]), wasp(["services", "--json", ...sock()]), wasp(["backends", "web", "--json", ...sock()]),
      wasp(["backends", "10.96.0.40:80/TCP", ...sock()]), wasp(["backends", "nginx", ...sock()]),
    ]);
    const sv = JSON.parse(json.stdout).services as any[];
    assert.deepEqual(sv.map((e) => e.key).sort(), ["10.96.0.10:53/UDP", "10.96.0.10:80/TCP", "10.96.0.30:53/UDP", "10.96.0.30:80/TCP", "10.96.0.40:80/TCP", "10.96.0.60:80/TCP"]);
    const web = sv.find((e) => e.key === "10.96.0.10:80/TCP");
    assert.ok(web.newFlows >= 6, JSON.stringify(web));
    const row = text.stdout.split("\n").find((l) => l.includes("10.96.0.10:80/TCP"))!;
    assert.match(row, /^default\/web +http +10\.96\.0\.10:80\/TCP +ClusterIP +2\/2 /);
    assert.match(text.stdout, /^SERVICE +PORT +ENTRY +KIND +BACKENDS +PACKETS +BYTES +NEW FLOWS$/m);
    const bs = JSON.parse(byName.stdout).backends as any[];
    assert.deepEqual(bs.filter((b) => b.entry === "10.96.0.10:80/TCP").map((b) => `${b.addr}:${b.port}`).sort(), [`${b1.ip}:8080`, `${b2.ip}:8080`].sort());
    assert.equal(byKey.status, 0, byKey.stderr);
    assert.match(byKey.stdout, new RegExp(`default/one +10\\.96\\.0\\.40:80/TCP +0 +${b2.ip.replace(/\./g, "\\.")}:8080 +ready`));
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /no service "nginx"; the daemon serves: default\/empty, default\/local-only, default\/one, default\/web/);
  });

  it("conntrack --filter shows the client's flows to the VIP with the backend each one got, in the kernel's tuple terms", async () => {
    const [json, text, bad] = await Promise.all([
      wasp(["conntrack", "--json", "--filter", "dst=10.96.0.10", "--filter", "proto=tcp", ...sock()]),
      wasp(["conntrack", "--filter", "src=" + client.ip, ...sock()]),
      wasp(["conntrack", "--filter", "colour=red", ...sock()]),
    ]);
    assert.equal(json.status, 0, json.stderr);
    const a = JSON.parse(json.stdout);
    assert.ok(a.matched >= 6, JSON.stringify(a));
    for (const f of a.flows) {
      assert.equal(f.src, client.ip);
      assert.equal(f.dport, 80);
      assert.ok([b1.ip, b2.ip].includes(f.backend), JSON.stringify(f));
      assert.equal(f.backendPort, 8080);
      assert.equal(f.replyDst, client.ip, "no SNAT for a pod client");
      assert.equal(f.snat, false);
      assert.match(f.service, /default\/web:http/);
    }
    assert.match(text.stdout, /^PROTO +CLIENT +SERVICE ADDRESS +BACKEND +REPLY TO +STATE +NAT +SERVICE +EXPIRES$/m);
    assert.match(text.stdout, /\d+ shown of \d+ matching; \d+ flows? in a table of [\d,]+/);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--filter key "colour" is unknown; keys: proto, src/);
  });

  it("routes and nodes: this node's pod CIDR is local (wasp0), the peer's goes over VXLAN to its underlay address", async () => {
    const [routes, nodes, rtext] = await Promise.all([wasp(["routes", "--json", ...sock()]), wasp(["nodes", "--json", ...sock()]), wasp(["routes", ...sock()])]);
    const r = JSON.parse(routes.stdout).routes as any[];
    assert.deepEqual(r.find((x) => x.prefix === "10.244.1.0/24"), { prefix: "10.244.1.0/24", kind: "local", node: "node-a", via: "wasp0", vtepMac: "" });
    assert.deepEqual(r.find((x) => x.prefix === "10.244.2.0/24"), { prefix: "10.244.2.0/24", kind: "remote", node: "node-b", via: "vxlan 10.99.0.5", vtepMac: "02:0a:63:00:05:01" });
    assert.match(rtext.stdout, /^10\.244\.2\.0\/24 +remote +node-b +vxlan 10\.99\.0\.5 +02:0a:63:00:05:01$/m);
    const n = JSON.parse(nodes.stdout);
    assert.deepEqual(n.nodes.map((x: any) => [x.name, x.self, x.underlayIP, x.podCIDR]), [["node-a", true, NODE_IP, POD_CIDR], ["node-b", false, "10.99.0.5", "10.244.2.0/24"]]);
    assert.deepEqual(n.vxlan, { vni: 1, port: 8472 });
  });

  it("counters: packets by verdict and drops by reason, text and --json; a refused connection shows as no_backend", async () => {
    const refused = await t.request(client.ns, { host: "10.96.0.30", port: 80, timeoutMs: 3000 });
    assert.equal(refused.error, "ECONNREFUSED");
    const [json, text] = await Promise.all([wasp(["counters", "--json", ...sock()]), wasp(["counters", ...sock()])]);
    const c = JSON.parse(json.stdout);
    assert.ok(c.drops.no_backend >= 1, JSON.stringify(c.drops));
    assert.ok(c.verdicts.tun > 0, `packets to the TUN counted: ${JSON.stringify(c.verdicts)}`);
    assert.match(text.stdout, new RegExp(`^no_backend +${c.drops.no_backend}$`, "m"));
    assert.match(text.stdout, /^VERDICT +PACKETS$/m);
  });

  it("metrics: every documented metric is served with its type, and the engine's counters agree with wasp counters --json", async () => {
    const port = t.metricsPort(daemon);
    const c = JSON.parse((await wasp(["counters", "--json", ...sock()])).stdout);
    const text = inNs(t.node, process.execPath, "-e", `fetch("http://127.0.0.1:${port}/metrics").then((r) => r.text()).then((x) => process.stdout.write(x))`);
    const types: Record<string, string> = {
      wasp_packets_total: "counter", wasp_packets_dropped_total: "counter", wasp_received_bytes_total: "counter", wasp_received_packets_total: "counter",
      wasp_new_flows_total: "counter", wasp_conntrack_evicted_total: "counter", wasp_conntrack_expired_total: "counter",
      wasp_conntrack_stale_udp_flushed_total: "counter", wasp_replies_made_total: "counter", wasp_icmp_errors_translated_total: "counter",
      wasp_batches_total: "counter", wasp_path_dropped_total: "counter", wasp_conntrack_entries: "gauge", wasp_conntrack_capacity: "gauge",
      wasp_service_entries: "gauge", wasp_routes: "gauge", wasp_table_generation: "gauge", wasp_reload_duration_seconds: "histogram",
      wasp_reload_rejected_total: "counter", wasp_reload_last_rejected_timestamp_seconds: "gauge", wasp_cni_calls_total: "counter",
    };
    for (const [name, type] of Object.entries(types)) assert.match(text, new RegExp(`^# TYPE ${name} ${type}$`, "m"), name);
    const value = (re: string) => Number(new RegExp(`^${re} (\\d+)$`, "m").exec(text)?.[1]);
    // counters taken while no traffic runs: the same numbers by both ways
    assert.equal(value('wasp_packets_total\\{verdict="tun"\\}'), c.verdicts.tun);
    assert.equal(value("wasp_received_packets_total"), c.named.packets_in);
    assert.equal(value("wasp_new_flows_total"), c.named.new_flows);
    assert.equal(value("wasp_conntrack_ceiling"), 262144, "conntrack.capacity, the default");
    const cap = value("wasp_conntrack_capacity");
    assert.ok(cap >= 4096 && cap <= 262144, `the table holds what it has grown to (${cap})`);
    assert.equal(value("wasp_service_entries"), 6);
    assert.equal(value("wasp_routes"), 2);
    assert.match(text, /^process_start_time_seconds \d+/m);
  });

  it("top in tmux: live rates, the busiest service and drops by reason; q and then Ctrl-C each quit with exit 0 and give the terminal back (main screen, cooked mode)", async () => {
    const session = `wasp-t-${process.pid}-top`;
    const tmux = (...a: string[]) => sh("tmux", a);
    const cmd = [...cli.argv(["top", "--socket", t.socketPath, "--interval", "0.5"])].join(" ");
    tmux("new-session", "-d", "-s", session, "-x", "180", "-y", "50", "-e", `WASP_WASM=${cli.env().WASP_WASM}`, "sh");
    try {
      const screen = () => tmux("capture-pane", "-p", "-t", session);
      tmux("send-keys", "-t", session, "clear; echo before-top", "Enter");
      for (const key of ["q", "C-c"]) {
        tmux("send-keys", "-t", session, `${cmd}; echo "exit=$?"; stty -a | grep -o -- '-*icanon'`, "Enter");
        await waitFor(() => screen().includes("TOP SERVICES"), "top to draw", 15_000);
        const load = t.requests(client.ns, [{ host: "10.96.0.10", port: 80, loopMs: 2500 }, { host: "10.96.0.30", port: 80, loopMs: 1500 }]);
        await waitFor(() => /^default\/web +http +10\.96\.0\.10:80\/TCP +[1-9]/m.test(screen()), "the web entry's packets/s", 15_000);
        await load;
        // a frame with everything on it (a capture may catch a frame being drawn: take the next)
        let shot = "";
        await waitFor(() => {
          shot = screen();
          return /wasp top - node node-a, tun mode, generation \d+/.test(shot)
            && /^packets\/s [\d,]+ +bytes\/s .+ +new flows\/s [\d,]+ +conntrack [\d,]+ \/ [\d,]+$/m.test(shot)
            && /^no_backend +\d+ +[\d,]+$/m.test(shot) && /^DROPS BY REASON$/m.test(shot);
        }, "a whole frame", 10_000).catch(() => assert.fail(`top's frame lacks a part:\n${shot}`));
        // the busiest service (all-time packets break the tie of an idle moment) is listed first
        const lines = shot.split("\n"), first = lines.findIndex((l) => l.startsWith("SERVICE"));
        assert.match(lines[first + 1]!, /^default\/web +http +10\.96\.0\.10:80\/TCP/, shot);
        tmux("send-keys", "-t", session, key);
        await waitFor(() => /exit=\d+\s+\S*icanon/.test(screen()), "top to quit", 10_000);
        const after = screen();
        assert.match(after, /exit=0\s+icanon/, after);
        assert.ok(!after.includes("TOP SERVICES"), `the alternate screen is gone:\n${after}`);
        assert.ok(after.includes("before-top"), "the main screen is back");
        tmux("send-keys", "-t", session, "clear; echo before-top", "Enter");
        await waitFor(() => !screen().includes("exit="), "the pane to clear", 5_000);
      }
    } finally {
      try { tmux("kill-session", "-t", session); } catch { /* already gone */ }
    }
  });

  describe("trace agrees with real traffic for the same tuple", () => {
    const trace = async (...args: string[]) => {
      const r = await wasp(["trace", "--json", ...args, ...sock()]);
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout);
    };

    it("a service with one backend: trace picks that backend and rewrites to it; a real connection lands there seeing the client's IP", async () => {
      const [tr, real] = await Promise.all([trace("--from", client.ip, "--to", "10.96.0.40:80"), t.request(client.ns, { host: "10.96.0.40", port: 80, timeoutMs: 8000 })]);
      assert.ok(real.ok, JSON.stringify(real));
      assert.deepEqual(tr.stages.map((s: any) => s.stage), ["parse", "conntrack", "service", "backend", "nat", "route"], JSON.stringify(tr));
      assert.equal(tr.verdict, "tun");
      assert.equal(tr.output.dst, real.seen!.local);
      assert.equal(tr.output.dport, 8080);
      assert.equal(tr.output.src, real.seen!.remote);
      assert.equal(tr.service, "default/one:80");
      assert.match(tr.stages[3].detail, new RegExp(`backend #0 ${b2.ip.replace(/\./g, "\\.")}:8080, chosen by random among the 1 eligible`));
    });

    it("a service without backends: trace says no_backend (RST / port unreachable); real TCP and UDP are refused", async () => {
      const [tcp, udp, [rt, ru]] = await Promise.all([
        trace("--from", client.ip, "--to", "10.96.0.30:80"), trace("--from", client.ip, "--to", "10.96.0.30:53", "--proto", "udp"),
        t.requests(client.ns, [{ host: "10.96.0.30", port: 80, timeoutMs: 3000 }, { proto: "udp", host: "10.96.0.30", port: 53, timeoutMs: 3000 }]),
      ]);
      assert.equal(rt!.error, "ECONNREFUSED");
      assert.equal(ru!.error, "ECONNREFUSED");
      for (const x of [tcp, udp]) {
        assert.equal(x.reason, "no_backend");
        assert.ok(x.notes.includes("reply_made"), JSON.stringify(x));
        assert.equal(x.output.dst, client.ip, "the answer goes back to the client");
        assert.equal(x.output.src, "10.96.0.30");
        assert.match(x.result, /no ready backend/);
      }
    });

    it("pod to pod: no service, no NAT, the local route; a real connection arrives from the client's own IP", async () => {
      const [tr, real] = await Promise.all([trace("--from", client.ip, "--to", `${b1.ip}:8080`), t.request(client.ns, { host: b1.ip, port: 8080, timeoutMs: 8000 })]);
      assert.ok(real.ok, JSON.stringify(real));
      assert.deepEqual(tr.stages.map((s: any) => s.stage), ["parse", "conntrack", "route"], JSON.stringify(tr));
      assert.equal(tr.verdict, "tun");
      assert.deepEqual([tr.output.src, tr.output.dst, tr.output.dport], [real.seen!.remote, real.seen!.local, 8080]);
    });

    it("a VIP port no service has: trace says no_service; a real connection is refused", async () => {
      const [tr, real] = await Promise.all([trace("--from", client.ip, "--to", "10.96.0.10:81"), t.request(client.ns, { host: "10.96.0.10", port: 81, timeoutMs: 3000 })]);
      assert.equal(real.error, "ECONNREFUSED");
      assert.equal(tr.reason, "no_service");
    });

    it("a drop: a Local-policy service whose endpoints are all on another node; trace says drop (no_local_backend), a real connection gets no answer", async () => {
      const [tr, real] = await Promise.all([trace("--from", client.ip, "--to", "10.96.0.60:80"), t.request(client.ns, { host: "10.96.0.60", port: 80, timeoutMs: 2000 })]);
      assert.equal(real.error, "timeout", JSON.stringify(real));
      assert.equal(tr.verdict, "drop");
      assert.equal(tr.reason, "no_local_backend");
      assert.equal(tr.output, undefined);
      assert.equal(tr.result, "dropped: no_local_backend");
    });

    it("a pod of another node: the remote route, VXLAN to its node; a pod named by its container ID resolves from the IPAM store", async () => {
      const tr = await trace("--from", `cid-${client.ns}`, "--ipam-dir", join(t.work, "ipam"), "--to", "10.244.2.7:8080");
      assert.equal(tr.packet.src, client.ip);
      assert.equal(tr.verdict, "overlay");
      assert.equal(tr.output.nextHop, "10.99.0.5");
      assert.equal(tr.output.dst, "10.244.2.7");
      const text = await wasp(["trace", "--from", client.ip, "--to", "10.96.0.40:80", ...sock()]);
      assert.match(text.stdout, /^ *\d +service +matches service default\/one:80 10\.96\.0\.40:80\/TCP \(ClusterIP\); 1 eligible backend of 1$/m);
      assert.match(text.stdout, /^result: delivered through wasp0 as /m);
    });

    it("the trace leaves the live conntrack alone", async () => {
      const before = JSON.parse((await wasp(["conntrack", "--json", "--filter", "dst=10.96.0.40", "--filter", "sport=40000", ...sock()])).stdout);
      assert.equal(before.matched, 0);
    });
  });

  it("replay of a tcpdump capture of wasp0 gives the verdicts the live daemon counted for the same packets, and writes what came out", async () => {
    const pcap = join(t.work, "wasp0.pcap"), out = join(t.work, "out.pcapng");
    const dump = spawnInNs(t.node, "tcpdump", ["-i", "wasp0", "-Q", "out", "-U", "-n", "-s", "0", "-w", pcap]);
    let err = "";
    dump.stderr!.on("data", (d: Buffer) => { err += d.toString(); });
    let before: any, after: any;
    try {
      await waitFor(() => err.includes("listening on"), "tcpdump to listen", 10_000);
      // earlier tests' last segments (FIN, ACK) are done: the window holds only the traffic below
      await new Promise((r) => setTimeout(r, 500));
      before = JSON.parse((await wasp(["counters", "--json", ...sock()])).stdout);
      const outcomes = await t.requests(client.ns, [
        ...Array.from({ length: 4 }, () => ({ host: "10.96.0.10", port: 80 })),
        { proto: "udp" as const, host: "10.96.0.10", port: 53 },
        { host: "10.96.0.30", port: 80, timeoutMs: 3000 },
        { proto: "udp" as const, host: "10.96.0.30", port: 53, timeoutMs: 3000 },
      ]);
      assert.deepEqual(outcomes.map((o) => o.ok), [true, true, true, true, true, false, false]);
      await new Promise((r) => setTimeout(r, 300));
      after = JSON.parse((await wasp(["counters", "--json", ...sock()])).stdout);
      // tcpdump drops what is still in its kernel ring when stopped: stop once every packet the
      // engine counted is in the file (a busy machine may take a while)
      const want = after.named.packets_in - before.named.packets_in;
      await waitFor(() => pcapRecords(pcap) >= want, `${want} packets in the capture`, 15_000);
    } finally {
      await stop(dump, "SIGINT");
    }
    assert.ok(existsSync(pcap), `tcpdump wrote ${pcap}`);
    const r = await wasp(["replay", pcap, "--config", t.configPath, "--out", out, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    const diff = (k: "verdicts" | "drops") => Object.fromEntries(Object.keys(after[k]).map((x) => [x, after[k][x] - before[k][x]]).filter(([, n]) => n !== 0));
    const why = JSON.stringify({ replay: s, before, after });
    assert.deepEqual(s.verdicts, diff("verdicts"), why);
    assert.deepEqual(s.drops, diff("drops"), why);
    assert.deepEqual(s.drops, { no_backend: 2 });
    assert.equal(s.newFlows, after.named.new_flows - before.named.new_flows, why);
    assert.ok(s.replayed >= 30, JSON.stringify(s));
    // what came out: every packet not dropped (here: all of them, the refusals are answers)
    assert.equal(s.out.packets, s.replayed);
    assert.equal(readFileSync(out).readUInt32LE(0), 0x0a0d0d0a, "--out is pcapng (section header block)");
    const text = await wasp(["replay", pcap, "--config", t.configPath]);
    assert.match(text.stdout, /^no_backend +2$/m);
    const bad = await wasp(["replay", join(t.work, "missing.pcap")]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /cannot read .*missing\.pcap: ENOENT/);
  });
});
