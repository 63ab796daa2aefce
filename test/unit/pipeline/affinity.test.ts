// sessionAffinity: ClientIP — a client's new connections go to the backend it was given, for
// affinitySec after its last new connection (kube-proxy: the "recent" match, timeoutSeconds).
import assert from "node:assert/strict";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, run, runOne, Verdict } from "./setup.js";
import { Note } from "../../../src/engine/index.js";

const VIP = "10.96.0.10";
const BACKENDS = ["10.244.1.10", "10.244.1.11", "10.244.1.12", "10.244.1.13"];
const syn = (src: string, sport: number) => packet({ src, dst: VIP }, { proto: "tcp", sport, dport: 80, flags: TCP.SYN });

describe("pipeline: session affinity (ClientIP)", () => {
  for (const ct of [64, 1024]) {
    it(`a client's new connections keep one backend (conntrack capacity ${ct})`, () => {
      const e = newEngine({ conntrackCapacity: ct });
      commit(e, clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, flags: 2, affinitySec: 60, backends: BACKENDS.map((ip) => ({ ip, port: 80 })) }));
      for (let c = 0; c < 5; c++) {
        const src = `10.244.1.${50 + c}`;
        const dsts = run(e, Array.from({ length: 20 }, (_, i) => syn(src, 1000 + i)), 100 + c).map((o) => parse(o.bytes).dst);
        assert.equal(new Set(dsts).size, 1, `client ${src}: ${dsts}`);
      }
      assert.equal(e.checkInvariants(), 0);
    });
  }

  it("thousands of clients with affinity leave the service and conntrack tables intact", () => {
    const e = newEngine({ conntrackCapacity: 64 });
    commit(e, clusterRoutes()
      .service({ vip: VIP, port: 80, proto: "tcp", id: 1, flags: 2, affinitySec: 60, backends: BACKENDS.map((ip) => ({ ip, port: 80 })) })
      .service({ vip: "10.96.0.20", port: 53, proto: "udp", id: 2, backends: [{ ip: "10.244.1.20", port: 53 }] }));
    for (let b = 0; b < 64; b++) {
      run(e, Array.from({ length: 64 }, (_, i) => syn(`10.244.${1 + (b >> 4)}.${(b & 15) * 16 + (i >> 2)}`, 2000 + i)), 100);
      assert.equal(e.checkInvariants(), 0, `batch ${b}`);
    }
    const o = runOne(e, packet({ src: "10.244.1.5", dst: "10.96.0.20" }, { proto: "udp", sport: 9, dport: 53 }), 101);
    assert.equal(o.slot.verdict, Verdict.Tun);
    assert.equal(parse(o.bytes).dst, "10.244.1.20");
  });

  it("after affinitySec without new connections, the client may be sent elsewhere (a fresh choice)", () => {
    const e = newEngine();
    commit(e, clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, flags: 2, affinitySec: 10, backends: BACKENDS.map((ip) => ({ ip, port: 80 })) }));
    const seen = new Set<string>();
    for (let t = 0; t < 40; t++) {
      const o = runOne(e, syn("10.244.1.77", 3000 + t), 100 + t * 11);
      seen.add(parse(o.bytes).dst);
      assert.equal(o.slot.note & Note.AFFINITY, 0, "never within the timeout");
    }
    assert.ok(seen.size > 1, "fresh random choices after expiry");
  });

  it("affinity is to the backend, not to its position: a reload that reorders the list keeps the client's backend", () => {
    const e = newEngine();
    const svc = (order: string[]) => clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, flags: 2, affinitySec: 60, backends: order.map((ip) => ({ ip, port: 80 })) });
    commit(e, svc(BACKENDS));
    const clients = Array.from({ length: 8 }, (_, i) => `10.244.1.${60 + i}`);
    const first = clients.map((c, i) => parse(runOne(e, syn(c, 5000 + i), 100).bytes).dst);
    commit(e, svc([...BACKENDS].reverse()));
    const again = clients.map((c, i) => parse(runOne(e, syn(c, 6000 + i), 101).bytes).dst);
    assert.deepEqual(again, first);
  });

  it("a client whose backend was removed gets a live backend and keeps it", () => {
    const e = newEngine();
    const svc = (list: string[]) => clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 1, flags: 2, affinitySec: 60, backends: list.map((ip) => ({ ip, port: 80 })) });
    commit(e, svc(BACKENDS));
    const b = parse(runOne(e, syn("10.244.1.90", 7000), 100).bytes).dst;
    commit(e, svc(BACKENDS.filter((x) => x !== b)));
    const c = parse(runOne(e, syn("10.244.1.90", 7001), 101).bytes).dst;
    assert.notEqual(c, b);
    assert.ok(BACKENDS.includes(c), `${c} is one of the remaining backends`);
    for (let i = 0; i < 5; i++) assert.equal(parse(runOne(e, syn("10.244.1.90", 7002 + i), 102 + i).bytes).dst, c);
  });
});
