// A flood from one pod does not take the node's flow table or its new connections from the others
// (issue 16): one pod sends unique UDP flows to a ClusterIP as fast as it can while another pod makes
// 200 TCP connections to a Service; the flow table is small (conntrack.capacity 1024) so the flood
// fills it within milliseconds. A full table evicts a flow of the source holding the most flows
// (assembly/table/conntrack.ts), so the flood turns over its own flows only.
// Offload mode: the engine still decides every new flow (each flood packet is one) and keeps that
// decision in the same table, so the same fair share holds there; the kernel's conntrack holds the
// bindings in a table of its own (nf_conntrack_max, early_drop of unassured entries when full).
import { strict as assert } from "node:assert";
import { type ChildProcess } from "node:child_process";
import { spawnInNs } from "../helpers/netns.js";
import { ServiceSuiteConfig, Topology, waitFor, type DaemonProc, type Pod } from "../helpers/topology.js";

/** Unique UDP flows to argv[1]:argv[2] from a raw socket (a new source port each datagram, 64,512 of
 *  them in turn; checksum 0: none, RFC 768) until SIGTERM; then prints the datagrams sent and seconds. */
const FLOOD = `
import signal, socket, struct, sys, time
dst, dport = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
pkts = [struct.pack("!HHHH", sp, dport, 12, 0) + b"floo" for sp in range(1024, 65536)]
n, t0 = 0, time.monotonic()
def done(*_):
    print(n, time.monotonic() - t0, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
print("ready", flush=True)
while True:
    for p in pkts:
        try: s.sendto(p, (dst, 0))
        except OSError: pass
        n += 1
`;

for (const datapath of ["offload", "wasm"] as const) {
describe(`a flood of unique UDP flows from one pod through wasp daemon (${datapath}), with real traffic (integration, needs root)`, function () {
  this.timeout(180_000);
  let t: Topology, d: DaemonProc;
  let client: Pod, flooder: Pod;

  before(async () => {
    t = new Topology();
    const cfg = new ServiceSuiteConfig(t);
    let b1: Pod, b2: Pod;
    ({ client, b1, b2 } = await t.clientAndBackends());
    flooder = await t.addPod("flooder");
    cfg.services = [
      { name: "web", clusterIP: "10.96.0.20", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b1.ip }, { ip: b2.ip }] },
      // nothing listens on 9999: the backends' kernels answer with rate-limited port unreachables
      { name: "flooded", clusterIP: "10.96.0.21", ports: [{ port: 53, protocol: "UDP", targetPort: 9999 }], backends: [{ ip: b1.ip }, { ip: b2.ip }] },
    ];
    t.daemonArgs = ["--offload", datapath === "offload" ? "on" : "off"];
    t.writeConfig({ ...cfg.toJSON(), conntrack: { capacity: 1024 } });
    d = await t.startDaemon();
  });

  after(async () => { await t?.destroy(); });

  it(`another pod's 200 TCP connections to a Service succeed (>= 99%) while the table is full of the flood's flows (${datapath})`, async () => {
    const flood: ChildProcess = spawnInNs(flooder.ns, "python3", ["-c", FLOOD, "10.96.0.21", "53"]);
    let out = "", err = "", sent = NaN, sendSecs = NaN;
    flood.stdout!.on("data", (b: Buffer) => { out += b.toString(); });
    flood.stderr!.on("data", (b: Buffer) => { err += b.toString(); });
    const done = new Promise<void>((resolve) => flood.once("exit", () => resolve()));
    try {
      await waitFor(() => out.includes("ready") || flood.exitCode !== null, "the flooder to start");
      assert.ok(out.includes("ready"), `the flooder started: ${err}`);
      const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(t.metrics(d))?.[1] ?? NaN);
      // the table is full of the flood before the client starts
      await waitFor(() => metric("wasp_conntrack_entries") >= 1024, "the flood to fill the flow table", 10000);
      const before = metric("wasp_new_flows_total"), t0 = Date.now();
      const got = await t.requests(client.ns, Array.from({ length: 200 }, () => ({ host: "10.96.0.20", port: 80, timeoutMs: 10000 })));
      const secs = (Date.now() - t0) / 1000, flows = metric("wasp_new_flows_total") - before;
      const ok = got.filter((o) => o.ok).length;
      const m = t.metrics(d);
      const share = Number(/^wasp_flows_evicted_total\{why="source_share"\} (\S+)$/m.exec(m)?.[1] ?? NaN);
      console.log(`      ${datapath}: ${ok}/200 connections; the engine made ${Math.round(flows / secs)} new flows/s meanwhile; source_share evictions ${share}`);
      assert.ok(ok >= 198, `${ok} of 200 connections succeeded (${[...new Set(got.filter((o) => !o.ok).map((o) => o.error))].join(", ")})`);
      // the flood kept the table full while the client connected and the fair share evicted the flooder's
      // flows. How many new flows the engine saw meanwhile depends on the machine and the mode (offload
      // mode's records expire soon after the kernel takes the flow, and the kernel's own conntrack limit
      // throttles the flood before it reaches the engine): 533/s in one CI run, 7,000-41,000/s here.
      assert.ok(share > 0, `the flood's flows were evicted by source share (${share})`);
      assert.equal(metric("wasp_conntrack_entries"), metric("wasp_conntrack_ceiling"), "the table was still full");
    } finally {
      flood.kill("SIGTERM");
      await done;
      [sent = NaN, sendSecs = NaN] = (out.trim().split("\n").pop() ?? "").split(" ").map(Number);
      console.log(`      ${datapath}: the flooder sent ${sent} datagrams in ${sendSecs.toFixed(1)} s (${Math.round(sent / sendSecs)} per second)`);
    }
    // the flood went on all along (the python flooder sends ~100,000/s on a quiet machine of two cores)
    assert.ok(sent / sendSecs > 10000, `the flooder kept sending (${Math.round(sent / sendSecs)} datagrams/s)`);
  });
});
}
