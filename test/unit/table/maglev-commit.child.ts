// Run by generation.test.ts in a child process with a timeout: commits one Maglev service with
// the table size and backend count from argv and prints the CommitResult. (A core that loops
// forever would hang the test runner itself.)
import { newEngine, clusterRoutes } from "../pipeline/setup.js";

const size = Number(process.argv[2]), n = Number(process.argv[3]);
const e = newEngine();
const r = e.commitOps(clusterRoutes().service({
  vip: "10.96.0.10", port: 80, proto: "tcp", id: 1, select: 1, maglevSize: size,
  backends: Array.from({ length: n }, (_, i) => ({ ip: `10.244.1.${10 + i}`, port: 80 })),
}).bytes());
process.stdout.write(`${r} ${e.checkInvariants()}\n`);
