// The core benchmark's workload: 10,000 ClusterIP services x 2 backends, 100,000 client flows,
// 64-byte TCP packets laid out 256 bytes apart so that one memcpy restores a whole batch.
import { packet, TCP } from "../../test/helpers/packets.js";

export const SERVICES = 10_000;
export const FLOWS = Number(process.env.FLOWS ?? 100_000);
export const BATCH = 256;
export const PKT_STRIDE = 128;
export const PKT_OFFSET = 64;    // headroom in front of each packet (hits need none; rejects need 48)
export const PKT_LEN = 64;

export const vipOf = (s: number) => `10.96.${s >> 8}.${s & 255}`;
export const backendOf = (s: number, k: number) => `10.244.${(s * 2 + k) >> 8 & 255}.${(s * 2 + k) & 255}`;
export const clientOf = (f: number) => `10.245.${(f >> 8) & 255}.${f & 255}`;
export const sportOf = (f: number) => 10_000 + (f >> 16);
export const serviceOf = (f: number) => f % SERVICES;

export function ipNum(s: string): number { return s.split(".").reduce((a, x) => a * 256 + Number(x), 0) >>> 0; }

/** A 64-byte IPv4/TCP packet of flow f (SYN for a new flow, ACK for an established one). */
export function flowPacket(f: number, syn: boolean): Uint8Array {
  return packet({ src: clientOf(f), dst: vipOf(serviceOf(f)), df: true },
    { proto: "tcp", sport: sportOf(f), dport: 80, flags: syn ? TCP.SYN : TCP.ACK, payload: new Uint8Array(PKT_LEN - 40) });
}

/** `batches` batch images of BATCH packets each: consecutive flows (new) or random flows (hits),
 *  `run` consecutive packets per flow (1: uniformly random, the worst case for caches; 16: the
 *  bursts a TCP sender puts on a link, as a TUN read sees them). */
export function batchImages(batches: number, syn: boolean, seed: number, first = 0, run = 1): Uint8Array[] {
  let x = seed >>> 0 || 1;
  const rnd = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  const out: Uint8Array[] = [];
  let f = 0;
  for (let b = 0; b < batches; b++) {
    const img = new Uint8Array(BATCH * PKT_STRIDE);
    for (let i = 0; i < BATCH; i++) {
      if (i % run === 0) f = syn ? (first + b * BATCH + i) % FLOWS : rnd() % FLOWS;
      img.set(flowPacket(f, syn), i * PKT_STRIDE + PKT_OFFSET);
    }
    out.push(img);
  }
  return out;
}

/** Slot array image: slot i points at packet i of a batch image placed at `base`. */
export function slotImage(base: number): Uint8Array {
  const img = new Uint8Array(BATCH * 32), d = new DataView(img.buffer);
  for (let i = 0; i < BATCH; i++) {
    const s = i * 32, start = base + i * PKT_STRIDE;
    d.setUint32(s + 0, start + PKT_OFFSET, true);
    d.setUint32(s + 4, PKT_LEN, true);
    d.setUint32(s + 16, start, true);
    d.setUint32(s + 20, start + PKT_STRIDE, true);
  }
  return img;
}
