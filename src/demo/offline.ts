// `scripts/demo.sh --offline`: the real wasm core loaded with the embedded default config (through
// the config → model → ops path the daemon uses), fed synthetic pod traffic in batches, with a live
// summary once a second. It builds no namespaces and sends nothing anywhere, so it runs without
// root or /dev/net/tun: a look at the core alone.
import { Engine, Verdict } from "../engine/index.js";
import { defaultConfig } from "../config/index.js";
import { buildModel, type ServiceEntry } from "../model/index.js";
import { craftPacket, TCP_ACK, TCP_SYN } from "../packet/craft.js";

/** 64-byte packets, as the demo always sent (20 + 20 + 24 over TCP). */
const PAYLOAD = new Uint8Array(24);

export async function runOfflineDemo(seconds: number): Promise<void> {
  const config = defaultConfig();
  const model = buildModel(config);
  const engine = new Engine({ maxBatch: 256, underlayIp: config.node.underlayIP, serviceCidr4: config.serviceCIDR, clusterCidr4: config.clusterCIDR });
  engine.loadModel(model);
  const entries = [...model.services.values()].filter((e) => e.addr !== "::" && e.addr !== "0.0.0.0");
  const byId = new Map<number, ServiceEntry>([...model.services.values()].map((e) => [e.id, e]));
  console.log(`wasp demo (offline): the wasm core with the embedded config: ${model.services.size} service entries, ${model.routes.size} routes`);
  console.log("Offline: synthetic pod traffic fed to the core in-process; no namespaces, no daemon (drop --offline for the real node).\n");
  const hits = new Map<string, number>();
  let sport = 20000, total = 0, last = engine.counters();
  const pods = ["10.244.1.20", "10.244.1.21", "10.244.1.22"];
  const deadline = Date.now() + seconds * 1000;
  let tick = Date.now() + 1000;
  while (Date.now() < deadline) {
    for (let i = 0; i < 256; i++) {
      const e = entries[i % entries.length]!, pod = pods[i % pods.length]!;
      const p = sport = sport >= 60000 ? 20000 : sport + 1;
      const stale = i % 16 === 0;   // a few packets to a service port that does not exist: rejected
      engine.putPacket(i, craftPacket({
        src: pod, dst: e.addr, proto: e.protocol === "UDP" ? "udp" : "tcp", sport: p, dport: stale ? 9 : e.port,
        tcpFlags: i % 4 === 0 ? TCP_SYN : TCP_ACK, payload: PAYLOAD,
      }));
    }
    engine.process(256, Math.floor(Date.now() / 1000));
    for (let i = 0; i < 256; i++) {
      const s = engine.slot(i);
      if (s.service && s.verdict !== Verdict.Drop) {
        const e = byId.get(s.service - 1);
        if (e) hits.set(`${e.service} ${e.key}`, (hits.get(`${e.service} ${e.key}`) ?? 0) + 1);
      }
    }
    total += 256;
    if (Date.now() >= tick) {
      tick += 1000;
      const c = engine.counters();
      const pps = c.named.packets_in - last.named.packets_in;
      const drops = Object.entries(c.drops).filter(([, v]) => v > 0).map(([k, v]) => `${k}=${v}`).join(" ") || "none";
      console.log(`${new Date().toISOString().slice(11, 19)}  ${(pps / 1e6).toFixed(2)} Mpps  flows=${c.named.ct_entries}  new=${c.named.new_flows}  ` +
        `tun=${c.verdicts.tun} host=${c.verdicts.host} drop=${c.verdicts.drop}  rejects/drops by reason: ${drops}`);
      last = c;
      await new Promise((res) => setImmediate(res));
    }
  }
  console.log("\nper service entry (packets forwarded):");
  for (const [k, v] of [...hits].sort()) console.log(`  ${k.padEnd(40)} ${v}`);
  console.log(`\n${total} packets through the core; invariants ${engine.checkInvariants() === 0 ? "hold" : "BROKEN"}`);
}
