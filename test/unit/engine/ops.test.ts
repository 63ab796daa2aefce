import { strict as assert } from "node:assert";
import { existsSync } from "node:fs";
import fc from "fast-check";
import { defaultConfig, validateConfig, type Config } from "../../../src/config/index.js";
import { CommitResult, Op, Verdict } from "../../../src/engine/abi.js";
import { decodeOps, encodeModel, encodeOps, measureOps, type DecodedOp } from "../../../src/engine/ops.js";
import { buildModel, diffModel, formatIp, fullDelta, PROTO, RouteKind, ServiceFlag, ServiceKind, type Model, type ModelDelta } from "../../../src/model/index.js";
import { OpWriter } from "../../helpers/ops.js";
import { packet, parse, TCP } from "../../helpers/packets.js";
import { configArb } from "../../helpers/arbitrary.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const EMPTY: ModelDelta = { clear: false, deleteServices: [], upsertServices: [], deleteRoutes: [], upsertRoutes: [], deleteLocalAddrs: [], addLocalAddrs: [], deleteVips: [], addVips: [] };

function cfg(raw: Record<string, any>): Config {
  const r = validateConfig(raw);
  if ("problems" in r) assert.fail(JSON.stringify(r.problems));
  return r.config;
}

function encode(delta: ModelDelta, end = true): Uint8Array {
  const out = new Uint8Array(measureOps(delta, { end }));
  assert.equal(encodeOps(delta, out, 0, { end }), out.length);
  return out;
}

