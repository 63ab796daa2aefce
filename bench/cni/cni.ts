// npm run bench -- cni: what a runtime waits for per pod. ADD and DEL of wasp's executable as
// installed (dist/wasp: the C front door, wasp-node and the addon beside it) against Debian's
// reference bridge + host-local (/usr/lib/cni), side by side in one run, interleaved pod by pod:
//   wasp           a wasp daemon runs on the node (as it does under the DaemonSet): the front door
//                  hands the call to it over cni.sock, the plugin code runs in the daemon;
//   wasp_nodaemon  no daemon: the front door execs wasp-node, which starts Node and runs the plugin
//                  (netlink through the addon);
//   ref            bridge + host-local.
// What each choice buys, measured in the same loop: `ip_batches` is what ADD spent spawning
// iproute2 before netlink replaced it (the same two `ip -batch` runs: host side, then the pod side
// through `ip -n`); `node_empty_script` is Node's bare start-up, the floor of any Node plugin;
// VERSION of wasp-node alone, of the same executable with the V8 code cache, and of one with the
// daemon bundled into the main script. The timing loop runs in bash INSIDE the node namespace (as
// the recipe's time-ref.sh does), so only the plugin exec is timed: `ip netns add` of the pod, the
// prevResult for DEL (jq) and the namespace removal fall outside the clock. 50 pods per plugin (20
// with --quick). Namespaces: wasp-b-<pid>-*, removed after.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { median, round, writeResults } from "../lib/results.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const REF = "/usr/lib/cni";
const PREFIX = `wasp-b-${process.pid}`;

const sh = (cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) =>
  execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 26, ...opts });

/** Nearest-rank percentile. */
function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)]!;
}

function cleanupNs(): void {
  for (const n of readdirSync("/var/run/netns").filter((n) => n.startsWith(PREFIX))) {
    try { sh("ip", ["netns", "del", n]); } catch { /* gone */ }
  }
}

// One pod per iteration and plugin: add the pod namespace, time ADD, make the DEL config with the
// ADD result as prevResult (as libcni does), time DEL, remove the namespace. Prints
// "<plugin> add <us>" / "<plugin> del <us>" / "<name> version <us>".
const LOOP = String.raw`#!/bin/bash
set -u
W=$1 N=$2 PREFIX=$3
export CNI_IFNAME=eth0
t() { date +%s%N; }
one() { # plugin-name binary conf.json pod cni-socket
  local name=$1 bin=$2 conf=$3 pod=$4 t0 t1 out
  export WASP_CNI_SOCKET=$5
  ip netns add $pod
  export CNI_CONTAINERID=$pod CNI_NETNS=/var/run/netns/$pod CNI_PATH=$(dirname $bin)
  t0=$(t); out=$(CNI_COMMAND=ADD $bin < $conf); rc=$?; t1=$(t)
  [ $rc = 0 ] || { echo "FAIL $name ADD rc=$rc $out" >&2; ip netns del $pod; exit 1; }
  echo "$name add $(( (t1-t0)/1000 ))"
  jq -c --argjson prev "$out" '. + {prevResult: $prev}' $conf > $W/del.json
  t0=$(t); out=$(CNI_COMMAND=DEL $bin < $W/del.json); rc=$?; t1=$(t)
  [ $rc = 0 ] || { echo "FAIL $name DEL rc=$rc $out" >&2; ip netns del $pod; exit 1; }
  echo "$name del $(( (t1-t0)/1000 ))"
  ip netns del $pod
}
ipbatches() { # the iproute2 half of the former ADD: host side, then the pod side
  local pod=$1 t0 t1
  ip netns add $pod
  t0=$(t)
  printf 'link add wbip0 mtu 1450 type veth peer name eth0 mtu 1450 netns %s
link set wbip0 up
route replace 10.250.0.2/32 dev wbip0 scope link
' $pod | ip -batch - || exit 1
  printf 'addr add 10.250.0.2/32 dev eth0
link set eth0 up
route add 169.254.1.1 dev eth0 scope link
route add default via 169.254.1.1 dev eth0 onlink
neigh replace 169.254.1.1 lladdr 02:00:00:00:00:01 dev eth0 nud permanent
' | ip -n $pod -batch - || exit 1
  t1=$(t)
  echo "ip batches $(( (t1-t0)/1000 ))"
  ip link del wbip0; ip netns del $pod
}
version() { # name command...
  local name=$1 t0 t1; shift
  t0=$(t); echo '{"cniVersion":"1.0.0"}' | WASP_CNI_SOCKET=$W/none CNI_COMMAND=VERSION "$@" > /dev/null || { echo "FAIL $name VERSION" >&2; exit 1; }; t1=$(t)
  echo "$name version $(( (t1-t0)/1000 ))"
}
# warm the page cache once for each binary
one wasp $W/bin/wasp $W/wasp.json $PREFIX-warm $W/cni.sock >/dev/null
one wasp_nodaemon $W/bin/wasp $W/wasp.json $PREFIX-warm $W/none >/dev/null
one ref $REF_BIN/bridge $W/ref.json $PREFIX-warm $W/none >/dev/null
for i in $(seq 1 $N); do
  if [ $((i % 2)) = 0 ]; then
    one wasp $W/bin/wasp $W/wasp.json $PREFIX-p$i $W/cni.sock; one wasp_nodaemon $W/bin/wasp $W/wasp.json $PREFIX-n$i $W/none
    one ref $REF_BIN/bridge $W/ref.json $PREFIX-q$i $W/none
  else
    one ref $REF_BIN/bridge $W/ref.json $PREFIX-q$i $W/none; one wasp_nodaemon $W/bin/wasp $W/wasp.json $PREFIX-n$i $W/none
    one wasp $W/bin/wasp $W/wasp.json $PREFIX-p$i $W/cni.sock
  fi
  ipbatches $PREFIX-i$i
  version wasp $W/bin/wasp-node
  version wasp_cc $W/cc/wasp-node
  version wasp_onebundle $W/onebundle/wasp-node
  version node node -e ''
  version ref $REF_BIN/bridge
done
`;

