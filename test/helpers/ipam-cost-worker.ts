// Separate process for the IPAM cost test: one ADD's allocation and one DEL's release of the
// attachment (OWNER, eth0), so a tracer (strace) sees exactly the files they touch.
import { allocate, poolFromCidr, Store } from "../../src/ipam/index.js";

const [dataDir, network, cidr, owner] = process.argv.slice(2);
const store = await Store.open(dataDir!, network!);
const ip = (await allocate(store, poolFromCidr(cidr!)!, { containerId: owner!, ifname: "eth0" }, 0)).ip;
const released = await store.release({ containerId: owner!, ifname: "eth0" });
process.stdout.write(JSON.stringify({ ip, released }));
