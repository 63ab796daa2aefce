// A reload storm under load (issue: "100 valid and invalid config changes while an iperf3 TCP stream
// and a UDP stream run"). The referee for loss is the receiver: a UDP stream with sequence numbers
// runs to a service no change touches, first for a quiet stretch without reloads, then through the
// storm; packets lost during the storm may not exceed what the quiet stretch lost. iperf3 judges the
// TCP stream (it reports an error on a reset or a stall).
import { strict as assert } from "node:assert";
import { type ChildProcess } from "node:child_process";
import { spawnInNs, stop } from "../helpers/netns.js";
import { control, NODE_IP, POD_CIDR, Topology, waitFor, type DaemonProc, type Pod } from "../helpers/topology.js";

const QUIET_MS = 4000;
const RATE_PPS = 2000;
const IPERF_SECONDS = 22;

/** Sends numbered datagrams at RATE_PPS until SIGTERM, then prints the send time of each (ms). */
const SENDER = `
const dgram = require("node:dgram");
const [host, port, rate] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const s = dgram.createSocket("udp4"); const times = []; let seq = 0; const t0 = Date.now();
s.connect(port, host, () => {
  const tick = setInterval(() => {
    const due = Math.floor((Date.now() - t0) * rate / 1000);
    while (seq < due) { const b = Buffer.alloc(64); b.writeUInt32BE(seq); times.push(Date.now()); s.send(b); seq++; }
  }, 5);
  process.on("SIGTERM", () => { clearInterval(tick); setTimeout(() => process.stdout.write(JSON.stringify(times) + "\\n", () => process.exit(0)), 300); });
  console.error("ready");
});`;

/** Records each sequence number received until SIGTERM, then prints them. */
const RECEIVER = `
const dgram = require("node:dgram");
const s = dgram.createSocket({ type: "udp4", recvBufferSize: 8 << 20 }); const got = [];
s.on("message", (m) => { if (m.length >= 4) got.push(m.readUInt32BE(0)); });
s.bind(Number(process.argv[1]), "0.0.0.0", () => console.error("ready"));
process.on("SIGTERM", () => process.stdout.write(JSON.stringify(got) + "\\n", () => process.exit(0)));`;


/** A child in a namespace whose stdout and stderr are kept; resolves once it says "ready". */
async function start(ns: string, args: string[]): Promise<{ child: ChildProcess; out: () => string; err: () => string }> {
  const child = spawnInNs(ns, process.execPath, args);
  let out = "", err = "";
  child.stdout?.on("data", (d: Buffer) => { out += d.toString(); });
  child.stderr?.on("data", (d: Buffer) => { err += d.toString(); });
  await waitFor(() => err.includes("ready") || child.exitCode !== null, `${args[1]?.slice(0, 20)} in ${ns}`);
  if (!err.includes("ready")) throw new Error(`process in ${ns} failed: ${err}`);
  return { child, out: () => out, err: () => err };
}

