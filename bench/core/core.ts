// npm run bench -- core: packets per second of the wasm core against the same pipeline in plain
// TypeScript, side by side in one run: (a) established-flow hits, (b) new flows.
// Workload (workload.ts): 10,000 services x 2 backends, 100,000 tracked flows, 64-byte TCP.
import Benchmark from "benchmark";
import { Engine } from "../../src/engine/index.js";
import { OpWriter } from "../../test/helpers/ops.js";
import { writeResults, median, round } from "../lib/results.js";
import { TsPipeline } from "./ts-pipeline.js";
import * as w from "./workload.js";

function loadWasm(): Engine {
  const e = new Engine({ maxBatch: w.BATCH, conntrackCapacity: 131072, maxServices: 16384, maxBackends: 32768, underlayIp: "10.99.0.1" });
  const ops = new OpWriter().clear().route("10.244.0.0", 16, 0);
  for (let s = 0; s < w.SERVICES; s++) {
    ops.service({ vip: w.vipOf(s), port: 80, proto: "tcp", id: s, backends: [{ ip: w.backendOf(s, 0), port: 8080 }, { ip: w.backendOf(s, 1), port: 8080 }] });
  }
  const r = e.commitOps(ops.bytes());
  if (r !== 0) throw new Error(`commit failed: ${r}`);
  return e;
}

function loadTs(): TsPipeline {
  const t = new TsPipeline();
  t.addRoute16(w.ipNum("10.244.0.0"));
  for (let s = 0; s < w.SERVICES; s++) {
    t.addService(w.ipNum(w.vipOf(s)), 80, 6, [{ ip: w.ipNum(w.backendOf(s, 0)), port: 8080 }, { ip: w.ipNum(w.backendOf(s, 1)), port: 8080 }]);
  }
  return t;
}

/** A runner: restore one batch image and its slots, process it. */
interface Runner { batch(img: Uint8Array, now: number): number; flush(): void; flows(): number }

function wasmRunner(e: Engine): Runner {
  const base = e.bufferBase, slots = e.slots, slotImg = w.slotImage(base);
  // The memory grows with the flow table (a grow detaches the buffer): take it again when it did.
  let mem = new Uint8Array(e.memory);
  return {
    batch(img, now) {
      if (mem.byteLength === 0) mem = new Uint8Array(e.memory);
      mem.set(img, base); mem.set(slotImg, slots); return e.process(w.BATCH, now);
    },
    flush() { e.exports.ctFlush(); },
    flows() { return e.exports.ctCount(); },
  };
}

function tsRunner(t: TsPipeline): Runner {
  const buf = new ArrayBuffer(w.BATCH * w.PKT_STRIDE + w.BATCH * 32 + 64);
  const base = 0, slots = w.BATCH * w.PKT_STRIDE, slotImg = w.slotImage(base);
  const mem = new Uint8Array(buf), view = new DataView(buf);
  return {
    batch(img, now) { mem.set(img, base); mem.set(slotImg, slots); return t.process(view, slots, w.BATCH, now); },
    flush() { t.clearFlows(); },
    flows() { return t.flowCount() / 2; },
  };
}

/** Creates all FLOWS flows; returns packets per second of that pass. */
function newFlowPass(r: Runner, images: Uint8Array[]): number {
  r.flush();
  const t0 = process.hrtime.bigint();
  let n = 0;
  for (const img of images) { r.batch(img, 1000); n += w.BATCH; }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return n / s;
}

function hitsPerSecond(name: string, r: Runner, images: Uint8Array[], quick: boolean): Promise<number> {
  return new Promise((resolve) => {
    let k = 0;
    const suite = new Benchmark.Suite();
    suite.add(name, () => { r.batch(images[k++ % images.length]!, 1001); }, { maxTime: quick ? 2 : 5, minSamples: 20 });
    suite.on("cycle", (ev: Benchmark.Event) => console.log(`  ${String(ev.target)} (x${w.BATCH} packets)`));
    suite.on("complete", function (this: Benchmark.Suite) { resolve((this as unknown as Benchmark[])[0]!.hz * w.BATCH); });
    suite.run({ async: false });
  });
}

export async function run(quick: boolean): Promise<Record<string, number>> {
  const e = loadWasm(), t = loadTs();
  const wasm = wasmRunner(e), ts = tsRunner(t);
  const synImages = w.batchImages(Math.ceil(w.FLOWS / w.BATCH), true, 1);
  const rounds = quick ? 3 : 5;
  const wasmNew: number[] = [], tsNew: number[] = [];
  for (let i = 0; i < rounds; i++) {    // alternate so both see the same machine noise
    wasmNew.push(newFlowPass(wasm, synImages));
    tsNew.push(newFlowPass(ts, synImages));
  }
  if (wasm.flows() !== w.FLOWS) throw new Error(`wasm tracks ${wasm.flows()} flows, expected ${w.FLOWS}`);
  if (ts.flows() !== w.FLOWS) throw new Error(`ts tracks ${ts.flows()} flows, expected ${w.FLOWS}`);
  const hitImages = w.batchImages(64, false, 7);
  // check the hit path really hits: every packet of a hit batch is DNATed (no new flow appears)
  const before = e.counters().named.new_flows;
  wasm.batch(hitImages[0]!, 1001);
  if (e.counters().named.new_flows !== before) throw new Error("hit batch created flows: workload is wrong");
  const burstImages = w.batchImages(64, false, 9, 0, 16);
  const wasmHit: number[] = [], tsHit: number[] = [], wasmBurst: number[] = [], tsBurst: number[] = [];
  for (let i = 0; i < (quick ? 1 : 3); i++) {
    wasmHit.push(await hitsPerSecond("wasm established hits", wasm, hitImages, quick));
    tsHit.push(await hitsPerSecond("ts established hits", ts, hitImages, quick));
    wasmBurst.push(await hitsPerSecond("wasm hits, bursts of 16", wasm, burstImages, quick));
    tsBurst.push(await hitsPerSecond("ts hits, bursts of 16", ts, burstImages, quick));
  }
  const m = (xs: number[]) => round(median(xs) / 1e6, 3);
  const res = {
    wasm_mpps: m(wasmHit),
    ts_mpps: m(tsHit),
    wasm_new_flow_mpps: m(wasmNew),
    ts_new_flow_mpps: m(tsNew),
    wasm_burst16_mpps: m(wasmBurst),
    ts_burst16_mpps: m(tsBurst),
    wasm_vs_ts_ratio: round(median(wasmHit) / median(tsHit), 2),
    wasm_vs_ts_burst16_ratio: round(median(wasmBurst) / median(tsBurst), 2),
    wasm_vs_ts_new_flow_ratio: round(median(wasmNew) / median(tsNew), 2),
    services: w.SERVICES,
    flows: w.FLOWS,
    packet_bytes: w.PKT_LEN,
    batch_packets: w.BATCH,
  };
  writeResults("core", res);
  return res;
}
