// npm run bench -- fuzz: at least 10,000,000 random and mutated packets through the batch API.
// A trap is any exception out of process(); an invariant violation is checkInvariants() != 0 or a
// slot left without a verdict in 1..4. Both must stay 0. --quick runs 1,000,000.
import { Engine, SlotFlag, SLOT_SIZE, VNET_HDR_LEN } from "../../src/engine/index.js";
import { OpWriter } from "../../test/helpers/ops.js";
import { packet, TCP } from "../../test/helpers/packets.js";
import { writeResults, round } from "../lib/results.js";

const BATCH = 256;

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
}

/** Valid packets of every kind the core handles: the seeds the mutations start from. */
function seeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  const pl = (n: number) => new Uint8Array(n).fill(0x61);
  for (const [src, dst] of [["10.244.1.5", "10.96.0.10"], ["10.244.1.10", "10.244.1.5"], ["10.244.1.5", "10.244.2.9"],
    ["192.0.2.7", "10.99.0.1"], ["10.244.1.5", "10.96.0.99"], ["10.244.1.5", "8.8.8.8"]] as const) {
    out.push(packet({ src, dst }, { proto: "tcp", sport: 40000, dport: 80, flags: TCP.SYN }));
    out.push(packet({ src, dst, df: true }, { proto: "tcp", sport: 40001, dport: 80, flags: TCP.ACK, payload: pl(1400) }));
    out.push(packet({ src, dst }, { proto: "udp", sport: 5353, dport: 53, payload: pl(40) }));
    out.push(packet({ src, dst, ttl: 1 }, { proto: "udp", sport: 5353, dport: 53 }));
    out.push(packet({ src, dst, mf: true, id: 77 }, { proto: "udp", sport: 5353, dport: 53, payload: pl(64) }));
    out.push(packet({ src, dst }, { proto: "icmp", type: 8, rest: 0x00420001 }));
    out.push(packet({ src, dst, options: [1, 1, 1, 0] }, { proto: "tcp", sport: 1, dport: 80 }));
  }
  // an ICMP error quoting a DNATed packet
  const quoted = packet({ src: "10.244.1.5", dst: "10.244.1.10" }, { proto: "tcp", sport: 40000, dport: 8080 });
  out.push(packet({ src: "10.244.1.10", dst: "10.244.1.5" }, { proto: "icmp", type: 3, code: 4, rest: 1400, payload: quoted.subarray(0, 28) }));
  // a TSO packet from a remote pod that crossed the underlay whole, its checksum left partial
  const whole = packet({ src: "10.244.2.9", dst: "10.244.1.5", df: true }, { proto: "tcp", sport: 5201, dport: 40000, flags: TCP.ACK, payload: pl(4000) });
  let sum = 6 + whole.length - 20;
  for (let i = 12; i < 20; i += 2) sum += (whole[i]! << 8) | whole[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  whole[36] = sum >> 8; whole[37] = sum & 255;
  out.push(whole, packet({ src: "10.244.1.5", dst: "10.244.2.9", df: true }, { proto: "tcp", sport: 40000, dport: 5201, flags: TCP.ACK, payload: pl(6000) }));
  for (const [src, dst] of [["fd00::5", "fd00:96::10"], ["fd00::10", "fd00::5"]] as const) {
    out.push(packet({ src, dst }, { proto: "tcp", sport: 40000, dport: 80 }));
    out.push(packet({ src, dst }, { proto: "udp", sport: 40000, dport: 53 }));
    out.push(packet({ src, dst }, { proto: "icmp", type: 128 }));
  }
  return out;
}

function vxlanOf(inner: Uint8Array, vni: number): Uint8Array {
  const b = new Uint8Array(8 + 14 + inner.length);
  b[0] = 0x08; b[4] = vni >> 16; b[5] = (vni >> 8) & 255; b[6] = vni & 255;
  b[8 + 12] = inner[0]! >> 4 === 6 ? 0x86 : 0x08; b[8 + 13] = inner[0]! >> 4 === 6 ? 0xdd : 0x00;
  b.set(inner, 22);
  return b;
}

