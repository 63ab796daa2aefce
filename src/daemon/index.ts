// wasp daemon: lifecycle, the batch loop, reloads, control socket and metrics.
export { Daemon, runDaemon, parseDaemonArgs, DAEMON_USAGE, DEFAULT_SOCKET, DEFAULT_METRICS_PORT, type DaemonOptions } from "./daemon.js";
export { DEVICE, TABLE, OUR_PREFS, PREF_LOCAL_MOVED, cleanupNodeNet, firstAddress } from "./node-net.js";
