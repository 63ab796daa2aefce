// GC (CNI spec 1.1): release every allocation, and remove every host veth, whose attachment is not
// in cni.dev/valid-attachments. This is also what cleans up after a plugin killed mid-ADD.
import { Code, CniError } from "./errors.js";
import { openStore, type Ctx } from "./context.js";
import { withRtnl } from "../netlink/rtnl.js";
import { localLinks } from "./ip.js";
import { HOST_VETH_RE, hostVethName } from "./names.js";
import { toCniError } from "./add.js";

export async function cmdGc(ctx: Ctx): Promise<void> {
  const valid = ctx.conf.validAttachments;
  if (!valid) {
    throw new CniError(Code.InvalidConfig, "cni.dev/valid-attachments is missing", "GC needs the list of attachments to keep (an empty list releases everything)");
  }
  const keep = new Set(valid.map((a) => `${a.containerID}\0${a.ifname}`));
  const keepLinks = new Set(valid.map((a) => hostVethName(a.containerID, a.ifname)));
  try {
    const store = await openStore(ctx.conf);
    await store.gc((o) => keep.has(`${o.containerId}\0${o.ifname}`));
    const stale = [...localLinks()].filter((n) => HOST_VETH_RE.test(n) && !keepLinks.has(n));
    // Each is removed even when another fails; the first failure is reported after.
    if (stale.length) {
      await withRtnl(undefined, async (nl) => {
        let first: unknown;
        for (const n of stale) await nl.delLink(n).catch((e: unknown) => { first ??= e; });
        if (first) throw first;
      });
    }
  } catch (e) {
    throw toCniError(e);
  }
}
