// Shared fixtures for the core's tests: an engine with a small two-node cluster, batch helpers,
// and checks of the core's output by tshark and the RFC 1071 reference.
import assert from "node:assert/strict";
import { Engine, Verdict, Drop, SlotFlag } from "../../../src/engine/index.js";
import { parseIpv4 } from "../../../src/model/addr.js";
import type { EngineOptions, SlotView } from "../../../src/engine/index.js";
import { OpWriter } from "../../helpers/ops.js";
import { checksumsOk } from "../../helpers/packets.js";
import { dissect, CHECKSUM_GOOD, CHECKSUM_NOT_PRESENT, type Dissected } from "../../helpers/tshark.js";
import { LINKTYPE_RAW } from "../../helpers/pcap.js";

export { Verdict, Drop, SlotFlag };

// The cluster every test starts from: this node 192.168.100.1 with pods 10.244.1.0/24; node 2 at
// 192.168.100.2 with pods 10.244.2.0/24 (VTEP MAC 02:00:00:00:00:09); services in 10.96.0.0/12.
export const NODE1 = "192.168.100.1";
export const NODE2 = "192.168.100.2";
export const NODE2_MAC = [0x02, 0, 0, 0, 0, 0x09];
export const MASQ4 = "169.254.1.2";

export function newEngine(opts: EngineOptions = {}): Engine {
  return new Engine({
    maxBatch: 64, conntrackCapacity: 1024, maxServices: 1024, maxBackends: 4096, maxRoutes: 256, maglevCells: 1 << 18,
    underlayIp: NODE1, vni: 1, underlayMtu: 1500, seed: 42, masqAddr4: MASQ4, masqAddr6: "fd00::2",
    serviceCidr4: "10.96.0.0/12", clusterCidr4: "10.244.0.0/16", serviceCidr6: "fd96::/108", clusterCidr6: "fd44::/48",
    ...opts,
  });
}

/** Routes of the two-node cluster (IPv4 and IPv6 pods). */
export function clusterRoutes(w = new OpWriter().clear()): OpWriter {
  return w.route("10.244.1.0", 24, 0).route("10.244.2.0", 24, 1, parseIpv4(NODE2), NODE2_MAC)
    .route("fd44:0:0:1::", 64, 0).route("fd44:0:0:2::", 64, 1, parseIpv4(NODE2), NODE2_MAC);
}

export function commit(e: Engine, w: OpWriter): void {
  assert.equal(e.commitOps(w.bytes()), 0, "commit accepted");
}

export interface Out { slot: SlotView; bytes: Uint8Array }

/** Puts each packet in its own slot, runs one batch at time `now`, returns every slot's result. */
export function run(e: Engine, packets: Uint8Array[], now = 100, flags = 0, peer = 0): Out[] {
  packets.forEach((p, i) => e.putPacket(i, p, flags, peer));
  e.process(packets.length, now);
  return packets.map((_, i) => {
    const slot = e.slot(i);
    return { slot, bytes: slot.verdict === Verdict.Drop ? new Uint8Array(0) : e.output(i) };
  });
}

export function runOne(e: Engine, p: Uint8Array, now = 100, flags = 0, peer = 0): Out {
  return run(e, [p], now, flags, peer)[0]!;
}

/** Asserts the verdict (and the reason, when given), naming what came instead. */
export function expectVerdict(o: Out, v: Verdict, reason?: Drop): void {
  assert.equal(Verdict[o.slot.verdict], Verdict[v], `verdict (reason ${Drop[o.slot.reason]})`);
  if (reason !== undefined) assert.equal(Drop[o.slot.reason], Drop[reason], "reason");
}

/** Every checksum tshark can verify in these packets is good; returns the dissections. */
export function tsharkValid(packets: Uint8Array[], linktype = LINKTYPE_RAW): Dissected[] {
  const ds = dissect(packets, linktype);
  ds.forEach((d, i) => {
    for (const f of ["ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "icmp.checksum.status", "icmpv6.checksum.status"]) {
      // RFC 768 / RFC 7348: a zero UDP checksum over IPv4 is "none" (tshark: not present)
      const ok = f === "udp.checksum.status" ? [CHECKSUM_GOOD, CHECKSUM_NOT_PRESENT] : [CHECKSUM_GOOD];
      for (const s of d.all(f)) assert.ok(ok.includes(s), `packet ${i}: ${f} is ${s} (expert: ${d.expert().join("; ")})`);
    }
    // application dissectors may call random payloads malformed; only the headers are ours
    const bad = d.expert().filter((m) => /checksum|bogus|invalid/i.test(m));
    assert.deepEqual(bad, [], `packet ${i}: tshark expert info`);
  });
  return ds;
}

/** The RFC 1071 reference agrees that every checksum of the packet is right. */
export function referenceValid(p: Uint8Array): void {
  assert.ok(checksumsOk(p), "checksums by the RFC 1071 reference");
}

/** An ICMP error with the packet it quotes at `quoteAt`: the outer and the quoted checksums valid by
 *  the reference, then every checksum by tshark; tshark's dissection. */
export function errorValid(p: Uint8Array, quoteAt: number): Dissected {
  referenceValid(p);
  referenceValid(p.subarray(quoteAt));
  return tsharkValid([p])[0]!;
}
