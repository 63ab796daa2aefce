// The control socket's answers (src/daemon/control-api.ts) without a daemon: a context made of a real
// engine loaded from a config, as the daemon makes it. Packets come from the tests' own builder
// (test/helpers/packets.ts); the expected tuples follow from the config.
import { strict as assert } from "node:assert";
import { DEFAULT_CONFIG_RAW, defaultConfig, validateConfig, type Config } from "../../../src/config/index.js";
import { makeControlApi, type ControlContext } from "../../../src/daemon/control-api.js";
import { engineOptionsFor } from "../../../src/engine/options.js";
import { Engine } from "../../../src/engine/engine.js";
import { encodeModel } from "../../../src/engine/ops.js";
import { buildModel } from "../../../src/model/index.js";
import { nowSec } from "../../../src/daemon/datapath.js";
import { packet, TCP } from "../../helpers/packets.js";

function context(config: Config): { ctx: ControlContext; engine: Engine } {
  const engine = new Engine({ ...engineOptionsFor(config), conntrackCapacity: 4096 });
  const model = buildModel(config);
  const n = encodeModel(model, new Uint8Array(engine.memory, engine.stage, engine.stageCapacity), 0);
  assert.equal(engine.exports.commit(n), 0);
  const ctx: ControlContext = {
    engine: () => engine, engineOptions: () => engineOptionsFor(config), model: () => model, config: () => config,
    device: "wasp0", ioUring: false, gateway: () => "10.244.1.1", startedMs: Date.now() - 5000, pathDrops: () => ({ tun_queue_full: 0, tun_rx_dropped: 0, write_refused: 0, underlay_rcvbuf_full: 0, tunnel_tap_dropped: 0 }), tunnelGso: () => undefined,
    offload: async () => ({ on: false, why: "turned off (--offload off)" }),
  };
  return { ctx, engine };
}

describe("control API (unit): trace, conntrack, errors", () => {
  it("conntrack shows a flow the engine made, in both tuples, with its service; filters narrow it; an unknown filter key is named", () => {
    const { ctx, engine } = context(defaultConfig());
    const api = makeControlApi(ctx);
    engine.putPacket(0, packet({ src: "10.244.1.20", dst: "10.96.0.10", ttl: 63 }, { proto: "tcp", sport: 41000, dport: 80, flags: TCP.SYN }));
    engine.process(1, nowSec());
    const a = api({ cmd: "conntrack" }) as any;
    assert.equal(a.entries, 1);
    const f = a.flows[0];
    assert.deepEqual([f.proto, f.src, f.sport, f.dst, f.dport, f.backendPort, f.replyDst, f.replyDport, f.state, f.dnat, f.snat],
      ["tcp", "10.244.1.20", 41000, "10.96.0.10", 80, 8080, "10.244.1.20", 41000, "SYN_SENT", true, false]);
    assert.ok(["10.244.1.10", "10.244.1.11"].includes(f.backend), f.backend);
    assert.match(f.service, /^default\/web:80 \(10\.96\.0\.10:80\/TCP\)$/);
    assert.ok(f.expiresInSec > 100 && f.expiresInSec <= 120, String(f.expiresInSec)); // the kernel's SYN_SENT timeout, 120 s
    assert.equal((api({ cmd: "conntrack", filter: { proto: "udp" } }) as any).matched, 0);
    assert.equal((api({ cmd: "conntrack", filter: { addr: f.backend, port: "8080" } }) as any).matched, 1);
    assert.match((api({ cmd: "conntrack", filter: { colour: "red" } }) as any).error, /unknown conntrack filter "colour"/);
  });

  it("trace in TAP mode: the crafted frame goes in with its Ethernet header and the DNATed packet comes out of it", () => {
    const r = validateConfig({ ...structuredClone(DEFAULT_CONFIG_RAW as Record<string, unknown>), mode: "tap" });
    if ("problems" in r) assert.fail(JSON.stringify(r.problems));
    const { ctx } = context(r.config);
    const t = makeControlApi(ctx)({ cmd: "trace", src: "10.244.1.20", dst: "10.96.0.53", dport: 53, proto: "udp" }) as any;
    assert.equal(t.verdict, "tun");
    assert.deepEqual(t.stages.map((s: any) => s.stage), ["parse", "conntrack", "service", "backend", "nat", "route"]);
    assert.deepEqual([t.output.src, t.output.dst, t.output.dport], ["10.244.1.20", "10.244.1.12", 53]);
  });

  it("trace from a pod of another node enters through VXLAN from that node: decapsulated, then DNATed to the backend", () => {
    const r = validateConfig({ ...structuredClone(DEFAULT_CONFIG_RAW as Record<string, unknown>), nodes: [{ name: "node-b", underlayIP: "10.99.0.2", podCIDR: "10.244.2.0/24" }] });
    if ("problems" in r) assert.fail(JSON.stringify(r.problems));
    const t = makeControlApi(context(r.config).ctx)({ cmd: "trace", src: "10.244.2.5", dst: "10.96.0.53", dport: 53, proto: "udp" }) as any;
    assert.equal(t.arrives, "over VXLAN from node node-b (10.99.0.2)");
    assert.deepEqual(t.stages.map((s: any) => s.stage), ["decap", "parse", "conntrack", "service", "backend", "nat", "route"]);
    assert.equal(t.stages[0].detail, "VXLAN from 10.99.0.2 decapsulated");
    assert.equal(t.verdict, "tun");
    assert.deepEqual([t.output.src, t.output.dst], ["10.244.2.5", "10.244.1.12"]);
  });

  it("trace leaves the engine it was asked about untouched: no flow, no counter moves", () => {
    const { ctx, engine } = context(defaultConfig());
    const before = engine.counters().named.packets_in;
    const t = makeControlApi(ctx)({ cmd: "trace", src: "10.244.1.20", dst: "10.96.0.10", dport: 80, proto: "tcp" }) as any;
    assert.equal(t.verdict, "tun");
    assert.equal(engine.exports.ctCount(), 0);
    assert.equal(engine.counters().named.packets_in, before);
  });

  it("bad requests get an error naming the problem", () => {
    const api = makeControlApi(context(defaultConfig()).ctx);
    assert.match((api({ cmd: "trace", src: "pod-a", dst: "10.96.0.10", dport: 80 }) as any).error, /src "pod-a" is not an IP address/);
    assert.match((api({ cmd: "trace", src: "10.244.1.20", dst: "fd00::1", dport: 80 }) as any).error, /different families/);
    assert.match((api({ cmd: "trace", src: "10.244.1.20", dst: "10.96.0.10", dport: 0, proto: "tcp" }) as any).error, /port 0 is not 1-65535/);
    assert.match((api({ cmd: "trace", src: "10.244.1.20", dst: "10.96.0.10", dport: 80, proto: "sctp" }) as any).error, /proto "sctp"; expected tcp, udp or icmp/);
    assert.match((api({ cmd: "frob" }) as any).error, /unknown cmd "frob"; expected one of "status", "services", "conntrack"/);
  });
});