export async function run(quick: boolean): Promise<Record<string, number>> {
  const n = quick ? 20 : 50;
  if (!existsSync(join(ROOT, "dist/wasp-node"))) sh("npm", ["run", "--silent", "build:sea"], { cwd: ROOT });
  const work = mkdtempSync(join(tmpdir(), "wasp-bench-cni-"));
  const node = `${PREFIX}-node`;
  let daemon: ChildProcess | undefined;
  try {
    // The executable as installed: the front door, wasp-node and the addon alone in a bin dir.
    mkdirSync(join(work, "bin"));
    for (const f of ["wasp", "wasp-node", "wasp_native.node"]) {
      copyFileSync(join(ROOT, "dist", f), join(work, "bin", f));
      chmodSync(join(work, "bin", f), 0o755);
    }
    // Variants, to show what each start-up choice buys: the same executable with the V8 code cache
    // ("useCodeCache"), and the daemon kept inside the main script (one ~1 MB bundle, code cache on).
    const variant = (name: string, useCodeCache: boolean, oneBundle: boolean) => {
      const conf = join(work, `sea-${name}.json`), main = join(work, `${name}.cjs`);
      writeFileSync(conf, JSON.stringify({ main, output: join(work, `${name}.blob`), disableExperimentalSEAWarning: true,
        useCodeCache, assets: { "wasp.wasm": "build/wasp.wasm", "wasp-daemon.cjs": join(work, "daemon.cjs") } }));
      sh(process.execPath, [join(ROOT, "scripts/build-sea.mjs")], { cwd: ROOT, env: { ...process.env, WASP_SEA_CONFIG: conf,
        WASP_SEA_OUT: join(work, name, "wasp"), WASP_SEA_MAIN: main, WASP_SEA_DAEMON: join(work, "daemon.cjs"),
        ...(oneBundle ? { WASP_SEA_ONE_BUNDLE: "1" } : {}) } });
    };
    variant("cc", true, false);
    variant("onebundle", true, true);

    writeFileSync(join(work, "wasp.json"), JSON.stringify({ cniVersion: "1.0.0", name: "waspnet", type: "wasp",
      podCIDR: "10.244.0.0/16", dataDir: join(work, "ipam-wasp") }));
    writeFileSync(join(work, "ref.json"), JSON.stringify({ cniVersion: "1.0.0", name: "refnet", type: "bridge",
      bridge: "wbbr0", isGateway: true, ipMasq: false,
      ipam: { type: "host-local", dataDir: join(work, "ipam-ref"), ranges: [[{ subnet: "10.245.0.0/16" }]], routes: [{ dst: "0.0.0.0/0" }] } }));
    writeFileSync(join(work, "loop.sh"), LOOP);

    // The node namespace with a wasp daemon in it (wasp0, forwarding, the CNI socket beside its
    // control socket). Its log goes to a file: a pipe nobody reads while the loop runs would block it.
    sh("ip", ["netns", "add", node]);
    sh("ip", ["-n", node, "link", "set", "lo", "up"]);
    const logFd = openSync(join(work, "daemon.log"), "w");
    daemon = spawn("ip", ["netns", "exec", node, join(work, "bin/wasp-node"), "daemon", "--socket", join(work, "wasp.sock"),
      "--metrics-port", "0", "--healthz-bind-address", ""], { stdio: ["ignore", logFd, logFd], env: { ...process.env, WASP_WASM: "", WASP_NATIVE: "" } });
    closeSync(logFd);
    const started = Date.now();
    while (!readFileSync(join(work, "daemon.log"), "utf8").includes('"msg":"serving"')) {
      if (daemon.exitCode !== null || Date.now() - started > 60_000) throw new Error(`cni bench: the daemon did not start:\n${readFileSync(join(work, "daemon.log"), "utf8")}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    // nsenter, not `ip netns exec`: the loop stays in this mount namespace, so the pod namespaces it
    // adds propagate to the daemon's view of /var/run/netns, as a runtime's do on a real node.
    const out = sh("nsenter", [`--net=/var/run/netns/${node}`, "bash", join(work, "loop.sh"), work, String(n), PREFIX],
      { env: { ...process.env, REF_BIN: REF, WASP_WASM: "", WASP_NATIVE: "" } });
    const samples = new Map<string, number[]>();
    for (const line of out.trim().split("\n")) {
      const [name, what, us] = line.split(" ");
      const k = `${name}_${what}`;
      if (!samples.has(k)) samples.set(k, []);
      samples.get(k)!.push(Number(us) / 1000);
    }
    const s = (k: string) => {
      const xs = samples.get(k);
      if (!xs || xs.length < n) throw new Error(`cni bench: ${k} has ${xs?.length ?? 0} samples, expected ${n}`);
      return xs.slice(-n); // the first wasp/ref pair is the warm-up
    };
    const m = (k: string) => round(median(s(k)), 1);
    const p99 = (k: string) => round(pct(s(k), 99), 1);
    // the daemon's own time per call (its log): what the front door and the socket add is the rest
    const inDaemon = (command: string) => readFileSync(join(work, "daemon.log"), "utf8").split("\n")
      .filter((l) => l.includes('"msg":"cni call"') && l.includes(`"command":"${command}"`))
      .map((l) => (JSON.parse(l) as { ms: number }).ms).slice(-n);
    const r: Record<string, number> = {
      wasp_add_in_daemon_ms_p50: round(median(inDaemon("ADD")), 1), wasp_del_in_daemon_ms_p50: round(median(inDaemon("DEL")), 1),
      wasp_add_ms_p50: m("wasp_add"), wasp_add_ms_p99: p99("wasp_add"),
      wasp_del_ms_p50: m("wasp_del"), wasp_del_ms_p99: p99("wasp_del"),
      wasp_nodaemon_add_ms_p50: m("wasp_nodaemon_add"), wasp_nodaemon_add_ms_p99: p99("wasp_nodaemon_add"),
      wasp_nodaemon_del_ms_p50: m("wasp_nodaemon_del"), wasp_nodaemon_del_ms_p99: p99("wasp_nodaemon_del"),
      ref_add_ms_p50: m("ref_add"), ref_add_ms_p99: p99("ref_add"),
      ref_del_ms_p50: m("ref_del"), ref_del_ms_p99: p99("ref_del"),
      wasp_version_ms_p50: m("wasp_version"),
      wasp_code_cache_version_ms_p50: m("wasp_cc_version"),
      wasp_one_bundle_version_ms_p50: m("wasp_onebundle_version"),
      node_empty_script_ms_p50: m("node_version"),
      ref_version_ms_p50: m("ref_version"),
      ip_batches_ms_p50: m("ip_batches"),
      wasp_vs_ref_add_ratio: round(median(s("wasp_add")) / median(s("ref_add")), 2),
      wasp_vs_ref_del_ratio: round(median(s("wasp_del")) / median(s("ref_del")), 2),
      wasp_nodaemon_vs_ref_add_ratio: round(median(s("wasp_nodaemon_add")) / median(s("ref_add")), 2),
      wasp_front_door_mib: round(statSync(join(ROOT, "dist/wasp")).size / 2 ** 20, 2),
      wasp_node_binary_mib: round(statSync(join(ROOT, "dist/wasp-node")).size / 2 ** 20, 1),
      pods_per_plugin: n,
    };
    writeResults("cni", r);
    return r;
  } finally {
    if (daemon && daemon.exitCode === null) {
      daemon.kill("SIGTERM");
      await new Promise((r) => { daemon!.once("exit", r); setTimeout(r, 10_000); });
    }
    cleanupNs();
    rmSync(work, { recursive: true, force: true });
  }
}
