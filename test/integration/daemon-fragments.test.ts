// A UDP datagram larger than the pod's MTU reaches a ClusterIP as fragments; the network may deliver
// its first fragment (the one with the ports) last. The kernel, which reassembles before it NATs,
// delivers such a datagram; wasp must too. Here the client pod's own egress reorders (this kernel
// has no netem): an htb class of 100 kbit/s with no burst takes every first fragment (u32: IPv4 MF
// set, offset 0), everything else goes at once. A primer datagram to another address just before
// each one leaves that class in debt, so the next first fragment waits ~0.1 s behind its later
// fragments. The backend answers with the length and SHA-256 of what it got.
import { strict as assert } from "node:assert";
import { createHash, randomBytes } from "node:crypto";
import { type ChildProcess } from "node:child_process";
import { inNs, spawnInNs, stop } from "../helpers/netns.js";
import { control, Topology, type Pod } from "../helpers/topology.js";

const VIP = "10.96.0.30", PORT = 9000;

/** Answers each datagram with "<bytes> <sha256 hex>". */
const DIGEST_UDP = `
const u = require("node:dgram").createSocket("udp4");
u.on("message", (m, r) => u.send(m.length + " " + require("node:crypto").createHash("sha256").update(m).digest("hex"), r.port, r.address));
u.bind(${PORT}, "0.0.0.0", () => console.error("ready"));`;

/** Sends each hex payload of argv[3] (comma-separated) to argv[1]:argv[2] from one socket, one at a
 *  time, each right after a primer of the same size to argv[4]:9 (discard, from another socket);
 *  prints one line per answer ("timeout" after 2 s). */
const SEND_EACH = `
const dgram = require("node:dgram");
const s = dgram.createSocket("udp4"), primer = dgram.createSocket("udp4");
const payloads = process.argv[3].split(",").map((h) => Buffer.from(h, "hex"));
s.connect(Number(process.argv[2]), process.argv[1], async () => {
  for (const p of payloads) {
    const answer = await new Promise((resolve) => {
      const t = setTimeout(() => resolve("timeout"), 2000);
      s.once("message", (m) => { clearTimeout(t); resolve(m.toString()); });
      primer.send(Buffer.alloc(p.length), 9, process.argv[4], () => s.send(p));
    });
    console.log(answer);
  }
  s.close(); primer.close();
});`;

for (const datapath of ["offload", "wasm"] as const) {
  describe(`UDP fragments to a ClusterIP with the first fragment last (${datapath}; integration, needs root)`, function () {
    this.timeout(120_000);
    let t: Topology;
    let client: Pod, backend: Pod;
    let server: ChildProcess | undefined;

    before(async () => {
      t = new Topology();
      client = await t.addPod("fclient");
      backend = await t.addPod("fbackend");
      t.writeConfig({
        mode: "tun",
        node: { name: "node-a", underlayIP: t.nodeIp, podCIDR: t.podCidr },
        serviceCIDR: "10.96.0.0/16",
        clusterCIDR: "10.244.0.0/16",
        services: [{ name: "digest", clusterIP: VIP, ports: [{ port: PORT, protocol: "UDP" }], backends: [{ ip: backend.ip }] }],
      });
      const s = server = spawnInNs(backend.ns, process.execPath, ["-e", DIGEST_UDP]);
      await new Promise<void>((resolve, reject) => {
        s.stderr!.on("data", (d: Buffer) => { if (d.toString().includes("ready")) resolve(); });
        s.once("exit", () => reject(new Error("the digest server exited")));
      });
      t.daemonArgs = ["--offload", datapath === "offload" ? "on" : "off"];
      await t.startDaemon();
      // first fragments (IPv4 flags+offset: MF set, offset 0) take the slow class; everything else the fast one
      const tc = (...args: string[]) => inNs(client.ns, "tc", ...args);
      tc("qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10");
      tc("class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit");
      tc("class", "add", "dev", "eth0", "parent", "1:", "classid", "1:20", "htb", "rate", "100kbit", "burst", "1", "cburst", "1");
      tc("filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "u16", "0x2000", "0x3fff", "at", "6", "flowid", "1:20");
    });

    after(async () => {
      if (server) await stop(server);
      await t?.destroy();
    });

    it("datagrams of 3,000, 8,000 and 20,000 bytes whose first fragment arrives last all reach the backend whole (length and SHA-256 checked by the backend)", async () => {
      const payloads = [3000, 8000, 20_000].map((n) => randomBytes(n));
      const out = inNs(client.ns, process.execPath, "-e", SEND_EACH, VIP, String(PORT), payloads.map((p) => p.toString("hex")).join(","), backend.ip);
      const expected = payloads.map((p) => `${p.length} ${createHash("sha256").update(p).digest("hex")}`);
      assert.deepEqual(out.trim().split("\n"), expected);
      // the first fragments (a primer's and a datagram's each time) went through the slow class
      const shown = inNs(client.ns, "tc", "-s", "class", "show", "dev", "eth0", "classid", "1:20");
      assert.match(shown, /Sent \d+ bytes 6 pkt/, `the slow class carried the 6 first fragments: ${shown}`);
      if (datapath === "wasm") {
        const named = (await control(t.socketPath, { cmd: "counters" })).named as Record<string, number>;
        assert.ok(named.frag_held! > 0 && named.frag_released === named.frag_held, `the engine held the early fragments and released each: ${JSON.stringify(named)}`);
      }
    });
  });
}
