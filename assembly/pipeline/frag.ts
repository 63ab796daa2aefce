// Fragments after the first carry no ports, so they cannot be matched to a flow by themselves.
// The first fragment of a NATed datagram records its flow here, keyed by (source, destination,
// identification, protocol) as RFC 791 reassembly does; the later fragments find it and get the
// same address rewrite. A direct-mapped table: a collision forgets an older datagram, never traps.
import { addrCopy, addrEq, addrInPrefix } from "../mem";
import { hashTuple } from "../table/hash";
import * as pkt from "./packet";
import * as hold from "./fraghold";
import * as ct from "../table/conntrack";
import { CONFIG, nowSec } from "../state";
import { CFG_SERVICE_CIDR4, CFG_SERVICE_CIDR6, CT_F_SRC, CT_F_DST, CT_R_SRC, CT_R_DST, CT_FLAGS, CT_PROTO, FlowFlag, CtDir } from "../abi";

const CAP: u32 = 4096;          // datagrams in flight at once
const E_SRC = 0, E_DST = 16, E_ID = 32, E_PROTO = 36, E_USED = 37, E_DIR = 38, E_FLOW = 40, E_EXPIRES = 44, ENTRY = 48;
const TIMEOUT_SEC: u32 = 30;    // the kernel's ipfrag_time
const TABLE: usize = memory.data(<i32>(CAP * ENTRY), 16);

@inline function slotFor(): usize {
  const h = hashTuple(pkt.SRC, pkt.DST, (<u64>pkt.fragId << 8) | <u64>pkt.proto);
  return TABLE + <usize>(h & (CAP - 1)) * ENTRY;
}

export function remember(flow: u32, dir: CtDir): void {
  const e = slotFor();
  addrCopy(e + E_SRC, pkt.SRC); addrCopy(e + E_DST, pkt.DST);
  store<u32>(e + E_ID, pkt.fragId);
  store<u8>(e + E_PROTO, <u8>pkt.proto);
  store<u8>(e + E_USED, 1);
  store<u8>(e + E_DIR, <u8>dir);
  store<u32>(e + E_FLOW, flow);
  store<u32>(e + E_EXPIRES, nowSec + TIMEOUT_SEC);
  hold.markRelease();
}

/** What lookup found for a fragment after the first. */
export const enum FragMatch {
  /** Addressed to a service, but its first fragment was never seen: it cannot be delivered right. */
  Orphan = 0,
  /** Not part of a NATed datagram: it goes on as it came. */
  Unmatched = 1,
  /** Rewritten like its first fragment. */
  Rewritten = 2,
}

export function lookup(g: usize): FragMatch {
  const e = slotFor();
  if (load<u8>(e + E_USED) != 0 && load<u32>(e + E_ID) == pkt.fragId && <u32>load<u8>(e + E_PROTO) == pkt.proto &&
      addrEq(e + E_SRC, pkt.SRC) && addrEq(e + E_DST, pkt.DST) && <i32>(load<u32>(e + E_EXPIRES) - nowSec) > 0) {
    const r = ct.rec(load<u32>(e + E_FLOW)), dir = <CtDir>load<u8>(e + E_DIR);
    if ((load<u8>(r + CT_FLAGS) & FlowFlag.USED) == 0) return FragMatch.Orphan;
    // the record may have been evicted and reused by another flow since the first fragment
    if (<u32>load<u8>(r + CT_PROTO) != pkt.proto ||
        !addrEq(r + (dir == CtDir.Original ? CT_F_SRC : CT_R_SRC), pkt.SRC) || !addrEq(r + (dir == CtDir.Original ? CT_F_DST : CT_R_DST), pkt.DST)) return FragMatch.Orphan;
    if (dir == CtDir.Original) {
      pkt.setAddr(false, r + CT_R_SRC);
      if ((load<u8>(r + CT_FLAGS) & FlowFlag.SNAT) != 0) pkt.setAddr(true, r + CT_R_DST);
    } else {
      pkt.setAddr(true, r + CT_F_DST);
      if ((load<u8>(r + CT_FLAGS) & FlowFlag.SNAT) != 0) pkt.setAddr(false, r + CT_F_SRC);
    }
    return FragMatch.Rewritten;
  }
  const c = CONFIG + (pkt.v6 ? CFG_SERVICE_CIDR6 : CFG_SERVICE_CIDR4);
  const len = load<u32>(c + 16);
  return len != 0 && addrInPrefix(pkt.DST, c, len) ? FragMatch.Orphan : FragMatch.Unmatched;
}

export function fragClear(): void { memory.fill(TABLE, 0, <usize>CAP * ENTRY); hold.holdClear(); }
