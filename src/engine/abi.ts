// Mirror of assembly/abi.ts for the host. test/unit/abi.test.ts checks that every number matches.

export const SLOT_SIZE = 32;
export const SLOT_DATA = 0;
export const SLOT_LEN = 4;
export const SLOT_FLAGS = 8;
export const SLOT_VERDICT = 10;
export const SLOT_REASON = 11;
export const SLOT_PEER = 12;
export const SLOT_BUF_START = 16;
export const SLOT_BUF_END = 20;
export const SLOT_SERVICE = 24;
export const SLOT_NOTE = 28;

export const VNET_HDR_LEN = 10;
export const HEADROOM = 192;
export const SLOT_PACKET_ROOM = 65536 + 64;

export const SlotFlag = { FROM_OVERLAY: 1, VNET: 2, TRACE: 4, ETHERNET: 8 } as const;

export enum Verdict { None = 0, Tun = 1, Overlay = 2, Drop = 3, Host = 4 }
export const VERDICT_COUNT = 5;

export enum Drop {
  None = 0, TooShort = 1, BadIpVersion = 2, BadIpv4Header = 3, BadIpv4Checksum = 4, BadIpv6Header = 5,
  BadL4Header = 6, TtlExceeded = 7, NoBackend = 8, NoService = 9, FragmentUntracked = 10, BadVxlan = 11,
  UnknownVni = 12, UnknownPeer = 13, SpoofedInnerSource = 14, NoRoute = 15, TooBig = 16,
  NatPortExhausted = 17, BadEthernet = 18, BadArp = 19, BadSlot = 20, Martian = 21, BadIcmpError = 22,
  GsoUnsupported = 23, NotReady = 24, NoLocalBackend = 25, OffloadFailed = 26, SourceNotAllowed = 27, FragmentHeld = 28,
}
export const DROP_COUNT = 29;

/** Metric-label names of the drop reasons: snake_case of the enum names. */
export const DROP_NAMES: readonly string[] = Array.from({ length: DROP_COUNT }, (_, i) =>
  (Drop[i] ?? `reason_${i}`).replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase());
export const VERDICT_NAMES: readonly string[] = Array.from({ length: VERDICT_COUNT }, (_, i) =>
  (Verdict[i] ?? `verdict_${i}`).toLowerCase());

export const Note = {
  DNAT: 1, REVERSE_NAT: 2, SNAT: 4, NEW_FLOW: 8, CT_HIT: 16, ENCAP: 32, DECAP: 64, REPLY_MADE: 128,
  ICMP_ERROR_TRANSLATED: 256, TTL_DECREMENTED: 512, ARP_ANSWERED: 1024, GSO: 2048, FRAGMENT: 4096,
  AFFINITY: 8192,
  TUNNEL_GSO: 16384,
  OFFLOADED: 32768,
} as const;

export const C_DROP_BASE = 8;
export const C_BYTES_IN = 40;
export const C_PACKETS_IN = 41;
export const C_NEW_FLOWS = 42;
export const C_CT_EVICTED = 43;
export const C_CT_EXPIRED = 44;
export const C_CT_ENTRIES = 45;
export const C_GENERATION = 46;
export const C_BATCHES = 47;
export const C_STALE_UDP_FLUSHED = 48;
export const C_REPLIES_MADE = 49;
export const C_ICMP_TRANSLATED = 50;
export const C_FRAG_TRACKED = 51;
export const C_INNER_CSUM_COMPLETED = 52;
export const C_TUNNEL_GSO_SENT = 53;
export const C_TUNNEL_GSO_RECEIVED = 54;
export const C_OFFLOADED = 55;
export const C_OFFLOAD_FAILED = 56;
export const C_OFFLOAD_RESENT = 57;
export const C_OFFLOAD_LAST_ERRNO = 58;
export const C_FRAG_HELD = 59;
export const C_FRAG_RELEASED = 60;
export const C_FRAG_HOLDING = 61;
export const C_CT_EVICTED_SHARE = 62;
export const C_CT_EVICTED_OLDEST = 63;
export const COUNTER_COUNT = 64;

