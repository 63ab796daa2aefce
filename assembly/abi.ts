// The contract between the host (src/engine/abi.ts mirrors every number here) and the core.
// test/unit/abi.test.ts compares the two. A retired number stays reserved; it is never reused.

// ╒═══ batch slot, 32 bytes, little-endian; filled by src/daemon/datapath.ts and native/src/addon.cc
//      (src/engine/engine.ts's putPacket in tests and benchmarks) ═══╕
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
  /** Offload mode: the kernel refused the flow's conntrack entry (its table full, a clash). */
  OffloadFailed = 26,
  /** A new flow to an entry with source ranges (a LoadBalancer IP's loadBalancerSourceRanges) from
   *  a source outside them: dropped, as kube-proxy's firewall chain drops it. */
  SourceNotAllowed = 27,
  /** A later fragment to a service that came before its first fragment: the slot is done with, a
   *  copy waits (pipeline/fraghold.ts) and goes on as an extra slot once the first fragment comes.
   *  Not a loss: counted apart (C_FRAG_HELD), never among the drops; a copy that is never released
   *  is counted as FragmentUntracked. */
  FragmentHeld = 28,
}
export const DROP_COUNT: u32 = 29;

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
  /** Offload mode: the flow's NAT went to the kernel's conntrack (ctnetlink requests at
   *  offloadAddr()); the packet goes back to the TUN unchanged, for the kernel to NAT. */
  export const OFFLOADED: u32 = 32768;
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
/** Offload mode: flows the kernel took (their NEW acked), and refused. */
export const C_OFFLOADED: u32 = 55;
export const C_OFFLOAD_FAILED: u32 = 56;
/** Offload mode: packets of a flow already offloaded that reached the engine (the kernel's entry was
 *  gone): its binding was sent again. */
export const C_OFFLOAD_RESENT: u32 = 57;
/** Offload mode: the errno (positive) of the last refused NEW, 0 when none: a gauge, not a count. */
export const C_OFFLOAD_LAST_ERRNO: u32 = 58;
/** Early fragments held for their first fragment, and released after it (pipeline/fraghold.ts). */
export const C_FRAG_HELD: u32 = 59;
export const C_FRAG_RELEASED: u32 = 60;
/** Fragments waiting now: a gauge. */
export const C_FRAG_HOLDING: u32 = 61;
/** Evictions from a full flow table, by why (each also counts in C_CT_EVICTED): a flow of the source
 *  holding the most flows, above the mean share (table/conntrack.ts's fair share), and the table's
 *  least recently seen flow when no source is above it. */
export const C_CT_EVICTED_SHARE: u32 = 62;
export const C_CT_EVICTED_OLDEST: u32 = 63;
export const COUNTER_COUNT: u32 = 64;

// ╒═══ control ops, staged at stageAddr() by src/engine/ops.ts, applied by commit() ═══╕
// Every op: u8 code, u8 0, u16 0, u32 size (bytes of the whole op, a multiple of 4), then fields.
// Addresses are 16 bytes, network order; IPv4 is IPv4-mapped IPv6 (::ffff:a.b.c.d).
export const enum Op {
  End = 0,
  /** key addr16 | port u16 | proto u8 | kind u8 | id u32 | select u8 | flags u8 | ranges u16 |
   *  affinitySec u32 | maglevSize u32 | count u32 | eligible u32 | then `count` backends:
   *  addr16 | port u16 | weight u16, then `ranges` source ranges: addr16 | len u8 (of 128) | 0 u8 | 0 u16.
   *  The first `eligible` backends take new flows; the rest (terminating) only keep the flows they
   *  have. An entry with source ranges takes new flows only from sources inside one of them. */
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

/** UpsertService: bytes before the backends, the u16 count of source ranges, bytes per backend and per range. */
export const OP_SERVICE_HEAD: u32 = 52;
export const OP_SERVICE_RANGES: u32 = 34;
export const OP_BACKEND_SIZE: u32 = 20;
export const OP_RANGE_SIZE: u32 = 20;

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
  /** The tables had to grow for these ops and memory was out (memory.grow refused, or the ceiling
   *  CFG_MEMORY_LIMIT_MIB): nothing changed. Full results are the configured ceilings. */
  OutOfMemory = 7,
}

// ╒═══ init config block at configAddr(), u32 fields, written by the host before init() ═══╕
// The tables grow with what is loaded; the CT_CAPACITY..MAGLEV_CELLS fields and MEMORY_LIMIT_MIB are
// ceilings (0: none, but for CT_CAPACITY, which is required).
export const CFG_MAX_BATCH: u32 = 0;        // slots per batch
export const CFG_CT_CAPACITY: u32 = 4;      // most tracked flows (rounded up to a power of two)
export const CFG_MAX_SERVICES: u32 = 8;     // most service entries (VIP, port, proto)
export const CFG_MAX_BACKENDS: u32 = 12;    // most backends over all services
export const CFG_MAX_ROUTES: u32 = 16;      // most routes
export const CFG_MAGLEV_CELLS: u32 = 20;    // most Maglev lookup cells over all services
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
export const CFG_OFFLOAD: u32 = 184;        // 1: new flows go to the kernel's conntrack (offload mode)
export const CFG_MEMORY_LIMIT_MIB: u32 = 188; // most MiB of linear memory (0: what memory.grow gives)
export const CFG_SIZE: u32 = 192;

