// Classic libpcap files (https://www.tcpdump.org/manpages/pcap-savefile.5.html): read any byte order
// and either timestamp resolution; write little-endian, microseconds.
import { CliError, EXIT } from "./client.js";

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

export interface PcapRecord { sec: number; usec: number; data: Uint8Array }
export interface Pcap { linktype: number; records: PcapRecord[] }

export function readPcap(bytes: Uint8Array, name: string): Pcap {
  if (bytes.length < 24) throw new CliError(`${name} is not a pcap file: ${bytes.length} bytes, a pcap header is 24`, EXIT.FAILED);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magicLe = v.getUint32(0, true);
  let le: boolean, nano: boolean;
  if (magicLe === 0xa1b2c3d4) { le = true; nano = false; }
  else if (magicLe === 0xa1b23c4d) { le = true; nano = true; }
  else if (magicLe === 0xd4c3b2a1) { le = false; nano = false; }
  else if (magicLe === 0x4d3cb2a1) { le = false; nano = true; }
  else if (magicLe === 0x0a0d0d0a) throw new CliError(`${name} is pcapng; convert it: tshark -F pcap -r ${name} -w OUT.pcap (or capture with tcpdump -w, which writes pcap)`, EXIT.FAILED);
  else throw new CliError(`${name} is not a pcap file (magic 0x${magicLe.toString(16)})`, EXIT.FAILED);
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

/** The IP packet in a record of `linktype`, or undefined when the record carries something else. */
export function ipPayload(linktype: number, d: Uint8Array): Uint8Array | undefined {
  let o: number, ethertype = -1;
  switch (linktype) {
    case LINKTYPE_RAW: case 12: case 14: case LINKTYPE_IPV4: case LINKTYPE_IPV6: o = 0; break;
    case LINKTYPE_ETHERNET: o = 14; ethertype = d.length >= 14 ? (d[12]! << 8) | d[13]! : -1;
      if (ethertype === 0x8100 && d.length >= 18) { ethertype = (d[16]! << 8) | d[17]!; o = 18; }
      break;
    case LINKTYPE_LINUX_SLL: o = 16; ethertype = d.length >= 16 ? (d[14]! << 8) | d[15]! : -1; break;
    case LINKTYPE_LINUX_SLL2: o = 20; ethertype = d.length >= 20 ? (d[0]! << 8) | d[1]! : -1; break;
    default:
      throw new CliError(`the capture's link type ${linktype} is not one wasp replays; capture on wasp0 or an interface (Ethernet, raw IP, Linux cooked)`, EXIT.FAILED);
  }
  if (ethertype !== -1 && ethertype !== 0x0800 && ethertype !== 0x86dd) return undefined;
  if (d.length <= o) return undefined;
  const ver = d[o]! >> 4;
  return ver === 4 || ver === 6 ? d.subarray(o) : undefined;
}
