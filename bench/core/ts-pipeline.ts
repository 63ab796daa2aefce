// The baseline: the same per-packet pipeline (parse, IPv4 header check, conntrack lookup, service
// lookup and backend choice on a miss, DNAT with RFC 1624 checksum updates, TTL, route, verdict)
// written the way a careful TypeScript programmer would: DataView over an ArrayBuffer and Maps
// with numeric keys (hash + collision check), no per-packet strings.
// Only IPv4 TCP/UDP, enough for the benchmark's workload; the wasm core does far more per packet.

interface Flow { src: number; dst: number; sport: number; dport: number; proto: number; bip: number; bport: number; dir: number; last: number }
interface Service { backends: { ip: number; port: number }[] }

const enum V { Tun = 1, Drop = 3, Host = 4 }

function csumReplace32(check: number, from: number, to: number): number {
  let s = (~check & 0xffff) + (~from & 0xffff) + ((~from >>> 16) & 0xffff) + (to & 0xffff) + (to >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
function csumReplace16(check: number, from: number, to: number): number {
  let s = (~check & 0xffff) + (~from & 0xffff) + to;
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
function tupleHash(src: number, dst: number, sport: number, dport: number, proto: number): number {
  let h = Math.imul(src ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ dst ^ (h >>> 13), 0xc2b2ae35);
  h = Math.imul(h ^ ((sport << 16) | dport) ^ (h >>> 16), 0x27d4eb2d);
  return (h ^ proto ^ (h >>> 15)) >>> 0;
}

export class TsPipeline {
  private flows = new Map<number, Flow[]>();
  private services = new Map<number, Service>();
  private routes = new Map<number, number>();   // /16 prefix -> kind
  private rng = 0x12345678;

  addService(vip: number, port: number, proto: number, backends: { ip: number; port: number }[]): void {
    this.services.set(vip * 65536 * 256 + port * 256 + proto, { backends });
  }
  addRoute16(prefix: number): void { this.routes.set(prefix >>> 16, 0); }
  flowCount(): number { let n = 0; for (const l of this.flows.values()) n += l.length; return n; }
  clearFlows(): void { this.flows.clear(); }

  private find(src: number, dst: number, sport: number, dport: number, proto: number): Flow | undefined {
    const l = this.flows.get(tupleHash(src, dst, sport, dport, proto));
    if (!l) return undefined;
    for (const f of l) if (f.src === src && f.dst === dst && f.sport === sport && f.dport === dport && f.proto === proto) return f;
    return undefined;
  }
  private insert(f: Flow): void {
    const h = tupleHash(f.src, f.dst, f.sport, f.dport, f.proto);
    const l = this.flows.get(h);
    if (l) l.push(f); else this.flows.set(h, [f]);
  }

  /** Same slot layout as the core: 32-byte slots, data u32 @0, len u32 @4, verdict u8 @10. */
  process(mem: DataView, slots: number, count: number, now: number): number {
    let kept = 0;
    for (let i = 0; i < count; i++) {
      const s = slots + i * 32;
      const p = mem.getUint32(s, true), len = mem.getUint32(s + 4, true);
      const v = this.one(mem, p, len, now);
      mem.setUint8(s + 10, v);
      if (v !== V.Drop) kept++;
    }
    return kept;
  }

  private one(m: DataView, p: number, len: number, now: number): number {
    if (len < 20 || (m.getUint8(p) >> 4) !== 4) return V.Drop;
    const hl = (m.getUint8(p) & 15) << 2, total = m.getUint16(p + 2);
    if (hl < 20 || total > len || hl > total) return V.Drop;
    let sum = 0;
    for (let i = 0; i < hl; i += 2) sum += m.getUint16(p + i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    if (sum !== 0xffff) return V.Drop;
    const proto = m.getUint8(p + 9);
    if (proto !== 6 && proto !== 17) return this.route(m, p, false);
    const l4 = p + hl;
    if (total - hl < (proto === 6 ? 20 : 8)) return V.Drop;
    const src = m.getUint32(p + 12), dst = m.getUint32(p + 16), sport = m.getUint16(l4), dport = m.getUint16(l4 + 2);
    const csumAt = l4 + (proto === 6 ? 16 : 6);
    let f = this.find(src, dst, sport, dport, proto);
    if (!f) {
      const svc = this.services.get(dst * 65536 * 256 + dport * 256 + proto);
      if (!svc) return this.route(m, p, false);
      this.rng ^= this.rng << 13; this.rng ^= this.rng >>> 17; this.rng ^= this.rng << 5;
      const b = svc.backends[(this.rng >>> 0) % svc.backends.length]!;
      f = { src, dst, sport, dport, proto, bip: b.ip, bport: b.port, dir: 0, last: now };
      this.insert(f);
      this.insert({ src: b.ip, dst: src, sport: b.port, dport: sport, proto, bip: dst, bport: dport, dir: 1, last: now });
    }
    f.last = now;
    if (f.dir === 0) {
      m.setUint32(p + 16, f.bip >>> 0);
      m.setUint16(p + 10, csumReplace32(m.getUint16(p + 10), dst, f.bip));
      m.setUint16(csumAt, csumReplace32(m.getUint16(csumAt), dst, f.bip));
      m.setUint16(l4 + 2, f.bport);
      m.setUint16(csumAt, csumReplace16(m.getUint16(csumAt), dport, f.bport));
    } else {
      m.setUint32(p + 12, f.bip >>> 0);
      m.setUint16(p + 10, csumReplace32(m.getUint16(p + 10), src, f.bip));
      m.setUint16(csumAt, csumReplace32(m.getUint16(csumAt), src, f.bip));
      m.setUint16(l4, f.bport);
      m.setUint16(csumAt, csumReplace16(m.getUint16(csumAt), sport, f.bport));
    }
    return this.route(m, p, true);
  }

  private route(m: DataView, p: number, natted: boolean): number {
    const kind = this.routes.get(m.getUint32(p + 16) >>> 16);
    if (kind === undefined && !natted) return V.Host;
    const ttl = m.getUint8(p + 8);
    if (ttl <= 1) return V.Drop;
    m.setUint8(p + 8, ttl - 1);
    let c = m.getUint16(p + 10) + 0x100;
    c = (c & 0xffff) + (c >>> 16);
    m.setUint16(p + 10, c);
    return V.Tun;
  }
}
