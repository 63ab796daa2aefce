// replay's --filter: the part of tcpdump's filter language (pcap-filter(7)) an operator uses to pick
// packets out of a capture, parsed and matched here rather than compiled by libpcap, so replay needs
// neither tcpdump nor a BPF interpreter. It matches what tcpdump matches on the same packet (the
// tests compare both on one capture), tcpdump's limits included: `port` and the protocol words look
// at an IPv6 packet's first next header only ("does not chase the protocol header chain"), and `port`
// skips IPv4 fragments after the first.
//
//   expr     := and ( ("or" | "||") and )*
//   and      := unary ( ("and" | "&&") unary )*
//   unary    := ("not" | "!") unary | "(" expr ")" | primitive
//   primitive:= [ip|ip6|tcp|udp|sctp] [src|dst|src or dst|src and dst] (host ADDR | net CIDR | port N | portrange N-M)
//             | ip | ip6 | tcp | udp | sctp | icmp | icmp6 | [ip|ip6] proto N|NAME
//             | ADDR | CIDR | N        (after and/or: the previous primitive's words, as tcpdump allows)
import { cidrContains, parseCidr, parseIp, type Cidr, type Ip } from "../model/addr.js";
import { CliError, EXIT } from "./client.js";
import { ipFields, type IpFields } from "./packet-fields.js";

/** True when the packet (an IP packet, or undefined for a record that holds none) is selected. */
export type PacketMatcher = (ip: IpFields | undefined) => boolean;

const PROTO_NUM: Readonly<Record<string, number>> = { icmp: 1, tcp: 6, udp: 17, icmp6: 58, sctp: 132 };

type Dir = "src" | "dst" | "either" | "both";
type Kind = "host" | "net" | "port" | "portrange";
interface Quals { family?: 4 | 6; proto?: number; dir: Dir; kind: Kind }

function usage(expr: string, why: string): CliError {
  return new CliError(`--filter ${JSON.stringify(expr)}: ${why} (tcpdump's syntax: host ADDR, net CIDR, port N, tcp, udp, icmp, not, and, or, parentheses)`, EXIT.USAGE);
}

function tokenize(expr: string): string[] {
  const out: string[] = [];
  const re = /\s*(\(|\)|&&|\|\||!|[^\s()!&|]+)/y;
  for (let at = 0; at < expr.length;) {
    re.lastIndex = at;
    const m = re.exec(expr);
    if (!m) {
      if (expr.slice(at).trim() === "") break;
      throw usage(expr, `cannot read it from ${JSON.stringify(expr.slice(at).trim())}`);
    }
    out.push(m[1]!);
    at = re.lastIndex;
  }
  return out;
}

/** Ports of a packet as tcpdump's `port` sees them: TCP, UDP or SCTP right after the IP header. */
function ports(f: IpFields): { sport: number; dport: number } | undefined {
  if (f.family === 6 && f.firstNext !== f.proto) return undefined;
  if (f.proto !== 6 && f.proto !== 17 && f.proto !== 132) return undefined;
  return f.sport === undefined || f.dport === undefined ? undefined : { sport: f.sport, dport: f.dport };
}

/** The packet's protocol as `tcp`, `proto N` test it: IPv4's protocol field, IPv6's first next header. */
const protoOf = (f: IpFields) => f.firstNext;

function byDir(dir: Dir, s: boolean, d: boolean): boolean {
  return dir === "src" ? s : dir === "dst" ? d : dir === "both" ? s && d : s || d;
}

