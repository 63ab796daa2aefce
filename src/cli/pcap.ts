// Captures for `wasp replay`: classic libpcap files (https://www.tcpdump.org/manpages/pcap-savefile.5.html,
// any byte order, µs or ns) and pcapng (pcapng.ts), read into one list of records, each with its
// interface and link type; and the link layers wasp replays: raw IP, Ethernet, Linux cooked v1 and
// v2 (`tcpdump -i any`; their packet type gives the direction), and LINKTYPE_USER0 carrying a
// virtio_net_hdr before each frame (what a TUN or TAP with IFF_VNET_HDR reads: GSO super-packets).
import { CliError, EXIT } from "./client.js";
import { PCAPNG_MAGIC, readPcapng } from "./pcapng.js";

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
/** A link type for private use; wasp reads it as a virtio_net_hdr, then the frame (--vnet-hdr-len). */
export const LINKTYPE_USER0 = 147;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

export interface PcapRecord { sec: number; usec: number; data: Uint8Array }
export interface Pcap { linktype: number; records: PcapRecord[] }

export interface CaptureInterface { id: number; linktype: number; name?: string }
export interface CaptureRecord extends PcapRecord {
  /** Index into the capture's interfaces (pcapng: tshark's frame.interface_id; classic pcap: 0). */
  iface: number;
  linktype: number;
  /** pcapng epb_flags: "in" the interface received it, "out" it was sent through it. */
  direction?: "in" | "out";
  comment?: string;
}
export interface Capture { format: "pcap" | "pcapng"; interfaces: CaptureInterface[]; records: CaptureRecord[] }

export function readPcap(bytes: Uint8Array, name: string): Pcap {
  if (bytes.length < 24) throw new CliError(`${name} is not a pcap file: ${bytes.length} bytes, a pcap header is 24`, EXIT.FAILED);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magicLe = v.getUint32(0, true);
  let le: boolean, nano: boolean;
  if (magicLe === 0xa1b2c3d4) { le = true; nano = false; }
  else if (magicLe === 0xa1b23c4d) { le = true; nano = true; }
  else if (magicLe === 0xd4c3b2a1) { le = false; nano = false; }
  else if (magicLe === 0x4d3cb2a1) { le = false; nano = true; }
  else throw new CliError(`${name} is neither a pcap nor a pcapng file (magic 0x${magicLe.toString(16)})`, EXIT.FAILED);
  const linktype = v.getUint32(20, le) & 0x0fffffff;
  const records: PcapRecord[] = [];
  let o = 24;
  while (o + 16 <= bytes.length) {
    const sec = v.getUint32(o, le), frac = v.getUint32(o + 4, le), incl = v.getUint32(o + 8, le), orig = v.getUint32(o + 12, le);
    if (o + 16 + incl > bytes.length) throw new CliError(`${name}: record ${records.length + 1} is cut short (${incl} bytes announced at offset ${o}); the capture was not finished`, EXIT.FAILED);
    if (incl < orig) throw new CliError(`${name}: record ${records.length + 1} was truncated by the capture's snaplen (${incl} of ${orig} bytes); capture with tcpdump -s 0`, EXIT.FAILED);
    records.push({ sec, usec: nano ? Math.floor(frac / 1000) : frac, data: bytes.subarray(o + 16, o + 16 + incl) });
    o += 16 + incl;
  }
  return { linktype, records };
}

/** A classic pcap or a pcapng file, told apart by its first four bytes. */
export function readCapture(bytes: Uint8Array, name: string): Capture {
  if (bytes.length >= 4 && new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true) === PCAPNG_MAGIC) {
    return { format: "pcapng", ...readPcapng(bytes, name) };
  }
  const p = readPcap(bytes, name);
  return { format: "pcap", interfaces: [{ id: 0, linktype: p.linktype }], records: p.records.map((r) => ({ ...r, iface: 0, linktype: p.linktype })) };
}

export function pcapBytes(records: readonly PcapRecord[], linktype: number): Uint8Array {
  const size = 24 + records.reduce((a, r) => a + 16 + r.data.length, 0);
  const out = new Uint8Array(size), d = new DataView(out.buffer);
  d.setUint32(0, 0xa1b2c3d4, true);
  d.setUint16(4, 2, true); d.setUint16(6, 4, true);
  d.setUint32(16, 262144, true);
  d.setUint32(20, linktype, true);
  let o = 24;
  for (const r of records) {
    d.setUint32(o, r.sec, true); d.setUint32(o + 4, r.usec, true);
    d.setUint32(o + 8, r.data.length, true); d.setUint32(o + 12, r.data.length, true);
    out.set(r.data, o + 16);
    o += 16 + r.data.length;
  }
  return out;
}

