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
  GsoUnsupported = 23, NotReady = 24, NoLocalBackend = 25,
}
export const DROP_COUNT = 26;

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
export const COUNTER_COUNT = 64;

export enum Op { End = 0, UpsertService = 1, DeleteService = 2, UpsertRoute = 3, DeleteRoute = 4, AddLocalAddr = 5, DeleteLocalAddr = 6, Clear = 7 }
export enum ServiceKind { ClusterIp = 0, NodePort = 1, ExternalIp = 2, LoadBalancer = 3 }
export enum Select { Random = 0, Maglev = 1 }
export const ServiceFlag = { MASQUERADE_EXTERNAL: 1, AFFINITY: 2, ANY_LOCAL_ADDR: 4, DROP_WHEN_EMPTY: 8 } as const;
export enum RouteKind { Local = 0, Remote = 1 }
export enum CommitResult { Ok = 0, BadOp = 1, ServicesFull = 2, BackendsFull = 3, RoutesFull = 4, LocalAddrsFull = 5, NotInitialized = 6 }

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
export const CFG_SIZE = 192;

export enum InitResult { Ok = 0, BadConfig = 1, OutOfMemory = 2, AlreadyInitialized = 3 }
