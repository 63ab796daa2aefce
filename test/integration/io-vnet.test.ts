// vnet_hdr + TSO: a TCP stream between two namespaces is routed through a TUN in a third one
// (policy routing as in shared/anchors/README.md) and a trivial loop in this process writes
// every batch back unchanged. GSO super-packets must arrive and be accepted back by the kernel.
import { strict as assert } from "node:assert";
import { type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { Verdict, VNET_HDR_LEN } from "../../src/engine/abi.js";
import { TunDevice } from "../../src/io/index.js";
import { deleteAllNs, ip, makeNs, spawnInNs, stop, sysctl, veth } from "../helpers/netns.js";
import { layout, slot, vnetHeader, waitFor } from "../helpers/batch.js";

const BYTES = 32 << 20;
const VIRTIO_NET_HDR_GSO_TCPV4 = 1;

// Both ends are Node children: the server reports byte count and SHA-256 of what it got.
const SERVER = `
const net = require("node:net"), crypto = require("node:crypto");
net.createServer((s) => {
  const h = crypto.createHash("sha256"); let n = 0;
  s.on("data", (d) => { n += d.length; h.update(d); });
  s.on("end", () => s.end(JSON.stringify({ n, sha: h.digest("hex") })));
}).listen(5201, "10.81.2.2", () => console.log("listening"));`;
const CLIENT = `
const net = require("node:net"), total = Number(process.argv[1]);
const chunk = Buffer.alloc(1 << 20); for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) % 251;
const s = net.connect(5201, "10.81.2.2", () => {
  let sent = 0;
  const more = () => { while (sent < total) { sent += chunk.length; if (!s.write(chunk)) return s.once("drain", more); } s.end(); };
  more();
});
let reply = ""; s.on("data", (d) => reply += d); s.on("end", () => console.log(reply));`;

function expectedSha(): string {
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) % 251;
  const h = createHash("sha256");
  for (let sent = 0; sent < BYTES; sent += chunk.length) h.update(chunk);
  return h.digest("hex");
}

function output(child: ChildProcess): { text: () => string; exit: Promise<number> } {
  let text = "";
  child.stdout?.on("data", (d: Buffer) => { text += d.toString(); });
  child.stderr?.on("data", (d: Buffer) => { text += d.toString(); });
  const exit = new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? -1)));
  return { text: () => text, exit };
}

describe("io: TUN with vnet header and TSO (integration, needs root)", function () {
  this.timeout(60000);
  let client = "", node = "", server = "";
  const children: ChildProcess[] = [];
  let dev: TunDevice | undefined;

  before(() => {
    client = makeNs("cli");
    node = makeNs("node");
    server = makeNs("srv");
    veth(client, "eth0", node, "vc");
    veth(node, "vs", server, "eth0");
    ip(client, "addr", "add", "10.81.1.2/24", "dev", "eth0");
    ip(node, "addr", "add", "10.81.1.1/24", "dev", "vc");
    ip(node, "addr", "add", "10.81.2.1/24", "dev", "vs");
    ip(server, "addr", "add", "10.81.2.2/24", "dev", "eth0");
    ip(client, "route", "add", "default", "via", "10.81.1.1");
    ip(server, "route", "add", "default", "via", "10.81.2.1");
    sysctl(node, "net.ipv4.ip_forward", 1);
    sysctl(node, "net.ipv6.conf.all.disable_ipv6", 1);
    sysctl(node, "net.ipv6.conf.default.disable_ipv6", 1);
    // Everything arriving from the two veths goes into the TUN (table 100); what the loop
    // writes back enters on wt0 and takes the main table.
    ip(node, "rule", "add", "iif", "vc", "lookup", "100");
    ip(node, "rule", "add", "iif", "vs", "lookup", "100");
  });
  afterEach(async () => {
    for (const c of children.splice(0)) await stop(c);
    dev?.close();
    dev = undefined;
  });
  after(() => deleteAllNs());

  for (const ioUring of [false, true]) {
  it(`a 32 MiB TCP stream forwarded through the TUN (${ioUring ? "io_uring" : "read/write"}) arrives as GSO super-packets (TCPV4, > 1500 B) and intact`, async () => {
    dev = TunDevice.open({ name: "wt0", vnetHdr: true, ioUring, netns: `/var/run/netns/${node}` });
    ip(node, "link", "set", "wt0", "up");
    ip(node, "route", "add", "default", "dev", "wt0", "table", "100");
    // rp_filter would drop what the loop writes back: its source is not routed via wt0.
    for (const d of ["all", "default", "wt0", "vc", "vs"]) sysctl(node, `net.ipv4.conf.${d}.rp_filter`, 0);

    const memory = new WebAssembly.Memory({ initial: 64 });
    const b = layout(memory, 32, 65536 + 64 - VNET_HDR_LEN);
    const dv = new DataView(memory.buffer);
    for (let i = 0; i < b.count; i++) dv.setUint8(b.slotsAddr + i * 32 + 10, Verdict.Tun);
    let packets = 0, bytes = 0, big = 0, gsoTcp4 = 0, vnetFlag = 0, batches = 0, maxBatch = 0, drops = 0, maxLen = 0;
    const tun = dev;
    tun.onReadable(() => {
      for (;;) {
        const n = tun.readBatch(memory, b.slotsAddr, b.count);
        if (n === 0) return;
        batches++;
        maxBatch = Math.max(maxBatch, n);
        for (let i = 0; i < n; i++) {
          const s = slot(b, i);
          packets++;
          bytes += s.len;
          maxLen = Math.max(maxLen, s.len);
          if (s.flags & 2) vnetFlag++;
          if (s.len > 1500) big++;
          if (vnetHeader(b, i).gsoType === VIRTIO_NET_HDR_GSO_TCPV4) gsoTcp4++;
        }
        tun.writeBatch(memory, b.slotsAddr, n, 1 << Verdict.Tun);
        drops += tun.lastDropped;
        if (n < b.count) return;
      }
    });

    const srv = spawnInNs(server, process.execPath, ["-e", SERVER]);
    children.push(srv);
    const srvOut = output(srv);
    await waitFor(() => srvOut.text().includes("listening"), "the server to listen");
    const started = process.hrtime.bigint();
    const cli = spawnInNs(client, process.execPath, ["-e", CLIENT, String(BYTES)]);
    children.push(cli);
    const cliOut = output(cli);
    const code = await cliOut.exit;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    tun.stop();
    assert.equal(code, 0, `client failed: ${cliOut.text()}`);
    const result = JSON.parse(cliOut.text().trim()) as { n: number; sha: string };
    assert.equal(result.n, BYTES, "bytes the server received");
    assert.equal(result.sha, expectedSha(), "SHA-256 of the stream");
    assert.equal(vnetFlag, packets, "every slot read carries the VNET flag");
    assert.ok(big > 0, `no read over 1500 bytes among ${packets}`);
    assert.ok(gsoTcp4 > 0, "no virtio_net_hdr with gso_type TCPV4");
    console.log(`      ${packets} packets in ${batches} batches (largest ${maxBatch}), ${big} over 1500 B, ` +
      `${gsoTcp4} TCPV4 GSO, largest ${maxLen} B, average ${Math.round(bytes / packets)} B, ` +
      `${drops} write drops; ${(BYTES * 8 / seconds / 1e9).toFixed(2)} Gbit/s incl. process start`);
  });
  }
});
