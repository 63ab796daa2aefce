// One executable: the CNI plugin when a runtime execs it (CNI_COMMAND set), otherwise the CLI.
const USAGE = `usage: wasp <command>

  As a CNI plugin, wasp is run by the container runtime with CNI_COMMAND set
  (ADD, DEL, CHECK, VERSION, GC, STATUS) and the network config on stdin.

  wasp daemon [--config FILE] [--socket PATH] [--metrics-port PORT] [--io-uring]
    runs the node datapath (in the node's network namespace, as root).

  The operator commands (status, services, backends, conntrack, routes,
  counters, trace, doctor) are not built yet.
`;

// Each path imports only its own modules, lazily: a CNI call never loads the daemon, the engine or
// their dependencies. No top-level await: the single executable (dist/wasp) runs this file bundled
// as CommonJS.
async function main(): Promise<void> {
  if (process.env.CNI_COMMAND !== undefined) {
    const { runCni } = await import("./cni/index.js");
    await runCni();
  } else {
    const cmd = process.argv[2];
    if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
      process.stdout.write(USAGE);
    } else if (cmd === "daemon") {
      const { runDaemon } = await import("./daemon/index.js");
      await runDaemon(process.argv.slice(3));
    } else {
      process.stderr.write(`wasp: unknown command ${JSON.stringify(cmd)} (only the CNI plugin and the daemon exist so far)\n\n${USAGE}`);
      process.exitCode = 2;
    }
  }
}

void main();
