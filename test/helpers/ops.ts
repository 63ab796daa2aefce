// Control ops written straight from the layout documented in assembly/abi.ts (independent of
// src/engine/ops.ts, so tests of the core do not lean on the host's encoder).

/** 16 bytes of an address, IPv4 as ::ffff:a.b.c.d (RFC 4291 §2.5.5.2): the tests' own encoder. */
function addr16(text: string): Uint8Array {
  const out = new Uint8Array(16);
  if (!text.includes(":")) {
    out.set([0xff, 0xff, ...text.split(".").map(Number)], 10);
    return out;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const words = (s: string | undefined) => (s ? s.split(":").map((w) => parseInt(w, 16)) : []);
  const h = words(head), t = words(tail);
  [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t].forEach((w, i) => { out[2 * i] = w >> 8; out[2 * i + 1] = w & 255; });
  return out;
}

export interface TestBackend { ip: string; port: number }
export interface TestService {
  vip: string; port: number; proto: "tcp" | "udp" | "sctp" | 0; kind?: number; id: number; select?: number; flags?: number;
  affinitySec?: number; maglevSize?: number; backends: TestBackend[]; eligible?: number;
  /** Source ranges, `10.0.0.0/8` or `fd00::/64`: new flows only from inside them. */
  ranges?: string[];
}

const PROTO = { tcp: 6, udp: 17, sctp: 132 } as const;

export class OpWriter {
  private chunks: Uint8Array[] = [];
  bytes(): Uint8Array {
    const n = this.chunks.reduce((a, c) => a + c.length, 0), out = new Uint8Array(n);
    let o = 0; for (const c of this.chunks) { out.set(c, o); o += c.length; }
    return out;
  }
  private op(code: number, size: number): { b: Uint8Array; d: DataView } {
    const b = new Uint8Array(size), d = new DataView(b.buffer);
    b[0] = code; d.setUint32(4, size, true);
    this.chunks.push(b);
    return { b, d };
  }
  clear(): this { this.op(7, 8); return this; }
  service(s: TestService): this {
    const n = s.backends.length, ranges = s.ranges ?? [], { b, d } = this.op(1, 52 + n * 20 + ranges.length * 20);
    // "any": the IPv4 NodePort key ::ffff:0.0.0.0; "any6": the IPv6 one, ::.
    b.set(s.vip === "any" ? addr16("0.0.0.0") : s.vip === "any6" ? new Uint8Array(16) : addr16(s.vip), 8);
    d.setUint16(24, s.port); b[26] = s.proto === 0 ? 0 : PROTO[s.proto]; b[27] = s.kind ?? 0;
    d.setUint32(28, s.id, true); b[32] = s.select ?? 0; b[33] = s.flags ?? 0; d.setUint16(34, ranges.length, true);
    d.setUint32(36, s.affinitySec ?? 0, true); d.setUint32(40, s.maglevSize ?? 0, true);
    d.setUint32(44, n, true); d.setUint32(48, s.eligible ?? n, true);
    s.backends.forEach((be, i) => { b.set(addr16(be.ip), 52 + i * 20); d.setUint16(52 + i * 20 + 16, be.port); d.setUint16(52 + i * 20 + 18, 1); });
    ranges.forEach((r, i) => {
      const [ip, len] = r.split("/") as [string, string], at = 52 + (n + i) * 20;
      b.set(addr16(ip), at); b[at + 16] = ip.includes(":") ? Number(len) : Number(len) + 96;
    });
    return this;
  }
  deleteService(vip: string, port: number, proto: "tcp" | "udp" | "sctp"): this {
    const { b, d } = this.op(2, 28);
    b.set(addr16(vip), 8); d.setUint16(24, port); b[26] = PROTO[proto];
    return this;
  }
  route(prefix: string, len: number, kind: 0 | 1, underlay = 0, mac = [2, 0, 0, 0, 0, 9], nodeId = 0): this {
    const { b, d } = this.op(3, 40);
    b.set(addr16(prefix), 8); b[24] = prefix.includes(":") ? len : len + 96; b[25] = kind;
    d.setUint16(26, nodeId, true); d.setUint32(28, underlay >>> 0, true); b.set(mac, 32);
    return this;
  }
  deleteRoute(prefix: string, len: number): this {
    const { b } = this.op(4, 28);
    b.set(addr16(prefix), 8); b[24] = prefix.includes(":") ? len : len + 96;
    return this;
  }
  localAddr(ip: string): this { const { b } = this.op(5, 24); b.set(addr16(ip), 8); return this; }
}
