// Backend choice for a new flow: the client's remembered backend under ClientIP affinity, else
// Maglev or "random". Every choice is a hash of the flow, never a draw: the same tables give the
// same answer in any process, so after a daemon restart a mid-flow packet of a connection the new
// process does not know goes to the backend it had. "random" is a uniform hash over the eligible
// backends (kube-proxy's random choice, per flow); Maglev is the consistent hash that moves fewest
// flows when backends change. (Affinity is remembered per client for its timeout, as kube-proxy's
// recent-list is: a fresh choice after it is again the flow's hash.)
import { Note, ServiceFlag, Select } from "../abi";
import * as pkt from "./packet";
import * as gen from "../table/generation";
import { hashTuple } from "../table/hash";
import * as affinity from "./affinity";
import { out } from "./result";

/** Index of the backend of service entry `e` (of its `eligible` first) that takes the new flow. */
export function chooseBackend(g: usize, e: usize, eligible: u32, now: u32): u32 {
  if ((load<u8>(e + gen.S_FLAGS) & ServiceFlag.AFFINITY) != 0) {
    const a = affinity.lookup(load<u32>(e + gen.S_ID), pkt.SRC, now, load<u32>(e + gen.S_AFFINITY));
    if (a >= 0) {
      // the client's backend where it was, else wherever a reload moved it
      const want = affinity.rememberedIdent();
      let found: i32 = -1;
      if (<u32>a < eligible && identOf(g, e, <u32>a) == want) found = a;
      else for (let i: u32 = 0; i < eligible; i++) if (identOf(g, e, i) == want) { found = <i32>i; break; }
      if (found >= 0) { out.note |= Note.AFFINITY; affinity.touch(now, <u32>found); return <u32>found; }
    }
    const bi = pick(g, e, eligible);
    affinity.remember(load<u32>(e + gen.S_ID), pkt.SRC, bi, identOf(g, e, bi), now);
    return bi;
  }
  return pick(g, e, eligible);
}

@inline function identOf(g: usize, e: usize, i: u32): u32 {
  const b = gen.svcBackend(g, e, i);
  return affinity.backendIdent(b + gen.B_ADDR, <u32>load<u16>(b + gen.B_PORT));
}

@inline function pick(g: usize, e: usize, eligible: u32): u32 {
  const h = hashTuple(pkt.SRC, pkt.DST, (<u64>pkt.sport << 32) | (<u64>pkt.dport << 16) | <u64>pkt.proto);
  if (load<u8>(e + gen.S_SELECT) == <u8>Select.Maglev && load<u32>(e + gen.S_MAGLEV) != 0) {
    const i = gen.svcMaglevPick(g, e, h);
    return i < eligible ? i : 0;
  }
  return h % eligible;
}