describe("wasp daemon reload storm: 100 valid and invalid config changes under an iperf3 TCP stream and a UDP stream (integration, needs root)", function () {
  this.timeout(120_000);
  let t: Topology;
  let daemon: DaemonProc;
  let client: Pod, b1: Pod, b2: Pod, b3: Pod;
  const mine: ChildProcess[] = [];

  const base = () => ({
    mode: "tun",
    node: { name: "node-a", underlayIP: NODE_IP, podCIDR: POD_CIDR },
    serviceCIDR: "10.96.0.0/16",
    clusterCIDR: "10.244.0.0/16",
  });
  // The two services under traffic; no change in the storm touches them.
  const steady = () => [
    { name: "iperf", clusterIP: "10.96.0.50", ports: [{ port: 5201, protocol: "TCP" }], backends: [{ ip: b1.ip }] },
    { name: "seq", clusterIP: "10.96.0.60", ports: [{ port: 7000, protocol: "UDP" }], backends: [{ ip: b2.ip }] },
  ];
  /** Valid change i: the churn services' backends rotate, a block of 200 services comes and goes. */
  const valid = (i: number) => {
    const churn = Array.from({ length: 5 }, (_, k) => ({
      name: `churn-${k}`, clusterIP: `10.96.1.${k + 1}`, ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }],
      backends: [b1, b2, b3].filter((_, j) => (i + k + j) % 3 !== 0).map((p) => ({ ip: p.ip })),
    }));
    const block = i % 10 < 5 ? [] : Array.from({ length: 200 }, (_, k) => ({
      name: `bulk-${k}`, clusterIP: `10.96.${2 + (k >> 8)}.${k & 255}`, ports: [{ port: 443, protocol: "TCP" }], backends: [{ ip: b3.ip }],
    }));
    return { ...base(), services: [...steady(), ...churn, ...block, { name: `marker-${i}`, clusterIP: "10.96.9.9", ports: [{ port: 1000 + i, protocol: "TCP" }], backends: [{ ip: b3.ip }] }] };
  };
  /** Invalid change i: a different kind of mistake each time, each naming its field. */
  const invalid = (i: number): unknown => {
    const v = valid(i) as any;
    switch ((i >> 2) % 4) {
      case 0: v.services[2].ports[0].port = 70000; return v;
      case 1: return "{ \"mode\": \"tun\", \"node\": "; // cut short
      case 2: v.serviceCIDR = "10.96.0.0/15"; return v; // takes a restart
      default: v.services[0].backends = [{ ip: "not-an-ip" }]; return v;
    }
  };

  before(async () => {
    t = new Topology();
    client = await t.addPod("client");
    b1 = await t.addPod("b1");
    b2 = await t.addPod("b2");
    b3 = await t.addPod("b3");
    t.writeConfig(valid(-1));
    daemon = await t.startDaemon();
  });

  after(async () => {
    for (const c of mine) await stop(c);
    await t?.destroy();
  });

  it("every valid change is applied and every invalid one rejected by name; the TCP stream has no reset and the UDP stream loses no more than without reloads", async () => {
    const iperfServer = spawnInNs(b1.ns, "iperf3", ["-s", "-1", "-p", "5201"]);
    mine.push(iperfServer);
    const receiver = await start(b2.ns, ["-e", RECEIVER, "7000"]);
    mine.push(receiver.child);
    await new Promise((r) => setTimeout(r, 300)); // iperf3 -s listens
    const sender = await start(client.ns, ["-e", SENDER, "10.96.0.60", "7000", String(RATE_PPS)]);
    mine.push(sender.child);
    const iperf = spawnInNs(client.ns, "iperf3", ["-c", "10.96.0.50", "-p", "5201", "-t", String(IPERF_SECONDS), "-b", "1G", "--json"]);
    mine.push(iperf);
    let iperfOut = "";
    iperf.stdout?.on("data", (d: Buffer) => { iperfOut += d.toString(); });
    const iperfDone = new Promise<number | null>((resolve) => iperf.once("exit", (c) => resolve(c)));

    const quietStart = Date.now();
    await new Promise((r) => setTimeout(r, QUIET_MS));
    const stormStart = Date.now();

    const count = (prefix: string) => daemon.lines().filter((l) => String(l.msg).startsWith(prefix)).length;
    const gen0 = (await control(t.socketPath, { cmd: "status" })).generation as number;
    let applied = 0, rejected = 0;
    const rejections: string[] = [];
    for (let i = 0; i < 100; i++) {
      const bad = i % 4 === 3;
      const [a0, r0] = [count("reload applied"), count("reload rejected")];
      t.writeConfig(bad ? invalid(i) : valid(i));
      await waitFor(() => count("reload applied") > a0 || count("reload rejected") > r0, `change ${i} to be ${bad ? "rejected" : "applied"}`, 10000);
      if (count("reload applied") > a0) applied++;
      else {
        rejected++;
        rejections.push(JSON.stringify(daemon.lines().filter((l) => String(l.msg).startsWith("reload rejected")).pop()?.problems));
      }
      assert.equal(count("reload applied") > a0, !bad, `change ${i} (${bad ? "invalid" : "valid"}): ${daemon.log().split("\n").slice(-3).join("\n")}`);
    }
    const stormEnd = Date.now();
    const status = await control(t.socketPath, { cmd: "status" });
    // The last write was invalid (i = 99): the tables are those of change 98.
    const keys = ((await control(t.socketPath, { cmd: "services" })).services as Array<{ key: string }>).map((e) => e.key);

    const iperfCode = await iperfDone;
    const iperfEnd = Date.now();
    await stop(sender.child);
    await waitFor(() => sender.out().includes("]"), "the sender's record");
    await new Promise((r) => setTimeout(r, 300));
    await stop(receiver.child);
    await waitFor(() => receiver.out().includes("]"), "the receiver's record");

    assert.equal(applied, 75);
    assert.equal(rejected, 25);
    assert.match(rejections.join("\n"), /port.*70000/);
    assert.match(rejections.join("\n"), /serviceCIDR.*takes a daemon restart/);
    assert.match(rejections.join("\n"), /not-an-ip/);
    assert.equal(status.generation, gen0 + 75, "one generation per valid change");
    assert.ok(keys.includes("10.96.9.9:1098/TCP") && !keys.some((k) => k.startsWith("10.96.9.9:1099")), keys.filter((k) => k.startsWith("10.96.9.9")).join(" "));
    assert.ok(stormEnd < iperfEnd, "the storm ended while iperf3 still ran");

    const report = JSON.parse(iperfOut) as { error?: string; end?: { sum_received?: { bytes: number } } };
    assert.equal(report.error, undefined, `iperf3: ${report.error}`);
    assert.equal(iperfCode, 0);
    assert.ok((report.end?.sum_received?.bytes ?? 0) > 0, `iperf3's receiver got bytes: ${JSON.stringify(report.end?.sum_received)}`);

    const times = JSON.parse(sender.out().trim()) as number[];
    const got = new Set(JSON.parse(receiver.out().trim()) as number[]);
    const lostIn = (from: number, to: number) => {
      let sent = 0, lost = 0;
      times.forEach((at, seq) => { if (at >= from && at < to) { sent++; if (!got.has(seq)) lost++; } });
      return { sent, lost };
    };
    const quiet = lostIn(quietStart, stormStart), storm = lostIn(stormStart, stormEnd);
    console.log(`      udp: quiet ${quiet.lost}/${quiet.sent} lost, storm ${storm.lost}/${storm.sent} lost (${((stormEnd - stormStart) / 1000).toFixed(1)} s, ${applied} applied, ${rejected} rejected); tcp ${((report.end?.sum_received?.bytes ?? 0) * 8 / IPERF_SECONDS / 1e9).toFixed(2)} Gbit/s`);
    assert.ok(quiet.sent > RATE_PPS && storm.sent > RATE_PPS, JSON.stringify({ quiet, storm }));
    // Per packet sent: the storm may not lose at a higher rate than the quiet stretch.
    assert.ok(storm.lost / storm.sent <= quiet.lost / quiet.sent, `lost during the storm ${storm.lost}/${storm.sent}, without reloads ${quiet.lost}/${quiet.sent}`);
  });
});