export const enum InitResult { Ok = 0, BadConfig = 1, OutOfMemory = 2, AlreadyInitialized = 3 }

// ╒═══ conntrack flow record, CT_REC_SIZE bytes, at ctRecord(i); kept by table/conntrack.ts ═══╕
// Addresses are 16 bytes, network order (IPv4-mapped for IPv4); every other field is little-endian,
// ports in host order. The forward tuple is what the client sent, the reply tuple what the backend
// sends back; NAT is the difference between them, as in the kernel's tuplehash[ORIGINAL]/[REPLY].
//   0 16  fwdSrc    the client
//  16 16  fwdDst    the address it asked for (a service VIP, a node address)
//  32 16  revSrc    the backend
//  48 u16 fwdSport  50 u16 fwdDport  52 u16 revSport (backend port)  54 u16 revDport
//  56 u8  proto     57 u8 state CtState.*  58 u8 cls CtClass.*  59 u8 flags FlowFlag.*
//  60 u32 lastSeen  seconds, process()'s nowSec
//  64 16  revDst    the client, or the masquerade address when SNATed
//  80 u32 service   service entry id + 1
//  84 u32 prev      88 u32 next: the class's LRU list, idx + 1 (0: end); next also chains free records
//  92 u32 gen       the generation the flow was last checked against
//  96 u32 created   seconds
// 100 u32 source    its source's entry in the per-source table + 1 (table/conntrack.ts)
// 104 u64 seq       when last moved in its lists, in touches: orders flows finer than lastSeen
// 112 u32 srcPrev   116 u32 srcNext: its source's LRU list, idx + 1 (0: end)
// 120 ... 127       unused
export const CT_REC_SIZE: u32 = 128;
export const CT_F_SRC: u32 = 0;
export const CT_F_DST: u32 = 16;
export const CT_R_SRC: u32 = 32;
export const CT_F_SPORT: u32 = 48;
export const CT_F_DPORT: u32 = 50;
export const CT_R_SPORT: u32 = 52;
export const CT_R_DPORT: u32 = 54;
export const CT_PROTO: u32 = 56;
export const CT_STATE: u32 = 57;
export const CT_CLS: u32 = 58;
export const CT_FLAGS: u32 = 59;
export const CT_LAST: u32 = 60;
export const CT_R_DST: u32 = 64;
export const CT_SERVICE: u32 = 80;
export const CT_PREV: u32 = 84;
export const CT_NEXT: u32 = 88;
export const CT_GEN: u32 = 92;
export const CT_CREATED: u32 = 96;
export const CT_SOURCE: u32 = 100;
export const CT_SEQ: u32 = 104;
export const CT_SRC_PREV: u32 = 112;
export const CT_SRC_NEXT: u32 = 116;

/** The FlowFlag bits a flow the host inserts may carry (ctInsert): DNAT through FIN_REPLY; USED and
 *  OFFLOADED are the table's own. */
export const FLOW_FLAGS_INSERTABLE: u32 = 63;

/** The flags byte of a flow record: every bit is declared here. */
export namespace FlowFlag {
  /** Forward packets go to the backend (the destination is rewritten). */
  export const DNAT: u8 = 1;
  /** The source is rewritten too (masquerade, or another source port for a unique reply tuple). */
  export const SNAT: u8 = 2;
  /** A packet came back in the reply direction. */
  export const REPLIED: u8 = 4;
  /** Matched a NodePort entry on "any local address". */
  export const ANY_ADDR_SERVICE: u8 = 8;
  /** TCP: a FIN came from the client (original direction). */
  export const FIN_ORIG: u8 = 16;
  /** TCP: a FIN came from the backend (reply direction). */
  export const FIN_REPLY: u8 = 32;
  /** Offload mode: the flow's NAT binding was handed to the kernel's conntrack. */
  export const OFFLOADED: u8 = 64;
  /** The record holds a flow. */
  export const USED: u8 = 128;
}

/** A tuple's direction in its flow: the low bit of a conntrack ref, and the Nat trace stage's `a`. */
export const enum CtDir { Original = 0, Reply = 1 }

/** The state byte: TCP close to the kernel's nf_conntrack_proto_tcp, then UDP, ICMP and others. */
export const enum CtState {
  SynSent = 1,
  SynRecv = 2,
  Established = 3,
  FinWait = 4,
  TimeWait = 5,
  Close = 6,
  UdpUnreplied = 10,
  UdpReplied = 11,
  Icmp = 20,
  Other = 30,
}

