// `wasp replay` of a capture the kernel wrote while a live daemon served a long TCP connection, taken
// mid-flow (the connection was open before the capture began): `tcpdump -i any -y LINUX_SLL2` in the
// node namespace records every interface in both directions, replay picks wasp0 by its ifindex and
// keeps only what the kernel sent into it (packet type OUTGOING), and starts from the flows of
// `wasp conntrack --json`. The referee is the kernel: the same capture holds what the live engine
// wrote back into wasp0, and the replay must have written the same packets, byte for byte. Without
// the live flows the client's packets still reach the backend they had (backend choice is a hash
// of the flow), as after a daemon restart that lost its flows. The pods'
// checksums are left to offload (veth): only the pseudo-header sum is on the wire, and replay must
// patch it as the live engine patched it with the virtio header's NEEDS_CSUM.
// Full-wasm only: in offload mode an established flow's packets never reach the engine.
import { strict as assert } from "node:assert";
import { execFileSync, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cli } from "../helpers/cli.js";
import { startEcho, talk, type TalkResult } from "../helpers/long-flows.js";
import { ip, spawnInNs, stop } from "../helpers/netns.js";
import { NODE_IP, POD_CIDR, Topology, waitFor, type Pod } from "../helpers/topology.js";
import { readCapture } from "../../src/cli/pcap.js";

/** The packets on interface `ifindex` of a Linux cooked v2 capture, by packet type: "out" the
 *  kernel sent into the device (PACKET_OUTGOING), "in" the device handed to the kernel. */
function onDevice(file: string, ifindex: number, dir: "in" | "out"): string[] {
  return readCapture(readFileSync(file), file).records
    .filter((r) => new DataView(r.data.buffer, r.data.byteOffset).getUint32(4) === ifindex)
    .filter((r) => (r.data[10] === 4) === (dir === "out"))
    .map((r) => Buffer.from(r.data.subarray(20)).toString("hex"));
}

describe("wasp replay of a mid-flow capture against what the live engine wrote (full-wasm only: offload mode keeps established flows in the kernel) (integration, needs root)", function () {
  this.timeout(120_000);
  let t: Topology, cli: Cli;
  let client: Pod, b1: Pod, b2: Pod;
  const kids: ChildProcess[] = [];

  before(async () => {
    cli = await Cli.build();
    ({ t, client, b1, b2 } = await Topology.fullWasmWithPods());
    t.writeConfig({
      mode: "tun", node: { name: "node-a", underlayIP: NODE_IP, podCIDR: POD_CIDR }, serviceCIDR: "10.96.0.0/16", clusterCIDR: "10.244.0.0/16",
      services: [{ name: "echo", clusterIP: "10.96.0.70", ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }], backends: [{ ip: b1.ip }, { ip: b2.ip }] }],
    });
    kids.push(await startEcho(b1.ns, [8080]), await startEcho(b2.ns, [8080]));
    await t.startDaemon();
  });

  after(async () => {
    for (const k of kids) await stop(k);
    await t?.destroy();
    cli?.remove();
  });

  it("replays, from the flows of wasp conntrack --json, the same packets into wasp0 as the live engine wrote; without them, the client's packets still reach the backend they had", async () => {
    const conv = talk(client.ns, "10.96.0.70", 80, 100, 6000);
    kids.push(conv.child);
    await conv.started;
    await new Promise((r) => setTimeout(r, 800)); // the handshake and the first lines are done before the capture starts
    const pcap = join(t.work, "any.pcap"), flows = join(t.work, "flows.json"), out = join(t.work, "replay.pcapng");
    const dump = spawnInNs(t.node, "tcpdump", ["-i", "any", "-y", "LINUX_SLL2", "-U", "-n", "-s", "0", "-w", pcap]);
    let err = "";
    dump.stderr!.on("data", (d: Buffer) => { err += d.toString(); });
    try {
      await waitFor(() => err.includes("listening on"), "tcpdump to listen", 10_000);
      const ct = await cli.run(["conntrack", "--json", "--limit", "10000", "--socket", t.socketPath]);
      assert.equal(ct.status, 0, ct.stderr);
      writeFileSync(flows, ct.stdout);
      await new Promise((r) => setTimeout(r, 2500));
    } finally {
      await stop(dump, "SIGINT");
    }
    const talked: TalkResult = await conv.done;
    assert.equal(talked.error, "", JSON.stringify(talked));
    const wasp0 = (JSON.parse(ip(t.node, "-j", "link", "show", "wasp0")) as Array<{ ifindex: number }>)[0]!.ifindex;

    const r = await cli.run(["replay", pcap, "--config", t.configPath, "--from", "skip", "--interface", `ifindex:${wasp0}=pod`, "--conntrack", flows, "--out", out, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.ok(s.replayed >= 20, `packets the kernel sent into wasp0 during 2.5 s of a line every 100 ms: ${s.replayed}`);
    assert.ok(s.skippedBy.engine_output >= 20, `what the engine wrote into wasp0 is left out: ${JSON.stringify(s.skippedBy)}`);
    assert.deepEqual([s.seeded.inserted, s.newFlows], [1, 0], JSON.stringify(s.seeded));
    assert.ok(s.packets.every((p: { verdict: string; service: string }) => p.verdict === "tun" && p.service === "default/echo:80"), JSON.stringify(s.packets.slice(0, 3)));

    const live = new Set(onDevice(pcap, wasp0, "in"));
    const replayed = readCapture(readFileSync(out), out).records.map((x) => Buffer.from(x.data).toString("hex"));
    assert.equal(replayed.length, s.replayed);
    const strangers = replayed.filter((x) => !live.has(x));
    // the capture's last inputs may have been answered after tcpdump stopped: at most a batch's worth
    assert.ok(strangers.length <= 2, `${strangers.length} of ${replayed.length} replayed packets the live engine never wrote: ${strangers.slice(0, 2).join(" ")}`);
    // tshark reads the comments: one per packet, naming the verdict
    const comments = execFileSync("tshark", ["-r", out, "-T", "fields", "-e", "frame.comment"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim().split("\n");
    assert.equal(comments.length, replayed.length);
    assert.ok(comments.every((c) => /^wasp: #\d+; verdict tun; service default\/echo:80/.test(c)), comments[0]);

    // the same capture without the live flows, as the engine meets it after a restart that lost
    // them: the client's first segment makes a flow anew, and since backend choice is a hash of the
    // flow, not a draw, it gets the backend the live engine chose: every client packet goes where it went
    const bare = await cli.run(["replay", pcap, "--config", t.configPath, "--from", "skip", "--interface", `ifindex:${wasp0}=pod`, "--json"]);
    assert.equal(bare.status, 0, bare.stderr);
    const b = JSON.parse(bare.stdout);
    assert.equal(b.newFlows, 1, `one flow made anew: ${JSON.stringify({ newFlows: b.newFlows })}`);
    type Rec = { before: { dst: string }; after: { dst: string } };
    const backendsOf = (x: { packets: Rec[] }) => [...new Set(x.packets.filter((p) => p.before.dst === "10.96.0.70").map((p) => p.after.dst))];
    assert.equal(backendsOf(s).length, 1, JSON.stringify(backendsOf(s)));
    assert.deepEqual(backendsOf(b), backendsOf(s), "the client's packets go to the backend they had live");
  });
});
