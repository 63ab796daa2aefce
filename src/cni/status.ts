// STATUS (CNI spec 1.1): ready for ADDs when the pool has a free address and, if a daemon socket is
// configured, the daemon answers on it.
import { connect } from "node:net";
import { freeCount } from "../ipam/index.js";
import { Code, CniError } from "./errors.js";
import { openStore, pools, type Ctx } from "./context.js";
import { toCniError } from "./add.js";

export async function cmdStatus(ctx: Ctx): Promise<void> {
  const { conf } = ctx;
  if (conf.daemonSocket) {
    const why = await probeSocket(conf.daemonSocket, 1000);
    if (why) {
      // Without the daemon no packet of a local pod is routed: running pods lose connectivity too.
      throw new CniError(Code.LimitedConnectivity, `the wasp daemon does not answer on ${conf.daemonSocket}: ${why}`, "start the daemon (wasp daemon) or fix daemonSocket in the network config");
    }
  }
  let store;
  try {
    store = await openStore(conf);
  } catch (e) {
    throw toCniError(e);
  }
  for (const pool of pools(conf)) {
    const free = await freeCount(store, pool);
    if (free <= 0n) {
      throw new CniError(Code.NotAvailable, `no free pod address in ${pool.cidr.text} (${pool.size} of ${pool.size} in use)`, "delete pods or give the node a larger pod CIDR");
    }
  }
}

function probeSocket(path: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = connect(path);
    const t = setTimeout(() => { s.destroy(); resolve(`no answer within ${timeoutMs} ms`); }, timeoutMs);
    s.once("connect", () => { clearTimeout(t); s.end(); resolve(undefined); });
    s.once("error", (e: NodeJS.ErrnoException) => { clearTimeout(t); resolve(`${e.code ?? "error"}: ${e.message}`); });
  });
}
