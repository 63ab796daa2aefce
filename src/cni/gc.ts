// GC (CNI spec 1.1): release every allocation, and remove every host veth, whose attachment is not
// in cni.dev/valid-attachments. This is also what cleans up after a plugin killed mid-ADD.
import { Code, CniError } from "./errors.js";
import { openStore, type Ctx } from "./context.js";
import { ipBatchForce, localLinks, SELF } from "./ip.js";
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
    if (stale.length) {
      await ipBatchForce(SELF, stale.map((n) => `link del ${n}`), "cannot remove stale veths").catch((e: Error) => {
        const left = localLinks();
        if (stale.some((n) => left.has(n))) throw e;
      });
    }
  } catch (e) {
    throw toCniError(e);
  }
}
