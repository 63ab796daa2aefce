// `scripts/demo.sh --offline`: the real wasm core loaded with the embedded default config (through
// the config → model → ops path the daemon uses), fed synthetic pod traffic in batches, with a live
// summary once a second. It builds no namespaces and sends nothing anywhere, so it runs without
// root or /dev/net/tun: a look at the core alone.
import { Engine, Verdict } from "../engine/index.js";
import { encodeModel } from "../engine/ops.js";
import { defaultConfig } from "../config/index.js";
import { buildModel, type ServiceEntry } from "../model/index.js";

const TCP_SYN = 2, TCP_ACK = 16;

function csum(b: Uint8Array, off: number, len: number, init = 0): number {
  let s = init;
  for (let i = 0; i < len; i += 2) s += (b[off + i]! << 8) | (i + 1 < len ? b[off + i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Writes an IPv4 TCP/UDP packet of 64 bytes at `at` in mem; returns its length. */
function writePacket(mem: Uint8Array, at: number, src: number, dst: number, proto: number, sport: number, dport: number, flags: number): number {
  const len = 64, d = new DataView(mem.buffer, at, len);
  mem.fill(0, at, at + len);
  d.setUint8(0, 0x45); d.setUint16(2, len); d.setUint8(8, 64); d.setUint8(9, proto);
  d.setUint32(12, src); d.setUint32(16, dst);
  d.setUint16(10, csum(mem, at, 20));
  d.setUint16(20, sport); d.setUint16(22, dport);
  const l4 = len - 20;
  if (proto === 6) { d.setUint8(32, 5 << 4); d.setUint8(33, flags); d.setUint16(34, 65535); }
  else d.setUint16(24, l4);
  const pseudo = ((src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + l4);
  d.setUint16(proto === 6 ? 36 : 26, csum(mem, at + 20, l4, pseudo));
  return len;
}

const ip = (s: string) => s.split(".").reduce((a, x) => a * 256 + Number(x), 0) >>> 0;

export async function runOfflineDemo(seconds: number): Promise<void> {
  const config = defaultConfig();
  const model = buildModel(config);
  const engine = new Engine({ maxBatch: 256, underlayIp: config.node.underlayIP, serviceCidr4: config.serviceCIDR, clusterCidr4: config.clusterCIDR });
  const mem = new Uint8Array(engine.memory);
  const n = encodeModel(model, mem, engine.stage);
  const r = engine.exports.commit(n);
  if (r !== 0) throw new Error(`the embedded config did not load into the core (commit ${r})`);
  const entries = [...model.services.values()].filter((e) => e.addr !== "::" && e.addr !== "0.0.0.0");
  const byId = new Map<number, ServiceEntry>([...model.services.values()].map((e) => [e.id, e]));
  console.log(`wasp demo (offline): the wasm core with the embedded config: ${model.services.size} service entries, ${model.routes.size} routes`);
  console.log("Offline: synthetic pod traffic fed to the core in-process; no namespaces, no daemon (drop --offline for the real node).\n");
  const hits = new Map<string, number>();
  let sport = 20000, total = 0, last = engine.counters();
  const pods = [ip("10.244.1.20"), ip("10.244.1.21"), ip("10.244.1.22")];
  const deadline = Date.now() + seconds * 1000;
  let tick = Date.now() + 1000;
  while (Date.now() < deadline) {
    for (let i = 0; i < 256; i++) {
      const e = entries[i % entries.length]!, pod = pods[i % pods.length]!;
      const proto = e.protocol === "UDP" ? 17 : 6;
      const p = sport = sport >= 60000 ? 20000 : sport + 1;
      const stale = i % 16 === 0;   // a few packets to a service port that does not exist: rejected
      const len = writePacket(mem, engine.packetAddr(i), pod, ip(e.addr), proto, p, stale ? 9 : e.port, i % 4 === 0 ? TCP_SYN : TCP_ACK);
      engine.setSlot(i, len);
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
