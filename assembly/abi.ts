// The contract between the host (src/engine/abi.ts mirrors every number here) and the core.
// test/unit/abi.test.ts compares the two. A retired number stays reserved; it is never reused.

// ╒═══ batch slot, 32 bytes, little-endian; filled by src/engine/batch.ts and native/ ═══╕
//  0 u32 data      address of the packet; a virtio_net_hdr (VNET flag) and free headroom lie before it
//  4 u32 len       packet bytes (a GSO super-packet reaches 64 KiB)
//  8 u16 flags     SlotFlag.*
// 10 u8  verdict   Verdict.*                      ← written by the core
// 11 u8  reason    Drop.* for Drop; for a packet the core answered itself (RST, ICMP error) why
// 12 u32 peer      in: underlay source IPv4 of an overlay packet; out: underlay destination for Overlay
// 16 u32 bufStart  the core writes only inside [bufStart, bufEnd)
// 20 u32 bufEnd
// 24 u32 service   out: service entry id + 1 when the packet matched a service or a NATed flow, else 0
// 28 u32 note      out: Note.* bits saying what the core did (trace, tests)
export const SLOT_SIZE: u32 = 32;
export const SLOT_DATA: u32 = 0;
export const SLOT_LEN: u32 = 4;
export const SLOT_FLAGS: u32 = 8;
export const SLOT_VERDICT: u32 = 10;
export const SLOT_REASON: u32 = 11;
export const SLOT_PEER: u32 = 12;
export const SLOT_BUF_START: u32 = 16;
export const SLOT_BUF_END: u32 = 20;
export const SLOT_SERVICE: u32 = 24;
export const SLOT_NOTE: u32 = 28;

/** Bytes of virtio_net_hdr (struct virtio_net_hdr, no mergeable buffers) before data when VNET is set. */
export const VNET_HDR_LEN: u32 = 10;
/** Free bytes the host leaves before a packet (before its virtio_net_hdr) for encap and replies. */
export const HEADROOM: u32 = 192;
/** Largest packet a slot buffer holds after the headroom: a 64 KiB GSO packet plus its vnet header. */
export const SLOT_PACKET_ROOM: u32 = 65536 + 64;

export namespace SlotFlag {
  /** Arrived on the underlay socket: data points at the VXLAN header, peer holds the sender. */
  export const FROM_OVERLAY: u16 = 1;
  /** A virtio_net_hdr lies at data - VNET_HDR_LEN (TUN opened with IFF_VNET_HDR); kept valid on output. */
  export const VNET: u16 = 2;
  /** Record each stage in the trace buffer (wasp trace). */
  export const TRACE: u16 = 4;
  /** Frame carries an Ethernet header (TAP device). */
  export const ETHERNET: u16 = 8;
}

export const enum Verdict {
  None = 0,
  /** Write to the TUN/TAP device: a local pod, a reverse-NATed reply, an answer the core made. */
  Tun = 1,
  /** Send to the remote node `peer` through the underlay socket (already VXLAN-encapsulated). */
  Overlay = 2,
  Drop = 3,
  /** Not ours: back to the host's routing unchanged (written to the TUN device). */
  Host = 4,
}
export const VERDICT_COUNT: u32 = 5;

export const enum Drop {
  None = 0,
  TooShort = 1,
  BadIpVersion = 2,
  BadIpv4Header = 3,
  BadIpv4Checksum = 4,
  BadIpv6Header = 5,
  BadL4Header = 6,
  TtlExceeded = 7,
  NoBackend = 8,
  NoService = 9,
  FragmentUntracked = 10,
  BadVxlan = 11,
  UnknownVni = 12,
  UnknownPeer = 13,
  SpoofedInnerSource = 14,
  NoRoute = 15,
  TooBig = 16,
  NatPortExhausted = 17,
  BadEthernet = 18,
  BadArp = 19,
  BadSlot = 20,
  Martian = 21,
  BadIcmpError = 22,
  GsoUnsupported = 23,
  NotReady = 24,
  NoLocalBackend = 25,
}
export const DROP_COUNT: u32 = 26;

export namespace Note {
  export const DNAT: u32 = 1;
  export const REVERSE_NAT: u32 = 2;
  export const SNAT: u32 = 4;
  export const NEW_FLOW: u32 = 8;
  export const CT_HIT: u32 = 16;
  export const ENCAP: u32 = 32;
  export const DECAP: u32 = 64;
  export const REPLY_MADE: u32 = 128;
  export const ICMP_ERROR_TRANSLATED: u32 = 256;
  export const TTL_DECREMENTED: u32 = 512;
  export const ARP_ANSWERED: u32 = 1024;
  export const GSO: u32 = 2048;
  export const FRAGMENT: u32 = 4096;
  export const AFFINITY: u32 = 8192;
  /** Overlay: a whole TSO packet, encapsulated once, for the kernel to cut (the host writes
   *  [data, data+len), a virtio_net_hdr_v1_hash_tunnel and an Ethernet frame, to the tunnel TAP). */
  export const TUNNEL_GSO: u32 = 16384;
}

