// A control socket alone in its own process, for tests that need its file-descriptor limit (run it
// under `prlimit --nofile=N:N`): serves PATH, answers {"cmd":"status"} with {"ok":true,"pid":...},
// prints "ready" once it listens, and runs until killed.
import { serveControl } from "../../src/daemon/control-socket.js";

const [path] = process.argv.slice(2);
await serveControl(path!, (req) => (req.cmd === "status" ? { ok: true, pid: process.pid } : { error: "unknown command" }));
process.stdout.write("ready\n");
