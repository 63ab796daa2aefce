// UnderlaySocket between two test namespaces joined by a veth: raw sendmmsg on one side,
// recvmmsg on the other, and a kernel vxlan device as a competing user of the port.
import { strict as assert } from "node:assert";
import { SlotFlag, Verdict } from "../../src/engine/abi.js";
import { UnderlaySocket } from "../../src/io/index.js";
import { deleteAllNs, ip, makeNs, veth } from "../helpers/netns.js";
import { ipv4ToU32, layout, packet, put, slot, udp4, waitFor } from "../unit/io/batch.js";

const PORT = 8472;

/** 8-byte VXLAN header (RFC 7348 §5: flags 0x08, VNI in bytes 4-6) then a payload naming i. */
function vxlanPayload(i: number): Uint8Array {
  const p = new Uint8Array(8 + 64);
  p[0] = 0x08;
  p[6] = 42; // VNI 42
  for (let j = 8; j < p.length; j++) p[j] = (i * 7 + j) & 255;
  return p;
}

describe("io: underlay socket (integration, needs root)", function () {
  this.timeout(30000);
  let a = "", b = "";
  const sockets: UnderlaySocket[] = [];

  before(() => {
    a = makeNs("ula");
    b = makeNs("ulb");
    veth(a, "va", b, "vb");
    ip(a, "addr", "add", "10.98.0.1/24", "dev", "va");
    ip(b, "addr", "add", "10.98.0.2/24", "dev", "vb");
  });
  afterEach(() => { for (const s of sockets.splice(0)) s.close(); });
  after(() => deleteAllNs());

  function open(ns: string, bindIp: string): UnderlaySocket {
    const s = UnderlaySocket.open({ bindIp, port: PORT, netns: `/var/run/netns/${ns}` });
    sockets.push(s);
    return s;
  }

  it("a batch of 32 raw IPv4/UDP packets sent with sendBatch arrives as 32, peer and payload intact", async () => {
    const sa = open(a, "10.98.0.1"), sb = open(b, "10.98.0.2");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const out = layout(memory, 34, 2048, 1024);
    const inb = layout(memory, 32, 2048, 1024 + 34 * 32 + 34 * 2560);
    for (let i = 0; i < 32; i++) {
      put(out, i, udp4("10.98.0.1", "10.98.0.2", 40000 + i, PORT, vxlanPayload(i)), Verdict.Overlay,
        ipv4ToU32("10.98.0.2"));
    }
    // Not selected by the mask: must not be sent.
    put(out, 32, udp4("10.98.0.1", "10.98.0.2", 41000, PORT, vxlanPayload(99)), Verdict.Drop, ipv4ToU32("10.98.0.2"));
    put(out, 33, udp4("10.98.0.1", "10.98.0.2", 41001, PORT, vxlanPayload(98)), Verdict.Tun, ipv4ToU32("10.98.0.2"));
    assert.equal(sa.sendBatch(memory, out.slotsAddr, 34, 1 << Verdict.Overlay), 32);
    assert.equal(sa.lastDropped, 0);

    let got = 0, calls = 0;
    const firstCall: number[] = [];
    await waitFor(() => {
      // Each call fills the slots after those already filled.
      const n = sb.recvBatch(memory, inb.slotsAddr + got * 32, 32 - got);
      calls++;
      if (calls === 1) firstCall.push(n);
      got += n;
      return got >= 32;
    }, "32 datagrams on 10.98.0.2:8472");
    assert.equal(got, 32);
    for (let i = 0; i < 32; i++) {
      const s = slot(inb, i);
      assert.equal(s.peer, ipv4ToU32("10.98.0.1"), `slot ${i} peer`);
      assert.equal(s.flags & SlotFlag.FROM_OVERLAY, SlotFlag.FROM_OVERLAY);
      assert.deepEqual(packet(inb, i), vxlanPayload(i), `slot ${i} payload (VXLAN header on)`);
    }
    // Nothing else arrived (the Drop and Tun slots stayed home).
    assert.equal(sb.recvBatch(memory, inb.slotsAddr, 32), 0);
    console.log(`      recvBatch calls for 32 datagrams: ${calls}; first call returned ${firstCall[0]}`);
  });

  it("onReadable fires for a datagram sent to the socket", async () => {
    const sa = open(a, "10.98.0.1"), sb = open(b, "10.98.0.2");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const out = layout(memory, 1, 2048, 1024), inb = layout(memory, 4, 2048, 8192);
    let received = 0;
    sb.onReadable(() => { received += sb.recvBatch(memory, inb.slotsAddr, 4); });
    try {
      put(out, 0, udp4("10.98.0.1", "10.98.0.2", 40000, PORT, vxlanPayload(1)), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
      assert.equal(sa.sendBatch(memory, out.slotsAddr, 1, 1 << Verdict.Overlay), 1);
      await waitFor(() => received === 1, "the readiness callback to receive the datagram");
    } finally {
      sb.stop();
    }
  });

  it("a port a kernel vxlan device holds gives EADDRINUSE with the fix", () => {
    ip(b, "link", "add", "vx0", "type", "vxlan", "id", "7", "dstport", String(PORT), "local", "10.98.0.2", "dev", "vb");
    ip(b, "link", "set", "vx0", "up");
    try {
      assert.throws(() => open(b, "10.98.0.2"), (e: Error & { code?: string }) => {
        assert.equal(e.code, "EADDRINUSE");
        assert.match(e.message, /^cannot bind underlay UDP socket to 10\.98\.0\.2:8472: address already in use \(EADDRINUSE\)\. Another VXLAN endpoint/);
        return true;
      });
    } finally {
      ip(b, "link", "del", "vx0");
    }
  });

  it("an address that is not IPv4 is refused before any socket is made", () => {
    assert.throws(() => UnderlaySocket.open({ bindIp: "10.98.0", port: PORT }), { code: "EINVAL" });
  });

  it("sendBatch with a packet past the end of memory sends nothing, not even the good slots", async () => {
    const sa = open(a, "10.98.0.1"), sb = open(b, "10.98.0.2");
    const memory = new WebAssembly.Memory({ initial: 64 });
    const out = layout(memory, 2, 2048, 1024), inb = layout(memory, 4, 2048, 8192);
    const dv = new DataView(memory.buffer), bad = out.slotsAddr + 32;
    put(out, 0, udp4("10.98.0.1", "10.98.0.2", 40000, PORT, vxlanPayload(1)), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
    put(out, 1, udp4("10.98.0.1", "10.98.0.2", 40001, PORT, vxlanPayload(2)), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
    dv.setUint32(bad, memory.buffer.byteLength - 4, true); // data: 100 bytes from 4 before the end
    dv.setUint32(bad + 4, 100, true);
    assert.throws(() => sa.sendBatch(memory, out.slotsAddr, 2, 1 << Verdict.Overlay), { code: "EFAULT" });
    // A marker sent afterwards is the first datagram to arrive: slot 0 above was never sent.
    const marker = vxlanPayload(77);
    put(out, 0, udp4("10.98.0.1", "10.98.0.2", 40077, PORT, marker), Verdict.Overlay, ipv4ToU32("10.98.0.2"));
    assert.equal(sa.sendBatch(memory, out.slotsAddr, 1, 1 << Verdict.Overlay), 1);
    let n = 0;
    await waitFor(() => (n = sb.recvBatch(memory, inb.slotsAddr, 4)) > 0, "the marker datagram");
    assert.equal(n, 1);
    assert.deepEqual(packet(inb, 0), marker);
  });
});
