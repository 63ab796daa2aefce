// wasp daemon: lifecycle, the batch loop, reloads, control socket and metrics.
export { Daemon, runDaemon, parseDaemonArgs, DAEMON_USAGE, DEFAULT_SOCKET, DEFAULT_METRICS_PORT, type DaemonOptions } from "./daemon.js";
export { DEVICE, TABLE, OUR_PREFS, PREF_LOCAL_MOVED, cleanupNodeNet } from "./node-net.js";
// The operator's CLI rides along: the single executable carries it in the same deferred bundle as
// the daemon (scripts/build-sea.mjs), so a CNI call never parses either.
export { runCli } from "../cli/index.js";
