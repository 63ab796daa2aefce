// Classic libpcap files (https://www.tcpdump.org/manpages/pcap-savefile.5.html) from raw packets,
// so tshark can decode what the core wrote.
import { writeFileSync } from "node:fs";

/** LINKTYPE_RAW: each record starts with an IPv4 or IPv6 header. */
export const LINKTYPE_RAW = 101;
/** LINKTYPE_ETHERNET: each record is an Ethernet II frame. */
export const LINKTYPE_ETHERNET = 1;
/** LINKTYPE_NETLINK: each record is netlink messages after a 16-byte cooked header (as nlmon captures). */
export const LINKTYPE_NETLINK = 253;
/** The netlink family numbers of linux/netlink.h the tests capture. */
export const NETLINK_NETFILTER = 12;

/** A LINKTYPE_NETLINK record: the cooked header (pkttype, ARPHRD_NETLINK 824, family) then the messages. */
export function netlinkRecord(messages: Uint8Array, family: number): Uint8Array {
  const r = new Uint8Array(16 + messages.length), v = new DataView(r.buffer);
  v.setUint16(0, 4); v.setUint16(2, 824); v.setUint16(14, family);
  r.set(messages, 16);
  return r;
}

/** The bytes of a pcap file (microsecond timestamps, little-endian) holding `packets`. */
export function pcapBytes(packets: readonly Uint8Array[], linktype: number): Uint8Array {
  const size = 24 + packets.reduce((a, p) => a + 16 + p.length, 0);
  const out = new Uint8Array(size), d = new DataView(out.buffer);
  d.setUint32(0, 0xa1b2c3d4, true);   // magic: microsecond resolution
  d.setUint16(4, 2, true); d.setUint16(6, 4, true);
  d.setInt32(8, 0, true); d.setUint32(12, 0, true);
  d.setUint32(16, 262144, true);      // snaplen
  d.setUint32(20, linktype, true);
  let o = 24;
  packets.forEach((p, i) => {
    d.setUint32(o, 1_700_000_000 + i, true); d.setUint32(o + 4, 0, true);
    d.setUint32(o + 8, p.length, true); d.setUint32(o + 12, p.length, true);
    out.set(p, o + 16);
    o += 16 + p.length;
  });
  return out;
}

export function writePcap(path: string, packets: readonly Uint8Array[], linktype: number): void {
  writeFileSync(path, pcapBytes(packets, linktype));
}