export enum Op { End = 0, UpsertService = 1, DeleteService = 2, UpsertRoute = 3, DeleteRoute = 4, AddLocalAddr = 5, DeleteLocalAddr = 6, Clear = 7 }
export const OP_SERVICE_HEAD = 52;
export const OP_SERVICE_RANGES = 34;
export const OP_BACKEND_SIZE = 20;
export const OP_RANGE_SIZE = 20;
export enum ServiceKind { ClusterIp = 0, NodePort = 1, ExternalIp = 2, LoadBalancer = 3 }
export enum Select { Random = 0, Maglev = 1 }
export const ServiceFlag = { MASQUERADE_EXTERNAL: 1, AFFINITY: 2, ANY_LOCAL_ADDR: 4, DROP_WHEN_EMPTY: 8 } as const;
export enum RouteKind { Local = 0, Remote = 1 }
export enum CommitResult { Ok = 0, BadOp = 1, ServicesFull = 2, BackendsFull = 3, RoutesFull = 4, LocalAddrsFull = 5, NotInitialized = 6, OutOfMemory = 7 }

export const CFG_MAX_BATCH = 0;
export const CFG_CT_CAPACITY = 4;
export const CFG_MAX_SERVICES = 8;
export const CFG_MAX_BACKENDS = 12;
export const CFG_MAX_ROUTES = 16;
export const CFG_MAGLEV_CELLS = 20;
export const CFG_MODE = 24;
export const CFG_UNDERLAY_IP = 28;
export const CFG_VNI = 32;
export const CFG_VXLAN_PORT = 36;
export const CFG_UNDERLAY_MTU = 40;
export const CFG_SEED = 44;
export const CFG_VTEP_MAC = 48;
export const CFG_TAP_PEER_MAC = 56;
export const CFG_ENGINE_MAC = 64;
export const CFG_MASQ_ADDR4 = 72;
export const CFG_MASQ_ADDR6 = 88;
export const CFG_SERVICE_CIDR4 = 104;
export const CFG_SERVICE_CIDR6 = 124;
export const CFG_CLUSTER_CIDR4 = 144;
export const CFG_CLUSTER_CIDR6 = 164;
export const CFG_OFFLOAD = 184;
export const CFG_MEMORY_LIMIT_MIB = 188;
export const CFG_SIZE = 192;

export enum InitResult { Ok = 0, BadConfig = 1, OutOfMemory = 2, AlreadyInitialized = 3 }

// Conntrack flow record at ctRecord(i); the drawn layout is in assembly/abi.ts.
export const CT_REC_SIZE = 128;
export const CT_F_SRC = 0;
export const CT_F_DST = 16;
export const CT_R_SRC = 32;
export const CT_F_SPORT = 48;
export const CT_F_DPORT = 50;
export const CT_R_SPORT = 52;
export const CT_R_DPORT = 54;
export const CT_PROTO = 56;
export const CT_STATE = 57;
export const CT_CLS = 58;
export const CT_FLAGS = 59;
export const CT_LAST = 60;
export const CT_R_DST = 64;
export const CT_SERVICE = 80;
export const CT_PREV = 84;
export const CT_NEXT = 88;
export const CT_GEN = 92;
export const CT_CREATED = 96;
export const CT_SOURCE = 100;
export const CT_SEQ = 104;
export const CT_SRC_PREV = 112;
export const CT_SRC_NEXT = 116;

