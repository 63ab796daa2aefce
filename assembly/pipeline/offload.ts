// Offload mode: the engine decides a new flow (service, backend, masquerade) and the kernel carries
// it. Per flow the core writes two ctnetlink requests (wire/ctnetlink.ts): DELETE of the entry the
// kernel made for the first packet on its way into wasp0, then NEW with the engine's NAT binding;
// the packet goes back to the TUN unchanged, and the kernel NATs it and every later packet, both
// ways. The host sends a batch's requests in one sendmsg before it writes the batch back, puts the
// kernel's answers at the results area and calls finish(): a flow the kernel refused loses its
// packet (the client retransmits; the next try resends the binding).
import {
  Drop, Note, Verdict, C_OFFLOADED, C_OFFLOAD_FAILED, C_OFFLOAD_RESENT, C_OFFLOAD_LAST_ERRNO, C_DROP_BASE,
  SLOT_VERDICT, SLOT_REASON, SLOT_NOTE, CT_F_SRC, CT_F_DST, CT_F_SPORT, CT_F_DPORT, CT_R_SRC, CT_R_DST, CT_R_SPORT, CT_PROTO,
  CT_STATE, CT_FLAGS, OFFLOAD_MARK, CT_TIMEOUT_TCP_SYN_SEC, CT_TIMEOUT_TCP_ESTABLISHED_SEC, CT_TIMEOUT_UDP_SEC,
  FlowFlag, CtState, Stage,
} from "../abi";
import { addrEq } from "../mem";
import * as st from "../state";
import * as ct from "../table/conntrack";
import { PROTO_TCP } from "../wire/l4";
import { CtBinding, CTNL_MSG_MAX, TCP_CONNTRACK_ESTABLISHED, TCP_CONNTRACK_SYN_SENT, emitCtDelete, emitCtNew } from "../wire/ctnetlink";
import * as trace from "./trace";
import { out } from "./result";

const B = changetype<CtBinding>(memory.data(offsetof<CtBinding>(), 8));

// Regions (offloadInit): the requests, one i32 result per request, one record per NEW.
let msgs: usize = 0;
let msgsCap: u32 = 0;
let results: usize = 0;
let recs: usize = 0;
let maxFlows: u32 = 0;
// This batch: bytes and count of requests, flows bound.
let bytes: u32 = 0;
let count: u32 = 0;
let flows: u32 = 0;

// A flow bound in this batch: its slot (to drop the packet if the kernel refuses) and the seq of its NEW.
const REC_SLOT: usize = 0, REC_SEQ: usize = 4, REC_SIZE: usize = 8;

/** Bytes offloadInit lays out for `flowsPerBatch` flows (two requests each). */
export function offloadBytesNeeded(flowsPerBatch: u32): usize {
  return <usize>flowsPerBatch * (2 * <usize>CTNL_MSG_MAX + 2 * 4 + REC_SIZE) + 64;
}

export function offloadInit(at: usize, flowsPerBatch: u32): void {
  maxFlows = flowsPerBatch;
  msgs = at;
  msgsCap = flowsPerBatch * 2 * CTNL_MSG_MAX;
  results = (msgs + <usize>msgsCap + 7) & ~7;
  recs = results + <usize>flowsPerBatch * 2 * 4;
  offloadReset();
}

export function offloadReset(): void { bytes = 0; count = 0; flows = 0; }

export function offloadAddr(): usize { return msgs; }
export function offloadBytes(): u32 { return bytes; }
export function offloadCount(): u32 { return count; }
export function offloadResultsAddr(): usize { return results; }

/** Queues flow idx's binding for the kernel; the packet in `out` goes back as it came. `resent`:
 *  the flow was offloaded before (the kernel's entry is gone). False when the batch's request area
 *  is full (cannot happen with one flow per slot; the caller drops the packet then). */
export function bindFlow(idx: u32, slot: usize, resent: bool): bool {
  if (flows >= maxFlows || bytes + 2 * CTNL_MSG_MAX > msgsCap) return false;
  const r = ct.rec(idx);
  B.src = r + CT_F_SRC; B.dst = r + CT_F_DST;
  B.sport = <u32>load<u16>(r + CT_F_SPORT); B.dport = <u32>load<u16>(r + CT_F_DPORT);
  B.proto = <u32>load<u8>(r + CT_PROTO);
  B.backend = r + CT_R_SRC; B.backendPort = <u32>load<u16>(r + CT_R_SPORT);
  // Masquerade when the engine chose it (hairpin, external traffic): the reply's destination is then
  // not the client. Another source port alone (a reply tuple that would clash) is the kernel's to pick.
  const fl = load<u8>(r + CT_FLAGS);
  B.masqAddr = (fl & FlowFlag.SNAT) != 0 && !addrEq(r + CT_R_DST, r + CT_F_SRC) ? r + CT_R_DST : 0;
  const established = <CtState>load<u8>(r + CT_STATE) == CtState.Established;
  B.tcpState = established ? TCP_CONNTRACK_ESTABLISHED : TCP_CONNTRACK_SYN_SENT;
  B.timeoutSec = B.proto != PROTO_TCP ? CT_TIMEOUT_UDP_SEC : established ? CT_TIMEOUT_TCP_ESTABLISHED_SEC : CT_TIMEOUT_TCP_SYN_SEC;
  B.mark = OFFLOAD_MARK;
  bytes += emitCtDelete(msgs + bytes, count + 1, B);
  count++;
  bytes += emitCtNew(msgs + bytes, count + 1, B);
  count++;
  const rec = recs + <usize>flows * REC_SIZE;
  store<u32>(rec + REC_SLOT, <u32>slot);
  store<u32>(rec + REC_SEQ, count);
  flows++;
  store<u8>(r + CT_FLAGS, fl | FlowFlag.OFFLOADED);
  if (resent) st.count(C_OFFLOAD_RESENT);
  out.note |= Note.OFFLOADED;
  trace.step(Stage.Offload, 1, idx);
  return true;
}

/** After the host put the kernel's answers at offloadResultsAddr(): a packet whose flow the kernel
 *  refused (an errno answered to its NEW) is dropped as OffloadFailed. Returns how many were. */
export function offloadFinish(): u32 {
  let failed: u32 = 0;
  for (let i: u32 = 0; i < flows; i++) {
    const rec = recs + <usize>i * REC_SIZE;
    const seq = load<u32>(rec + REC_SEQ);
    const errno = load<i32>(results + (<usize>(seq - 1) << 2));
    if (errno == 0) { st.count(C_OFFLOADED); continue; }
    failed++;
    st.count(C_OFFLOAD_FAILED);
    store<u64>(st.counters + (<usize>C_OFFLOAD_LAST_ERRNO << 3), <u64>(errno < 0 ? -errno : errno));
    const s = <usize>load<u32>(rec + REC_SLOT);
    // the verdict counted for it moves to Drop
    st.count(<u32>load<u8>(s + SLOT_VERDICT), <u64>-1);
    st.count(<u32>Verdict.Drop);
    st.count(C_DROP_BASE + <u32>Drop.OffloadFailed);
    store<u8>(s + SLOT_VERDICT, <u8>Verdict.Drop);
    store<u8>(s + SLOT_REASON, <u8>Drop.OffloadFailed);
    store<u32>(s + SLOT_NOTE, load<u32>(s + SLOT_NOTE) & ~Note.OFFLOADED);
  }
  offloadReset();
  return failed;
}
