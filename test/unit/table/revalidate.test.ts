// After a reload, the sweep removes UDP flows whose backend is gone without waiting for their next
// packet (kube-proxy deletes such conntrack entries when an endpoint goes away); TCP flows stay.
import assert from "node:assert/strict";
import { packet, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, run } from "../pipeline/setup.js";
import { CT_PROTO, CT_R_SRC } from "../../../src/engine/index.js";

const VIP = "10.96.0.10", A = "10.244.1.10", B = "10.244.1.11";

function tables(backends: string[]) {
  return clusterRoutes()
    .service({ vip: VIP, port: 53, proto: "udp", id: 1, backends: backends.map((ip) => ({ ip, port: 5353 })) })
    .service({ vip: VIP, port: 80, proto: "tcp", id: 2, backends: backends.map((ip) => ({ ip, port: 8080 })) });
}

describe("table/revalidate: the sweep after a reload", () => {
  it("removes the UDP flows of a removed backend and keeps the others and every TCP flow", () => {
    const e = newEngine({ conntrackCapacity: 4096 });
    commit(e, tables([A, B]));
    const udp = Array.from({ length: 200 }, (_, i) => packet({ src: "10.244.1.5", dst: VIP }, { proto: "udp", sport: 20000 + i, dport: 53 }));
    const tcp = Array.from({ length: 200 }, (_, i) => packet({ src: "10.244.1.5", dst: VIP }, { proto: "tcp", sport: 30000 + i, dport: 80, flags: TCP.SYN }));
    for (let i = 0; i < udp.length; i += 50) run(e, udp.slice(i, i + 50), 100);
    for (let i = 0; i < tcp.length; i += 50) run(e, tcp.slice(i, i + 50), 100);
    assert.equal(e.exports.ctCount(), 400);
    // which UDP flows went to B: their reply source is B (IPv4-mapped: the address in its last 4 bytes)
    const v = e.view();
    let udpToB = 0;
    for (let i = 0; i < e.exports.ctCapacity(); i++) {
      const r = e.exports.ctRecord(i);
      if (r && v.getUint8(r + CT_PROTO) === 17 && [12, 13, 14, 15].map((o) => v.getUint8(r + CT_R_SRC + o)).join(".") === B) udpToB++;
    }
    assert.ok(udpToB > 50 && udpToB < 150, `random choice spread the UDP flows (${udpToB} to B)`);
    commit(e, tables([A]));
    const before = e.counters().named.stale_udp_flushed;
    // budget 16 checks 256 records a call: 4096 records take 16 calls
    for (let i = 0; i < 20; i++) e.exports.sweep(101, 16);
    assert.equal(e.counters().named.stale_udp_flushed - before, udpToB);
    assert.equal(e.exports.ctCount(), 400 - udpToB);
    assert.equal(e.checkInvariants(), 0);
  });

  it("a second reload during a walk restarts it against the newest tables", () => {
    const e = newEngine({ conntrackCapacity: 4096 });
    commit(e, tables([A, B]));
    run(e, Array.from({ length: 40 }, (_, i) => packet({ src: "10.244.1.5", dst: VIP }, { proto: "udp", sport: 40000 + i, dport: 53 })), 100);
    commit(e, tables([A, B]));            // nothing removed
    e.exports.sweep(101, 1);               // the walk has started (16 records)
    commit(e, tables([]));                 // now every backend is gone
    for (let i = 0; i < 300; i++) e.exports.sweep(101, 1);
    assert.equal(e.exports.ctCount(), 0);
    assert.equal(e.checkInvariants(), 0);
  });
});