// ╒═══ counters: u64 each, at countersAddr() ═══╕
//  [0, VERDICT_COUNT)                     packets by verdict
//  [C_DROP_BASE, +DROP_COUNT)             packets by Drop reason (drops and answered rejects)
//  then the named counters below
export const C_DROP_BASE: u32 = 8;
export const C_BYTES_IN: u32 = 40;
export const C_PACKETS_IN: u32 = 41;
export const C_NEW_FLOWS: u32 = 42;
export const C_CT_EVICTED: u32 = 43;
export const C_CT_EXPIRED: u32 = 44;
export const C_CT_ENTRIES: u32 = 45;
export const C_GENERATION: u32 = 46;
export const C_BATCHES: u32 = 47;
export const C_STALE_UDP_FLUSHED: u32 = 48;
export const C_REPLIES_MADE: u32 = 49;
export const C_ICMP_TRANSLATED: u32 = 50;
export const C_FRAG_TRACKED: u32 = 51;
export const C_INNER_CSUM_COMPLETED: u32 = 52;
/** TSO packets sent encapsulated once through the tunnel TAP (UDP-tunnel GSO) instead of cut. */
export const C_TUNNEL_GSO_SENT: u32 = 53;
/** Decapsulated TSO packets that came whole and went to the TUN as one GSO packet. */
export const C_TUNNEL_GSO_RECEIVED: u32 = 54;
export const COUNTER_COUNT: u32 = 64;

// ╒═══ control ops, staged at stageAddr() by src/engine/control.ts, applied by commit() ═══╕
// Every op: u8 code, u8 0, u16 0, u32 size (bytes of the whole op, a multiple of 4), then fields.
// Addresses are 16 bytes, network order; IPv4 is IPv4-mapped IPv6 (::ffff:a.b.c.d).
export const enum Op {
  End = 0,
  /** key addr16 | port u16 | proto u8 | kind u8 | id u32 | select u8 | flags u8 | 0 u16 |
   *  affinitySec u32 | maglevSize u32 | count u32 | eligible u32 | then `count` backends:
   *  addr16 | port u16 | weight u16. The first `eligible` backends take new flows; the rest
   *  (terminating) only keep the flows they have. */
  UpsertService = 1,
  /** key addr16 | port u16 | proto u8 | 0 u8 */
  DeleteService = 2,
  /** prefix addr16 | len u8 (of 128) | kind u8 | nodeId u16 | underlay u32 | vtepMac 6 | 0 u16 */
  UpsertRoute = 3,
  /** prefix addr16 | len u8 | 0 u8 | 0 u16 */
  DeleteRoute = 4,
  /** addr16: a node address (NodePort on "any node address" matches these) */
  AddLocalAddr = 5,
  DeleteLocalAddr = 6,
  /** drop everything: services, routes, local addresses (the first op of a full load) */
  Clear = 7,
}

export const enum ServiceKind { ClusterIp = 0, NodePort = 1, ExternalIp = 2, LoadBalancer = 3 }
export const enum Select { Random = 0, Maglev = 1 }
export namespace ServiceFlag {
  /** Masquerade traffic from outside the cluster CIDRs (kube-proxy's default for NodePort/LB). */
  export const MASQUERADE_EXTERNAL: u8 = 1;
  /** sessionAffinity: ClientIP */
  export const AFFINITY: u8 = 2;
  /** Match on the port alone for any local address (NodePort). */
  export const ANY_LOCAL_ADDR: u8 = 4;
  /** No eligible backend because a traffic policy of Local left none on this node while the
   *  service has endpoints elsewhere: kube-proxy drops this silently instead of rejecting. */
  export const DROP_WHEN_EMPTY: u8 = 8;
}
export const enum RouteKind { Local = 0, Remote = 1 }

export const enum CommitResult {
  Ok = 0,
  BadOp = 1,
  ServicesFull = 2,
  BackendsFull = 3,
  RoutesFull = 4,
  LocalAddrsFull = 5,
  NotInitialized = 6,
}

// ╒═══ init config block at configAddr(), u32 fields, written by the host before init() ═══╕
export const CFG_MAX_BATCH: u32 = 0;        // slots per batch
export const CFG_CT_CAPACITY: u32 = 4;      // tracked flows (rounded up to a power of two)
export const CFG_MAX_SERVICES: u32 = 8;     // service entries (VIP, port, proto)
export const CFG_MAX_BACKENDS: u32 = 12;    // backend slots over all services
export const CFG_MAX_ROUTES: u32 = 16;
export const CFG_MAGLEV_CELLS: u32 = 20;    // total Maglev lookup cells over all services
export const CFG_MODE: u32 = 24;            // 0 TUN, 1 TAP
export const CFG_UNDERLAY_IP: u32 = 28;     // this node's underlay IPv4 (host order)
export const CFG_VNI: u32 = 32;
export const CFG_VXLAN_PORT: u32 = 36;
export const CFG_UNDERLAY_MTU: u32 = 40;
export const CFG_SEED: u32 = 44;
export const CFG_VTEP_MAC: u32 = 48;        // 6 bytes + 2 pad
export const CFG_TAP_PEER_MAC: u32 = 56;    // the TAP device's own MAC (kernel side), 6 + 2
export const CFG_ENGINE_MAC: u32 = 64;      // the MAC the engine answers ARP with, 6 + 2
export const CFG_MASQ_ADDR4: u32 = 72;      // 16 bytes: source for hairpin / masquerade (IPv4-mapped)
export const CFG_MASQ_ADDR6: u32 = 88;      // 16 bytes
export const CFG_SERVICE_CIDR4: u32 = 104;  // 16 bytes prefix + u32 len (of 128) at +16
export const CFG_SERVICE_CIDR6: u32 = 124;  // 16 bytes prefix + u32 len at +16
export const CFG_CLUSTER_CIDR4: u32 = 144;  // 16 + 4
export const CFG_CLUSTER_CIDR6: u32 = 164;  // 16 + 4
export const CFG_SIZE: u32 = 192;

export const enum InitResult { Ok = 0, BadConfig = 1, OutOfMemory = 2, AlreadyInitialized = 3 }
