// TAP mode: the core is the gateway on the TAP link. It answers every ARP request with its own
// MAC (proxy ARP), and the kernel then hands it every routed frame.
import { Verdict, Drop, Note, CFG_ENGINE_MAC } from "../abi";
import * as st from "../state";
import { checkArp, emitArpReply, ARP_LEN, ARP_REQUEST, Arp } from "../wire/arp";
import { ETH_HLEN, ETH_P_ARP, emitEthernet } from "../wire/ethernet";
import { out, drop } from "./result";

/** Answers the ARP request in the Ethernet frame at `frame` (len bytes) in place. */
export function answerArp(frame: usize, len: u32): void {
  const a = frame + ETH_HLEN;
  const d = checkArp(a, len - ETH_HLEN);
  if (d != Drop.None) { drop(d); return; }
  if (Arp.at(a).oper != ARP_REQUEST) { drop(Drop.BadArp); return; }
  // RFC 5227: a probe (sender 0.0.0.0) or an announcement (sender = target) checks or claims the
  // asker's own address; answering it with our MAC would read as an address conflict.
  const sender = Arp.at(a).senderIp;
  if (sender == 0 || sender == Arp.at(a).targetIp) { drop(Drop.BadArp); return; }
  emitArpReply(a, st.CONFIG + CFG_ENGINE_MAC);
  // the reply's target hardware address is the asker: the frame goes back to it
  emitEthernet(frame, Arp.at(a).targetMacPtr, st.CONFIG + CFG_ENGINE_MAC, ETH_P_ARP);
  out.data = frame; out.len = ETH_HLEN + ARP_LEN;
  out.verdict = Verdict.Tun;
  out.note |= Note.ARP_ANSWERED;
}