/** What a record's link layer holds for the engine. */
export interface LinkPayload {
  /** The IP packet (undefined: ARP, another ethertype, not IP at all). */
  ip?: Uint8Array;
  /** The whole Ethernet frame, when the record has one (a TAP's frames go in as they are). */
  frame?: Uint8Array;
  /** The virtio_net_hdr before the frame (LINKTYPE_USER0), its first 10 bytes: struct virtio_net_hdr. */
  vnet?: Uint8Array;
  /** Linux cooked captures: "out" the host sent it (PACKET_OUTGOING), "in" it received it. */
  direction?: "in" | "out";
  /** Linux cooked v2: the interface index it was captured on. */
  ifindex?: number;
}

const PACKET_OUTGOING = 4;

/** Does `p` start with an IP header whose length field says it is exactly p.length bytes? (A TSO
 *  super-packet's IPv4 total length is its whole length too, up to 64 KiB.) */
function isWholeIp(p: Uint8Array): boolean {
  if (p.length >= 20 && p[0]! >> 4 === 4) return ((p[2]! << 8) | p[3]!) === p.length;
  if (p.length >= 40 && p[0]! >> 4 === 6) return ((p[4]! << 8) | p[5]!) + 40 === p.length;
  return false;
}

/** The IP packet in an Ethernet frame (one VLAN tag skipped), or undefined. */
function ethernetIp(d: Uint8Array): Uint8Array | undefined {
  if (d.length < 14) return undefined;
  let et = (d[12]! << 8) | d[13]!, o = 14;
  if (et === 0x8100 && d.length >= 18) { et = (d[16]! << 8) | d[17]!; o = 18; }
  return et === 0x0800 || et === 0x86dd ? ipAt(d, o) : undefined;
}

function ipAt(d: Uint8Array, o: number): Uint8Array | undefined {
  if (d.length <= o) return undefined;
  const ver = d[o]! >> 4;
  return ver === 4 || ver === 6 ? d.subarray(o) : undefined;
}

/** The parts of a record of `linktype` the engine takes; throws for a link type wasp cannot replay. */
export function linkPayload(linktype: number, d: Uint8Array, vnetHdrLen = 12): LinkPayload {
  switch (linktype) {
    case LINKTYPE_RAW: case 12: case 14: case LINKTYPE_IPV4: case LINKTYPE_IPV6: {
      const ip = ipAt(d, 0);
      return ip ? { ip } : {};
    }
    case LINKTYPE_ETHERNET: {
      const ip = ethernetIp(d);
      return ip ? { ip, frame: d } : { frame: d };
    }
    case LINKTYPE_LINUX_SLL: {
      if (d.length < 16) return {};
      const et = (d[14]! << 8) | d[15]!, direction = ((d[0]! << 8) | d[1]!) === PACKET_OUTGOING ? "out" as const : "in" as const;
      const ip = et === 0x0800 || et === 0x86dd ? ipAt(d, 16) : undefined;
      return ip ? { ip, direction } : { direction };
    }
    case LINKTYPE_LINUX_SLL2: {
      if (d.length < 20) return {};
      const et = (d[0]! << 8) | d[1]!, direction = d[10] === PACKET_OUTGOING ? "out" as const : "in" as const;
      const ifindex = ((d[4]! << 24) | (d[5]! << 16) | (d[6]! << 8) | d[7]!) >>> 0;
      const ip = et === 0x0800 || et === 0x86dd ? ipAt(d, 20) : undefined;
      return ip ? { ip, direction, ifindex } : { direction, ifindex };
    }
    case LINKTYPE_USER0: {
      if (d.length <= vnetHdrLen) return {};
      const vnet = d.subarray(0, 10), frame = d.subarray(vnetHdrLen);
      // a TUN's frames are IP, a TAP's Ethernet: an IP header whose length matches says which
      if (isWholeIp(frame)) return { ip: frame, vnet };
      const ip = ethernetIp(frame);
      return ip ? { ip, frame, vnet } : { frame, vnet };
    }
    default:
      throw new CliError(`the capture's link type ${linktype} is not one wasp replays; capture on wasp0 or an interface (Ethernet, raw IP, Linux cooked, or LINKTYPE_USER0 with a virtio_net_hdr)`, EXIT.FAILED);
  }
}
