// Separate process for the kill test: allocates and releases addresses for fresh attachments in a
// loop until it is killed; prints "ready" once the loop runs.
import { allocate, poolFromCidr, Store } from "../../src/ipam/index.js";

const [dataDir, network, cidr, tag] = process.argv.slice(2);
const store = await Store.open(dataDir!, network!);
const pool = poolFromCidr(cidr!)!;
process.stdout.write("ready\n");
for (let i = 0; ; i++) {
  const owner = { containerId: `${tag}-${i}`, ifname: "eth0" };
  await allocate(store, pool, owner, 0);
  if (i % 2 === 0) await store.release(owner); // keep half, so records pile up as pods do
}