/** Timeout classes, one LRU list each: the class byte of a flow record. */
export const enum CtClass {
  TcpSyn = 0,
  TcpEstablished = 1,
  TcpClosing = 2,
  TcpTimeWait = 3,
  TcpClose = 4,
  Udp = 5,
  UdpStream = 6,
  Icmp = 7,
  /** Offload mode: a flow the kernel carries; the engine remembers its decision a while. */
  Offloaded = 8,
}
export const CT_CLASS_COUNT: u32 = 9;
// Seconds a flow of each class lives unseen: the kernel's defaults (net.netfilter.nf_conntrack_*).
export const CT_TIMEOUT_TCP_SYN_SEC: u32 = 120;             // tcp_timeout_syn_sent
export const CT_TIMEOUT_TCP_ESTABLISHED_SEC: u32 = 432000;  // tcp_timeout_established, 5 days
export const CT_TIMEOUT_TCP_CLOSING_SEC: u32 = 120;         // tcp_timeout_fin_wait
export const CT_TIMEOUT_TCP_TIME_WAIT_SEC: u32 = 120;       // tcp_timeout_time_wait
export const CT_TIMEOUT_TCP_CLOSE_SEC: u32 = 10;            // tcp_timeout_close
export const CT_TIMEOUT_UDP_SEC: u32 = 30;                  // udp_timeout
export const CT_TIMEOUT_UDP_STREAM_SEC: u32 = 120;          // udp_timeout_stream
export const CT_TIMEOUT_ICMP_SEC: u32 = 30;                 // icmp_timeout
// An offloaded flow's later packets never reach the engine; it keeps the decision this long for a
// packet that comes back (a retransmitted first packet, a kernel entry lost) to get the same backend.
export const CT_TIMEOUT_OFFLOADED_SEC: u32 = 30;

// ╒═══ offload requests at offloadAddr() after process(), offload mode only ═══╕
//  offloadBytes() bytes of ctnetlink requests (assembly/wire/ctnetlink.ts), offloadCount() of them,
//  request i with nlmsg_seq i + 1: a DELETE of the kernel's own entry for the first packet, then the
//  NEW with the engine's binding, per flow. The host sends them in one sendmsg before it writes the
//  batch back, and puts each request's result at offloadResultsAddr() (i32 i: 0, or the errno the
//  kernel answered); offloadFinish() then drops the packets of flows the kernel refused.
// Offload mode: the ct mark on every conntrack entry the engine makes ("wasp"): `wasp conntrack`
// lists, and reloads clean up, the kernel's entries by it.
export const OFFLOAD_MARK: u32 = 0x77617370;

// ╒═══ trace area at traceAddr(), TRACE_BYTES; written while a slot carries SlotFlag.TRACE ═══╕
//  0 u32 count     records written by the last process() call
//  4 records, TRACE_REC_SIZE bytes each, at most TRACE_MAX_RECORDS (later steps are not recorded):
//      0 u32 stage Stage.*    4 u32 a    8 u32 b (what the stage found, by stage below)
//     12 u32 slot  address of the slot being traced
export const TRACE_RECORDS: u32 = 4;
export const TRACE_REC_SIZE: u32 = 16;
export const TRACE_MAX_RECORDS: u32 = 64;
export const TRACE_BYTES: u32 = 4 + 64 * 16;
export const TRACE_STAGE: u32 = 0;
export const TRACE_A: u32 = 4;
export const TRACE_B: u32 = 8;
export const TRACE_SLOT: u32 = 12;
/** The Route stage's `a` when no pod route matched (the host routes the packet). */
export const TRACE_NO_ROUTE: u32 = 0xff;

export const enum Stage {
  /** a: Drop (None: the headers are valid), b: the IP protocol number */
  Parse = 1,
  /** a: Drop (None: decapsulated), b: the underlay source IPv4 (host order) */
  Decap = 2,
  /** a: 1 for an existing flow, 0 for none; b: its conntrack ref */
  Conntrack = 3,
  /** a: service entry id + 1, b: its eligible backends */
  Service = 4,
  /** a: the backend's index in the entry, b: the entry's Select */
  Backend = 5,
  /** a: CtDir of the packet, b: the flow's record index */
  Nat = 6,
  /** a: RouteKind, or TRACE_NO_ROUTE; b: the underlay IPv4 of a Remote route */
  Route = 7,
  /** a: 1 when the flow's binding goes to the kernel (offload mode), b: the flow's record index */
  Offload = 8,
}

// ╒═══ service stats at serviceStatsAddr(): STATS_STRIDE bytes per service entry id, u64 each ═══╕
// Not part of a generation: an entry keeps its numbers across reloads while its id lives.
export const STATS_STRIDE: u32 = 24;
export const STATS_PACKETS: u32 = 0;
export const STATS_BYTES: u32 = 8;
export const STATS_NEW_FLOWS: u32 = 16;
