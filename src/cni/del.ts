// DEL: remove what ADD made and release the address. Idempotent: a missing veth, a netns that is
// gone or not given (containerd sends CNI_NETNS="" once the task has exited), no prior ADD: success.
import { openStore, owner, type Ctx } from "./context.js";
import { withRtnl } from "../netlink/rtnl.js";
import { hostVethName } from "./names.js";
import { parseResult } from "./result.js";
import { toCniError } from "./add.js";

export async function cmdDel(ctx: Ctx): Promise<void> {
  const { env, conf } = ctx;
  const host = hostVethName(env.containerId, env.ifname);
  try {
    // Deleting the host end removes the pod end (a veth pair dies whole) and the host routes via it.
    // The link goes first: the address must not be handed out while a route still points here.
    // ENODEV (already gone, e.g. with its namespace) is success: delLink says false. The kernel
    // takes most of a DEL's time there (unregistering a device waits for RCU grace periods), so
    // the store is opened and the attachment's addresses found meanwhile; only the release waits.
    // The addresses the runtime cached from the ADD count too when their record names this
    // attachment (a record written before the store had its owner index).
    const cached = (parseResult(conf.prevResult)?.ips ?? []).map((i) => i.address.split("/")[0]!);
    const found = openStore(conf).then(async (store) => ({ store, candidates: await store.candidates(owner(env), cached) }));
    found.catch(() => undefined); // awaited below; a rejection before then is not unhandled
    await withRtnl(undefined, (nl) => nl.delLink(host));
    const { store, candidates } = await found;
    await store.releaseCandidates(owner(env), candidates);
  } catch (e) {
    throw toCniError(e);
  }
}