const twoNodes = () => cfg({
  node: { name: "n1", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" },
  services: [{ name: "web", clusterIP: "10.96.0.10", ports: [{ port: 80, targetPort: 8080 }], backends: [{ ip: "10.244.1.10" }] }],
  nodes: [{ name: "n2", underlayIP: "10.99.0.2", podCIDR: "10.244.2.0/24" }],
});

describe("engine/ops", () => {
  // Expected bytes below are written by hand from the "control ops" comment of assembly/abi.ts and the
  // byte order assembly/table/generation.ts reads (ports and weights with ld16: network order).
  it("encodes a NodePort entry's key address as its family's unspecified address: ::ffff:0.0.0.0 (RFC 4291 2.5.5.2) and ::", () => {
    const c = cfg({
      node: { name: "n1", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" }, serviceCIDRv6: "fd00:96::/112",
      services: [{ name: "np", type: "NodePort", clusterIPs: ["10.96.0.11", "fd00:96::11"], ports: [{ port: 80, nodePort: 30080 }], backends: [{ ip: "10.244.1.10" }, { ip: "fd00:10:244:1::a" }] }],
    });
    const m = buildModel(c);
    const key = (k: string) => hex(encode({ ...EMPTY, upsertServices: [m.services.get(k)!] }, false).subarray(8, 24));
    assert.equal(key("0.0.0.0:30080/TCP"), "00000000000000000000ffff00000000");
    assert.equal(key("[::]:30080/TCP"), "00000000000000000000000000000000");
  });

  it("encodes an UpsertRoute as abi.ts lays it out: 40 bytes, ::ffff:10.244.2.0, len 120, Remote, node 1", () => {
    const m = buildModel(twoNodes());
    const bytes = encode({ ...EMPTY, upsertRoutes: [m.routes.get("10.244.2.0/24")!] }, false);
    assert.equal(hex(bytes),
      "03000000" + "28000000" +                        // code 3, size 40
      "00000000000000000000ffff0af40200" +             // prefix, IPv4-mapped
      "78" + "01" + "0100" +                           // len 120 (of 128), Remote, nodeId 1
      "0200630a" +                                     // underlay 10.99.0.2 as a u32 (0x0a630002), little-endian
      "020a63000201" + "0000");                        // VTEP MAC 02:<10.99.0.2>:01, padding
  });

  it("encodes an UpsertService as abi.ts lays it out: 52 bytes then 20 per backend", () => {
    const m = buildModel(twoNodes());
    const bytes = encode({ ...EMPTY, upsertServices: [m.services.get("10.96.0.10:80/TCP")!] }, false);
    assert.equal(hex(bytes),
      "01000000" + "48000000" +                        // code 1, size 72
      "00000000000000000000ffff0a60000a" +             // 10.96.0.10
      "0050" + "06" + "00" +                           // port 80 (network order), TCP, ClusterIp
      "00000000" +                                     // id 0
      "00" + "01" + "0000" +                           // Random, MASQUERADE_EXTERNAL, padding
      "00000000" + "00000000" +                        // affinitySec 0, maglevSize 0
      "01000000" + "01000000" +                        // count 1, eligible 1
      "00000000000000000000ffff0af4010a" + "1f90" + "0001"); // 10.244.1.10, port 8080, weight 1
  });

  it("encodes deletes, local addresses, Clear and End with their fixed sizes", () => {
    const m = buildModel(twoNodes());
    const d: ModelDelta = {
      clear: true, upsertServices: [], upsertRoutes: [],
      deleteServices: [m.services.get("10.96.0.10:80/TCP")!], deleteRoutes: [m.routes.get("10.244.2.0/24")!],
      deleteLocalAddrs: ["10.99.0.1"], addLocalAddrs: ["2001:db8::1"], deleteVips: ["10.96.0.10"], addVips: [],
    };
    assert.equal(hex(encode(d)),
      "07000000" + "08000000" +                                                                  // Clear
      "02000000" + "1c000000" + "00000000000000000000ffff0a60000a" + "0050" + "06" + "00" +      // DeleteService
      "02000000" + "1c000000" + "00000000000000000000ffff0a60000a" + "0000" + "00" + "00" +      // DeleteService of the echo marker
      "04000000" + "1c000000" + "00000000000000000000ffff0af40200" + "78" + "00" + "0000" +      // DeleteRoute
      "06000000" + "18000000" + "00000000000000000000ffff0a630001" +                            // DeleteLocalAddr
      "05000000" + "18000000" + "20010db8000000000000000000000001" +                            // AddLocalAddr
      "00000000" + "08000000");                                                                  // End
  });

  it("encodes an echo marker as the UpsertService of its VIP with port 0, protocol 0 and no backends (52 bytes), as the OpWriter does", () => {
    const bytes = encode({ ...EMPTY, addVips: ["10.96.0.10", "fd00::a"] }, false);
    assert.equal(hex(bytes),
      "01000000" + "34000000" + "00000000000000000000ffff0a60000a" + "00".repeat(28) +       // 10.96.0.10, port 0, proto 0, all 0
      "01000000" + "34000000" + "fd00000000000000000000000000000a" + "00".repeat(28));       // fd00::a
    assert.equal(hex(bytes), hex(new OpWriter().service({ vip: "10.96.0.10", port: 0, proto: 0, id: 0, backends: [] })
      .service({ vip: "fd00::a", port: 0, proto: 0, id: 0, backends: [] }).bytes()));
  });

  it("encodes a LoadBalancer entry's source ranges after its backends: the u16 count at 34, then addr16 | len of 128 | 0 | 0 each (20 bytes), as the OpWriter does", () => {
    const m = buildModel(cfg({
      node: { name: "n1", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" },
      services: [{ name: "lb", type: "LoadBalancer", clusterIP: "10.96.0.10", loadBalancerIPs: ["198.51.100.1"], loadBalancerSourceRanges: ["203.0.113.0/24"], ports: [{ port: 80, targetPort: 8080 }], backends: [{ ip: "10.244.1.10" }] }],
    }));
    const e = m.services.get("198.51.100.1:80/TCP")!;
    const bytes = encode({ ...EMPTY, upsertServices: [e] }, false);
    assert.equal(hex(bytes),
      "01000000" + "5c000000" +                        // code 1, size 92 = 52 + 20 + 20
      "00000000000000000000ffffc6336401" +             // 198.51.100.1
      "0050" + "06" + "03" +                           // port 80, TCP, LoadBalancer
      hex(new Uint8Array(new Uint32Array([e.id]).buffer)) +
      "00" + "01" + "0100" +                           // Random, MASQUERADE_EXTERNAL, 1 range (little-endian)
      "00000000" + "00000000" + "01000000" + "01000000" +
      "00000000000000000000ffff0af4010a" + "1f90" + "0001" + // backend 10.244.1.10:8080, weight 1
      "00000000000000000000ffffcb007100" + "78" + "00" + "0000"); // 203.0.113.0, len 120 (of 128)
    assert.equal(hex(bytes), hex(new OpWriter().service({
      vip: "198.51.100.1", port: 80, proto: "tcp", kind: ServiceKind.LoadBalancer, id: e.id, flags: ServiceFlag.MASQUERADE_EXTERNAL,
      backends: [{ ip: "10.244.1.10", port: 8080 }], ranges: ["203.0.113.0/24"],
    }).bytes()));
    const [d] = decodeOps(bytes) as Array<Extract<DecodedOp, { op: Op.UpsertService }>>;
    assert.deepEqual(d!.ranges, ["203.0.113.0/120"]);
  });

  it("writes the same bytes as the test helper's independent OpWriter for a service and a route", () => {
    const m = buildModel(twoNodes());
    const w = new OpWriter()
      .route("10.244.2.0", 24, 1, 0x0a630002, [0x02, 0x0a, 0x63, 0x00, 0x02, 0x01], 1)
      .service({ vip: "10.96.0.10", port: 80, proto: "tcp", kind: 0, id: 0, flags: ServiceFlag.MASQUERADE_EXTERNAL, backends: [{ ip: "10.244.1.10", port: 8080 }] });
    const mine = encode({ ...EMPTY, upsertRoutes: [m.routes.get("10.244.2.0/24")!], upsertServices: [m.services.get("10.96.0.10:80/TCP")!] }, false);
    assert.equal(hex(mine), hex(w.bytes()));
  });

  it("puts Clear first, then deletes, then additions", () => {
    const a = buildModel(defaultConfig());
    const raw = structuredClone(defaultConfig()) as any;
    raw.services[0].backends.pop();
    raw.services.splice(1, 1);
    raw.node.nodeAddresses = ["10.99.0.7"];
    raw.nodes = [{ name: "n2", underlayIP: "10.99.0.2", podCIDR: "10.244.2.0/24" }];
    const b = buildModel(raw as Config, a);
    const ops = decodeOps(encode({ ...diffModel(a, b), clear: true })).map((o) => Op[o.op]);
    // the dns service's two entries go, then its address's echo marker
    assert.deepEqual(ops, ["Clear", "DeleteService", "DeleteService", "DeleteService", "DeleteLocalAddr", "AddLocalAddr", "UpsertRoute", "UpsertService", "End"]);
  });

  it("measureOps equals the bytes written, and every op size is a multiple of 4", () => {
    fc.assert(fc.property(configArb, (c) => {
      const d = fullDelta(buildModel(c));
      const bytes = encode(d);
      for (const op of decodeOps(bytes)) assert.equal(op.size % 4, 0);
    }), { seed: 3, numRuns: 100 });
  });

  it("writes at an offset of a larger buffer or DataView and touches nothing outside the ops", () => {
    const d = fullDelta(buildModel(defaultConfig()));
    const n = measureOps(d);
    const buf = new Uint8Array(n + 64).fill(0xee);
    assert.equal(encodeOps(d, new DataView(buf.buffer, 16), 16), n);
    assert.ok(buf.subarray(0, 32).every((x) => x === 0xee), "nothing written before the ops");
    assert.ok(buf.subarray(32 + n).every((x) => x === 0xee), "nothing written after the ops");
    assert.deepEqual(decodeOps(buf.subarray(32, 32 + n)), decodeOps(encode(d)));
  });

  it("refuses with a RangeError, writing nothing, when the ops do not fit the staging area", () => {
    const d = fullDelta(buildModel(defaultConfig()));
    const buf = new Uint8Array(measureOps(d) - 4);
    assert.throws(() => encodeOps(d, buf, 0), /control ops need \d+ bytes at offset 0; the staging area has \d+/);
    assert.ok(buf.every((x) => x === 0), "nothing written to a staging area too small");
  });

  it("decodeOps refuses unknown codes, wrong sizes and non-zero reserved bytes", () => {
    const good = encode({ ...EMPTY, addLocalAddrs: ["10.0.0.1"] });
    const bad = (f: (b: Uint8Array) => void) => { const b = good.slice(); f(b); return b; };
    assert.throws(() => decodeOps(bad((b) => { b[0] = 99; })), /unknown op code/);
    assert.throws(() => decodeOps(bad((b) => { b[4] = 22; })), /size/);
    assert.throws(() => decodeOps(bad((b) => { b[1] = 1; })), /reserved/);
  });

  it("round-trips a full model field by field through encode and decode, for random configs", () => {
    fc.assert(fc.property(configArb, (c) => {
      const m = buildModel(c);
      const ops = decodeOps(encode(fullDelta(m)));
      assert.equal(ops[0]!.op, Op.Clear);
      assert.equal(ops[ops.length - 1]!.op, Op.End);
      checkAgainstModel(ops, m);
    }), { seed: 99, numRuns: 150 });
  });

  it("round-trips a diff between random configs as exactly its deletes and upserts", () => {
    fc.assert(fc.property(configArb, configArb, (ca, cb) => {
      const a = buildModel(ca), b = buildModel(cb, a), d = diffModel(a, b);
      const ops = decodeOps(encode(d));
      const keys = (code: Op) => ops.filter((o) => o.op === code);
      assert.equal(keys(Op.DeleteService).length, d.deleteServices.length + d.deleteVips.length);
      assert.equal(keys(Op.UpsertService).length, d.upsertServices.length + d.addVips.length);
      assert.equal(keys(Op.DeleteRoute).length, d.deleteRoutes.length);
      assert.equal(keys(Op.UpsertRoute).length, d.upsertRoutes.length);
      d.deleteServices.forEach((k, i) => {
        const o = keys(Op.DeleteService)[i] as Extract<DecodedOp, { op: Op.DeleteService }>;
        assert.deepEqual([o.addr, o.port, o.proto], [k.addr, k.port, PROTO[k.protocol]]);
      });
    }), { seed: 5, numRuns: 100 });
  });

  describe("with the wasm core", function () {
    let Engine: typeof import("../../../src/engine/engine.js").Engine | undefined;
    before(async function () {
      const { defaultWasmPath, Engine: E } = await import("../../../src/engine/engine.js");
      if (!existsSync(defaultWasmPath())) this.skip(); // npm run build:wasm first
      Engine = E;
    });

    const newEngine = () => new Engine!({
      maxBatch: 8, conntrackCapacity: 1024, maxServices: 256, maxBackends: 1024, maxRoutes: 64, maglevCells: 1 << 16,
      underlayIp: "10.99.0.1", seed: 1, serviceCidr4: "10.96.0.0/16", clusterCidr4: "10.244.0.0/16",
    });
    const commit = (e: InstanceType<NonNullable<typeof Engine>>, write: (out: Uint8Array, at: number) => number) =>
      e.exports.commit(write(new Uint8Array(e.memory), e.stage));

    it("the core accepts the demo model as one commit and DNATs web's VIP to a backend on 8080", () => {
      const e = newEngine();
      const m = buildModel(defaultConfig());
      assert.equal(CommitResult[commit(e, (out, at) => encodeModel(m, out, at))], "Ok");
      assert.equal(e.exports.serviceCount(), 5);
      assert.equal(e.exports.routeCount(), 1);
      e.putPacket(0, packet({ src: "10.244.1.50", dst: "10.96.0.10" }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.SYN }));
      e.process(1, 100);
      const out = parse(e.output(0));
      assert.ok(["10.244.1.10", "10.244.1.11"].includes(out.dst), out.dst);
      assert.equal(out.dport, 8080);
      assert.equal(e.slot(0).service, m.services.get("10.96.0.10:80/TCP")!.id + 1);
    });

    it("with the model's echo markers the core answers a ping to a ClusterIP, an externalIP and a LoadBalancer IP (RFC 792 echo reply from the VIP), not to a node's NodePort address", () => {
      const e = newEngine();
      const withLb = (): Config => {
        const c = defaultConfig(), web = c.services[0]!;
        c.services[0] = { ...web, type: "LoadBalancer", externalIPs: ["192.0.2.10"], loadBalancerIPs: ["198.51.100.1"], ports: [{ ...web.ports[0]!, nodePort: 30081 }] };
        return c;
      };
      const m = buildModel(withLb());
      assert.equal(commit(e, (out, at) => encodeModel(m, out, at)), CommitResult.Ok);
      assert.equal(e.exports.serviceCount(), m.services.size, "markers are not counted as service entries");
      const ping = (dst: string) => packet({ src: "10.244.1.50", dst }, { proto: "icmp", type: 8, rest: 0x77000001, payload: new Uint8Array(8).fill(7) });
      const vips = ["10.96.0.10", "192.0.2.10", "198.51.100.1"];
      [...vips, "10.99.0.1"].forEach((dst, i) => e.putPacket(i, ping(dst)));
      e.process(4, 100);
      for (const [i, vip] of vips.entries()) {
        const q = parse(e.output(i));
        assert.deepEqual([q.src, q.dst, q.icmpType], [vip, "10.244.1.50", 0], `ping ${vip}`);
      }
      assert.equal(Verdict[e.slot(3).verdict], "Host", "a ping to the node address goes to the host (Verdict.Host), the node answers it itself");
      // a reload that removes web removes its markers: the ClusterIP is no longer echoed
      const c = withLb(); c.services.shift();
      const b = buildModel(c, m);
      assert.equal(commit(e, (out, at) => encodeOps(diffModel(m, b), out, at)), CommitResult.Ok);
      e.putPacket(0, ping("10.96.0.10"));
      e.process(1, 101);
      assert.ok(e.slot(0).verdict === Verdict.Drop || parse(e.output(0)).icmpType !== 0, "no echo reply after the marker is deleted");
    });

    it("echo markers have room beside a full table of port entries (tables.services counts port entries only)", () => {
      const e = new Engine!({ maxBatch: 8, conntrackCapacity: 1024, maxServices: 64, maxBackends: 64, maxRoutes: 8, maglevCells: 1024, underlayIp: "10.99.0.1", seed: 1 });
      const w = new OpWriter();
      for (let i = 0; i < 64; i++) w.service({ vip: `10.96.1.${i}`, port: 80, proto: "tcp", id: i, backends: [] }).service({ vip: `10.96.1.${i}`, port: 0, proto: 0, id: 0, backends: [] });
      assert.equal(CommitResult[e.commitOps(w.bytes())], "Ok");
      assert.equal(e.exports.serviceCount(), 64);
      assert.equal(e.checkInvariants(), 0);
      assert.equal(CommitResult[e.commitOps(new OpWriter().service({ vip: "10.96.2.1", port: 80, proto: "tcp", id: 64, backends: [] }).bytes())], "ServicesFull");
      assert.equal(CommitResult[e.commitOps(new OpWriter().service({ vip: "10.96.2.1", port: 0, proto: 0, id: 0, backends: [] }).bytes())], "ServicesFull");
    });

    it("the core finds the NodePort entry (key 0.0.0.0, i.e. ::ffff:0.0.0.0) for a packet to the node address on 30080", () => {
      const e = newEngine();
      const m = buildModel(defaultConfig());
      assert.equal(commit(e, (out, at) => encodeModel(m, out, at)), CommitResult.Ok);
      e.putPacket(0, packet({ src: "10.244.1.50", dst: "10.99.0.1" }, { proto: "tcp", sport: 40002, dport: 30080, flags: TCP.SYN }));
      e.process(1, 100);
      assert.equal(e.slot(0).service, m.services.get("0.0.0.0:30080/TCP")!.id + 1);
      const out = parse(e.output(0));
      assert.ok(["10.244.1.10", "10.244.1.11"].includes(out.dst), out.dst);
      assert.equal(out.dport, 8080);
    });

    it("the core accepts a reload diff, and a service deleted by it no longer DNATs", () => {
      const e = newEngine();
      const a = buildModel(defaultConfig());
      assert.equal(commit(e, (out, at) => encodeModel(a, out, at)), CommitResult.Ok);
      const c = defaultConfig();
      c.services.shift(); // web goes
      c.nodes = [{ name: "n2", underlayIP: "10.99.0.2", podCIDR: "10.244.2.0/24" }];
      const b = buildModel(c, a);
      assert.equal(CommitResult[commit(e, (out, at) => encodeOps(diffModel(a, b), out, at))], "Ok");
      assert.equal(e.exports.serviceCount(), 4);
      assert.equal(e.exports.routeCount(), 2);
      e.putPacket(0, packet({ src: "10.244.1.50", dst: "10.96.0.10" }, { proto: "tcp", sport: 40001, dport: 80, flags: TCP.SYN }));
      e.process(1, 100);
      assert.notEqual(e.slot(0).service, a.services.get("10.96.0.10:80/TCP")!.id + 1);
    });
  });
});

/** Every decoded op equals the model entry with its key, field by field. */
function checkAgainstModel(ops: DecodedOp[], m: Model): void {
  const upserts = ops.filter((o): o is Extract<DecodedOp, { op: Op.UpsertService }> => o.op === Op.UpsertService);
  const services = upserts.filter((o) => o.proto !== 0);
  const markers = upserts.filter((o) => o.proto === 0);
  for (const o of markers) assert.deepEqual([o.port, o.kind, o.id, o.flags, o.count, o.eligible], [0, 0, 0, 0, 0, 0], `marker ${o.addr}`);
  const vipAddrs = new Set([...m.services.values()].filter((e) => e.kind !== ServiceKind.NodePort).map((e) => e.addr));
  assert.deepEqual(markers.map((o) => o.addr).sort(), [...vipAddrs].sort(), "one echo marker per ClusterIP, externalIP and LoadBalancer IP");
  const routes = ops.filter((o): o is Extract<DecodedOp, { op: Op.UpsertRoute }> => o.op === Op.UpsertRoute);
  const addrs = ops.filter((o): o is Extract<DecodedOp, { op: Op.AddLocalAddr | Op.DeleteLocalAddr }> => o.op === Op.AddLocalAddr);
  assert.equal(services.length, m.services.size);
  assert.equal(routes.length, m.routes.size);
  assert.deepEqual(addrs.map((a) => a.addr).sort(), [...m.localAddrs].sort());
  const entries = [...m.services.values()];
  services.forEach((o, i) => {
    const e = entries[i]!;
    assert.deepEqual(
      [o.addr, o.port, o.proto, o.kind, o.id, o.select, o.flags, o.affinitySec, o.maglevSize, o.count, o.eligible],
      [e.addr, e.port, PROTO[e.protocol], e.kind, e.id, e.select, e.flags, e.affinitySec, e.maglevSize, e.backends.length, e.eligible]);
    assert.deepEqual(o.backends, e.backends.map((b) => ({ addr: b.addr, port: b.port, weight: b.weight })));
    assert.deepEqual(o.ranges, e.sourceRanges.map((r) => `${formatIp({ family: e.family, bytes: r.prefix16 })}/${r.prefixLen128}`));
    if (e.kind === ServiceKind.NodePort) assert.equal(o.addr, e.family === 4 ? "0.0.0.0" : "::");
  });
  const rs = [...m.routes.values()];
  routes.forEach((o, i) => {
    const r = rs[i]!;
    assert.equal(`${o.prefix}/${r.family === 4 ? o.prefixLen128 - 96 : o.prefixLen128}`, r.key);
    assert.deepEqual([o.kind, o.nodeId, o.vtepMac], [r.kind, r.nodeId, r.vtepMac]);
    if (r.kind === RouteKind.Remote) assert.equal(o.underlay, `10.99.0.${r.nodeId + 1}`); // the generator's numbering
  });
}