/** The FlowFlag bits ctInsert accepts (not USED, not OFFLOADED). */
export const FLOW_FLAGS_INSERTABLE = 63;
export const FlowFlag = { DNAT: 1, SNAT: 2, REPLIED: 4, ANY_ADDR_SERVICE: 8, FIN_ORIG: 16, FIN_REPLY: 32, OFFLOADED: 64, USED: 128 } as const;
export enum CtDir { Original = 0, Reply = 1 }
export enum CtState {
  SynSent = 1, SynRecv = 2, Established = 3, FinWait = 4, TimeWait = 5, Close = 6, UdpUnreplied = 10, UdpReplied = 11,
  Icmp = 20, Other = 30,
}
/** What `wasp conntrack` prints for each state (the kernel's words for TCP). */
export const CT_STATE_NAMES: Readonly<Record<number, string>> = {
  [CtState.SynSent]: "SYN_SENT", [CtState.SynRecv]: "SYN_RECV", [CtState.Established]: "ESTABLISHED",
  [CtState.FinWait]: "FIN_WAIT", [CtState.TimeWait]: "TIME_WAIT", [CtState.Close]: "CLOSE",
  [CtState.UdpUnreplied]: "UNREPLIED", [CtState.UdpReplied]: "REPLIED", [CtState.Icmp]: "ICMP", [CtState.Other]: "OTHER",
};
export enum CtClass { TcpSyn = 0, TcpEstablished = 1, TcpClosing = 2, TcpTimeWait = 3, TcpClose = 4, Udp = 5, UdpStream = 6, Icmp = 7, Offloaded = 8 }
export const CT_CLASS_COUNT = 9;
export const CT_TIMEOUT_TCP_SYN_SEC = 120;
export const CT_TIMEOUT_TCP_ESTABLISHED_SEC = 432000;
export const CT_TIMEOUT_TCP_CLOSING_SEC = 120;
export const CT_TIMEOUT_TCP_TIME_WAIT_SEC = 120;
export const CT_TIMEOUT_TCP_CLOSE_SEC = 10;
export const CT_TIMEOUT_UDP_SEC = 30;
export const CT_TIMEOUT_UDP_STREAM_SEC = 120;
export const CT_TIMEOUT_ICMP_SEC = 30;
export const CT_TIMEOUT_OFFLOADED_SEC = 30;
export const OFFLOAD_MARK = 0x77617370;
/** Seconds a flow lives unseen, indexed by its class byte (CtClass). */
export const CT_TIMEOUT_SEC: readonly number[] = [
  CT_TIMEOUT_TCP_SYN_SEC, CT_TIMEOUT_TCP_ESTABLISHED_SEC, CT_TIMEOUT_TCP_CLOSING_SEC, CT_TIMEOUT_TCP_TIME_WAIT_SEC,
  CT_TIMEOUT_TCP_CLOSE_SEC, CT_TIMEOUT_UDP_SEC, CT_TIMEOUT_UDP_STREAM_SEC, CT_TIMEOUT_ICMP_SEC, CT_TIMEOUT_OFFLOADED_SEC,
];

// Trace area at traceAddr(): u32 count, then records of u32 stage, a, b, slot address.
export const TRACE_RECORDS = 4;
export const TRACE_REC_SIZE = 16;
export const TRACE_MAX_RECORDS = 64;
export const TRACE_BYTES = 4 + 64 * 16;
export const TRACE_STAGE = 0;
export const TRACE_A = 4;
export const TRACE_B = 8;
export const TRACE_SLOT = 12;
export const TRACE_NO_ROUTE = 0xff;
export enum Stage { Parse = 1, Decap = 2, Conntrack = 3, Service = 4, Backend = 5, Nat = 6, Route = 7, Offload = 8 }
/** What `wasp trace` calls each stage. */
export const STAGE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(Stage).filter(([, v]) => typeof v === "number").map(([k, v]) => [v, k.toLowerCase()]));

// Service stats at serviceStatsAddr(): per entry id, u64 packets, bytes, new flows.
export const STATS_STRIDE = 24;
export const STATS_PACKETS = 0;
export const STATS_BYTES = 8;
export const STATS_NEW_FLOWS = 16;