export function parseFilter(expr: string): PacketMatcher {
  const toks = tokenize(expr);
  let i = 0;
  let last: Quals | undefined;
  const peek = () => toks[i];
  const next = () => toks[i++];
  const isWord = (w: string | undefined, ...ws: string[]) => w !== undefined && ws.includes(w.toLowerCase());

  const orExpr = (): PacketMatcher => {
    let a = andExpr();
    while (isWord(peek(), "or", "||")) { next(); const l = a, r = andExpr(); a = (f) => l(f) || r(f); }
    return a;
  };
  const andExpr = (): PacketMatcher => {
    let a = unary();
    while (isWord(peek(), "and", "&&")) { next(); const l = a, r = unary(); a = (f) => l(f) && r(f); }
    return a;
  };
  const unary = (): PacketMatcher => {
    const t = peek();
    if (t === undefined) throw usage(expr, "it ends where a primitive should follow");
    if (isWord(t, "not", "!")) { next(); const m = unary(); return (f) => !m(f); }
    if (t === "(") {
      next();
      const m = orExpr();
      if (next() !== ")") throw usage(expr, "a '(' is not closed");
      return m;
    }
    return primitive();
  };

  const value = (q: Quals): PacketMatcher => {
    const v = next();
    if (v === undefined) throw usage(expr, `${q.kind} needs a value`);
    last = q;
    switch (q.kind) {
      case "host": {
        const ip = parseIp(v);
        if (!ip) throw usage(expr, `${JSON.stringify(v)} is not an IP address (host names are not looked up)`);
        return hostMatch(q, ip);
      }
      case "net": {
        const c = parseCidr(v) ?? (parseIp(v) ? parseCidr(`${v}/${parseIp(v)!.family === 4 ? 32 : 128}`) : undefined);
        if (!c) throw usage(expr, `${JSON.stringify(v)} is not a network like 10.244.0.0/16`);
        return netMatch(q, c);
      }
      case "port": {
        const n = portNumber(v);
        return portMatch(q, n, n);
      }
      case "portrange": {
        const m = /^(\d+)-(\d+)$/.exec(v);
        if (!m) throw usage(expr, `${JSON.stringify(v)} is not a port range like 30000-32767`);
        return portMatch(q, portNumber(m[1]!), portNumber(m[2]!));
      }
    }
  };
  const portNumber = (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) > 65535) throw usage(expr, `${JSON.stringify(v)} is not a port 0-65535`);
    return Number(v);
  };

  const primitive = (): PacketMatcher => {
    const q: Quals = { dir: "either", kind: "host" };
    let t = peek()!.toLowerCase();
    let sawProto = false;
    if (t === "ip" || t === "ip6") {
      q.family = t === "ip" ? 4 : 6; next(); sawProto = true;
      if (isWord(peek(), "proto")) { next(); return protoMatch(q.family, protoValue()); }
    } else if (t in PROTO_NUM) {
      q.proto = PROTO_NUM[t]!; next(); sawProto = true;
      if (t === "icmp") q.family = 4;
      if (t === "icmp6") q.family = 6;
    } else if (t === "proto") {
      next();
      return protoMatch(undefined, protoValue());
    }
    t = peek()?.toLowerCase() ?? "";
    let sawDir = false;
    if (t === "src" || t === "dst") {
      next(); sawDir = true;
      q.dir = t;
      if (isWord(peek(), "or", "and") && isWord(toks[i + 1], t === "src" ? "dst" : "src")) {
        q.dir = next()!.toLowerCase() === "or" ? "either" : "both"; next();
      }
      t = peek()?.toLowerCase() ?? "";
    }
    if (t === "host" || t === "net" || t === "port" || t === "portrange") {
      next();
      q.kind = t;
      return value(q);
    }
    if (sawDir) return value(q); // `src 10.0.0.1`: host is implied
    if (sawProto) return q.proto !== undefined ? protoMatch(q.family, q.proto) : familyMatch(q.family!);
    // a bare value after and/or repeats the previous primitive's words (`host a or b`)
    if (last && t !== "" && !isWord(t, "and", "or", "&&", "||", ")")) return value(last);
    if (t !== "" && parseIp(t)) return value(q);
    throw usage(expr, `${JSON.stringify(peek() ?? "")} is not a primitive wasp knows`);
  };
  const protoValue = (): number => {
    const v = next()?.replace(/^\\/, "").toLowerCase();
    if (v === undefined) throw usage(expr, "proto needs a number or a name (tcp, udp, icmp, icmp6, sctp)");
    if (v in PROTO_NUM) return PROTO_NUM[v]!;
    if (/^\d+$/.test(v) && Number(v) <= 255) return Number(v);
    throw usage(expr, `${JSON.stringify(v)} is not a protocol number 0-255 or a name (tcp, udp, icmp, icmp6, sctp)`);
  };

  const m = orExpr();
  if (i < toks.length) throw usage(expr, `${JSON.stringify(toks[i])} is left over`);
  return m;
}

const familyMatch = (family: 4 | 6): PacketMatcher => (f) => f !== undefined && f.family === family;

function protoMatch(family: 4 | 6 | undefined, proto: number): PacketMatcher {
  return (f) => f !== undefined && (family === undefined || f.family === family) && protoOf(f) === proto;
}

function restrict(q: Quals, m: (f: IpFields) => boolean): PacketMatcher {
  return (f) => f !== undefined && (q.family === undefined || f.family === q.family) && (q.proto === undefined || protoOf(f) === q.proto) && m(f);
}

const sameIp = (a: Ip, b: Ip) => a.family === b.family && a.bytes.every((x, k) => x === b.bytes[k]);

function hostMatch(q: Quals, ip: Ip): PacketMatcher {
  return restrict(q, (f) => byDir(q.dir, sameIp(f.srcIp, ip), sameIp(f.dstIp, ip)));
}

function netMatch(q: Quals, c: Cidr): PacketMatcher {
  return restrict(q, (f) => byDir(q.dir, cidrContains(c, f.srcIp), cidrContains(c, f.dstIp)));
}

function portMatch(q: Quals, lo: number, hi: number): PacketMatcher {
  return restrict(q, (f) => {
    const p = ports(f);
    return p !== undefined && byDir(q.dir, p.sport >= lo && p.sport <= hi, p.dport >= lo && p.dport <= hi);
  });
}

/** The matcher for a capture record's IP packet (undefined: it holds none). */
export function matchIp(m: PacketMatcher, ip: Uint8Array | undefined): boolean {
  return m(ip ? ipFields(ip) : undefined);
}

/** `--packets 1-100,200,300-`: frame numbers (1-based, as tshark and tcpdump -# count). */
export function parseRange(text: string): (n: number) => boolean {
  const parts = text.split(",").map((p) => p.trim()).filter(Boolean);
  const ranges = parts.map((p) => {
    const m = /^(\d+)?(-)?(\d+)?$/.exec(p);
    if (!m || (!m[1] && !m[3]) || Number(m[1] ?? 1) < 1 || (!m[2] && m[3])) {
      throw new CliError(`--packets ${JSON.stringify(text)}: ${JSON.stringify(p)} is not N, N-M, N- or -M (frame numbers from 1, as tshark counts)`, EXIT.USAGE);
    }
    const lo = Number(m[1] ?? 1), hi = m[2] ? (m[3] ? Number(m[3]) : Infinity) : lo;
    if (hi < lo) throw new CliError(`--packets ${JSON.stringify(text)}: ${JSON.stringify(p)} ends before it starts`, EXIT.USAGE);
    return [lo, hi] as const;
  });
  if (!ranges.length) throw new CliError(`--packets ${JSON.stringify(text)}: give N, N-M, N- or -M`, EXIT.USAGE);
  return (n) => ranges.some(([lo, hi]) => n >= lo && n <= hi);
}