export async function run(quick: boolean, total = quick ? 1_000_000 : 10_000_000): Promise<Record<string, number>> {
  const opts = { maxBatch: BATCH, conntrackCapacity: 4096, maxServices: 256, maxBackends: 1024, underlayIp: "10.99.0.1", serviceCidr6: "fd00:96::/108" };
  // every other batch goes to an engine in offload mode, whose ctnetlink requests get random answers
  const full = new Engine(opts), off = new Engine({ ...opts, offload: true });
  const ops = new OpWriter().clear().route("10.244.1.0", 24, 0).route("10.244.2.0", 24, 1, 0x0a630002).route("fd00::", 64, 0)
    .localAddr("10.99.0.1")
    .service({ vip: "10.96.0.10", port: 80, proto: "tcp", id: 0, backends: [{ ip: "10.244.1.10", port: 8080 }, { ip: "10.244.2.11", port: 8080 }] })
    .service({ vip: "10.96.0.10", port: 53, proto: "udp", id: 1, select: 1, backends: [{ ip: "10.244.1.10", port: 53 }] })
    .service({ vip: "10.96.0.10", port: 0, proto: 0, id: 2, backends: [] })
    .service({ vip: "any", port: 80, proto: "tcp", id: 3, flags: 5, backends: [{ ip: "10.244.1.5", port: 8080 }] })
    .service({ vip: "10.96.0.11", port: 80, proto: "tcp", id: 4, backends: [] })
    .service({ vip: "fd00:96::10", port: 80, proto: "tcp", id: 5, backends: [{ ip: "fd00::10", port: 8080 }] });
  for (const x of [full, off]) if (x.commitOps(ops.bytes()) !== 0) throw new Error("fuzz tables did not load");
  const base = seeds();
  const r = rng(quick ? 7 : 11);
  let traps = 0, violations = 0, sent = 0, batches = 0, offloadRequests = 0;
  const t0 = Date.now();
  while (sent < total) {
    const e = batches % 2 ? off : full;
    const mem = new Uint8Array(e.memory), view = new DataView(e.memory);
    for (let i = 0; i < BATCH; i++) {
      const kind = r() % 100;
      let pkt: Uint8Array, flags = 0, peer = 0;
      if (kind < 5) {                               // pure noise
        pkt = new Uint8Array(r() % 200);
        for (let k = 0; k < pkt.length; k++) pkt[k] = r() & 255;
      } else {
        pkt = base[r() % base.length]!.slice();
        const m = r() % 8;
        if (m === 0) pkt = pkt.subarray(0, r() % (pkt.length + 1));            // truncated
        else if (m === 1) { for (let k = r() % 6; k >= 0; k--) pkt[r() % pkt.length] = r() & 255; }   // byte noise
        else if (m === 2) { pkt[0] = (pkt[0]! & 0xf0) | (r() & 15); }        // any IHL / traffic class
        else if (m === 3 && pkt.length > 4) { pkt[2] = r() & 255; pkt[3] = r() & 255; }   // total / payload length
        else if (m === 4) { pkt[r() % pkt.length]! ^= 1 << (r() % 8); }      // one bit
        else if (pkt.length > 24) { pkt[20] = r() & 255; pkt[21] = r() & 255; }  // a new client port: new flows, eviction
      }
      const o = r() % 10;
      if (o === 0) { pkt = vxlanOf(pkt, r() % 4 === 0 ? r() & 0xffffff : 1); flags |= SlotFlag.FROM_OVERLAY; peer = r() % 2 ? 0x0a630002 : r(); }
      else if (o === 1 && pkt.length) {             // behind a virtio_net_hdr with random offload fields
        const v = new Uint8Array(VNET_HDR_LEN + pkt.length);
        for (let k = 0; k < VNET_HDR_LEN; k++) v[k] = r() % 3 === 0 ? r() & 255 : 0;
        // or a TCPV4 GSO header as the kernel writes it, its gso_size anything up to 2,000
        if (r() % 2) v.set([1, r() % 8 ? 1 : 0x81, 40, 0, r() % 2000 & 255, (r() % 2000) >> 8, 20, 0, 16, 0]);
        v.set(pkt, VNET_HDR_LEN); pkt = v; flags |= SlotFlag.VNET;
      } else if (o === 2) flags |= SlotFlag.ETHERNET;
      if (r() % 50 === 0) flags |= SlotFlag.TRACE;
      e.putPacket(i, pkt, flags, peer);
      if (r() % 200 === 0) {                        // a host bug: slot fields pointing anywhere
        const s = e.slots + i * SLOT_SIZE;
        view.setUint32(s + [0, 4, 16, 20][r() % 4]!, r(), true);
      }
    }
    // the overlay's offloads on and off: TSO packets sent whole through a tunnel TAP, whole ones passed on
    if (batches % 1024 < 2) { const on = (batches >> 10) % 2 === 1; e.setTunnelOffloads(on ? "02:11:22:33:44:55" : undefined, on); }
    const count = r() % 100 === 0 ? r() : BATCH;    // huge counts are clamped, never trusted
    try {
      e.process(count, 1000 + (batches >> 6));
      const req = e.offloadRequests();
      if (req.count) {
        // the kernel's answers as they come: acked, already gone (ENOENT), a clash (EEXIST), a full table (ENOMEM)
        const answers = e.offloadResults(req.count);
        for (let k = 0; k < answers.length; k++) answers[k] = [0, 0, 0, 2, 17, 12][r() % 6]!;
        offloadRequests += req.count;
        e.finishOffload();
      }
    } catch {
      traps++;
    }
    for (let i = 0; i < BATCH; i++) {
      const v = mem[e.slots + i * SLOT_SIZE + 10]!;
      if (v < 1 || v > 4) violations++;
    }
    sent += BATCH;
    batches++;
    if (batches % 512 < 2) {
      if (e.checkInvariants() !== 0) violations++;
      e.sweep(1000 + (batches >> 6), 1000);
    }
    if (batches % 2048 < 2) {                       // reload in the middle of traffic
      if (e.commitOps(ops.bytes()) !== 0) violations++;
    }
  }
  for (const x of [full, off]) if (x.checkInvariants() !== 0) violations++;
  const secs = (Date.now() - t0) / 1000;
  // what the packets became, to show the mutations reach every stage and not only the parser
  const c = full.counters(), co = off.counters();
  const res: Record<string, number> = { packets: sent, traps, invariant_violations: violations, seconds: round(secs, 1) };
  for (const [k, v] of Object.entries(c.verdicts)) if (k !== "none") res[`verdict_${k}`] = v + (co.verdicts[k] ?? 0);
  for (const k of ["new_flows", "replies_made", "icmp_translated", "frag_tracked", "ct_evicted", "stale_udp_flushed", "tunnel_gso_sent", "tunnel_gso_received"] as const) res[k] = c.named[k] + co.named[k];
  res.drop_reasons_seen = Object.entries(c.drops).filter(([k, v]) => v + (co.drops[k] ?? 0) > 0).length;
  res.offload_requests = offloadRequests;
  res.offloaded = co.named.offloaded;
  res.offload_failed = co.named.offload_failed;
  res.offload_resent = co.named.offload_resent;
  writeResults("fuzz", res);
  return res;
}
