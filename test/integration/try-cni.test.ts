// scripts/try-cni.sh, as the README's newcomer runs it: wasp as CNI plugin + daemon on one machine
// without changing it (a node namespace running `dist/wasp daemon`, podman inside that namespace with
// private CNI dirs and storage). Its own steps (up, run, status, down) are run as commands; the
// containers' own output shows the address the plugin gave and the service reached through the
// daemon; afterwards the kernel shows that no namespace, process, mount or file of the run is left
// and the root namespace's rules and routes are as they were, also when a step of `up` fails.
// Skipped when podman, runc, busybox or dist/wasp are missing (scripts/install-deps.sh makes them).
import { strict as assert } from "node:assert";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = new URL("../..", import.meta.url).pathname;
const SCRIPT = join(ROOT, "scripts/try-cni.sh");
const have = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;

interface Run { code: number | null; out: string; err: string }

function tryCni(step: string, env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const c = spawn("bash", [SCRIPT, step], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    c.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    c.stderr.on("data", (d: Buffer) => { err += d.toString(); });
    c.on("error", reject);
    c.on("close", (code) => resolve({ code, out, err }));
  });
}

const rootPicture = () => ["rule", "route"].map((what) => execFileSync("ip", ["-4", what, "show"], { encoding: "utf8" })).join("\n");

/** Nothing of the run is left: its namespace, its directory (and mounts under it), its daemon. */
function assertLeftNothing(ns: string, dir: string, daemonPid: number, picture: string): void {
  assert.ok(!existsSync(`/var/run/netns/${ns}`), `the namespace ${ns} is left`);
  assert.ok(!existsSync(dir), `the directory ${dir} is left`);
  assert.ok(!readFileSync("/proc/mounts", "utf8").includes(`${dir}/`), `a mount under ${dir} is left`);
  assert.ok(daemonPid > 0 && !existsSync(`/proc/${daemonPid}`), `the daemon (pid ${daemonPid}) is still running`);
  assert.equal(rootPicture(), picture, "the root namespace's rules and routes are unchanged");
}

describe("README's CNI install block: run as written on a machine without /opt/cni/bin or /etc/cni (integration, needs root)", () => {
  it("makes /opt/cni/bin with the three files (executable) and /etc/cni/net.d with a conflist that parses, in a mount namespace whose /opt and /etc/cni are empty", function () {
    if (!existsSync(join(ROOT, "dist/wasp"))) this.skip();
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const block = /```sh\n(install [^\n]*\/opt\/cni\/bin[\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(block, "the README has a ```sh block that installs into /opt/cni/bin");
    // empty tmpfs over /opt and /etc/cni, seen only by this mount namespace: the host's dirs stay as they are
    const out = execFileSync("unshare", ["-m", "--propagation", "private", "bash", "-euo", "pipefail", "-c",
      `mount -t tmpfs wasp-t /opt; mkdir -p /etc/cni; mount -t tmpfs wasp-t /etc/cni; test ! -e /opt/cni/bin
${block}
stat -c '%n %A' /opt/cni/bin/wasp /opt/cni/bin/wasp-node /opt/cni/bin/wasp_native.node; cat /etc/cni/net.d/10-wasp.conflist`], { cwd: ROOT, encoding: "utf8" });
    assert.match(out, /^\/opt\/cni\/bin\/wasp -rwxr-xr-x$/m);
    assert.match(out, /^\/opt\/cni\/bin\/wasp-node -rwxr-xr-x$/m);
    assert.match(out, /^\/opt\/cni\/bin\/wasp_native\.node -rwxr-xr-x$/m);
    const conflist = JSON.parse(out.slice(out.indexOf("{")));
    assert.equal(conflist.plugins[0].type, "wasp");
  });
});

describe("scripts/try-cni.sh: wasp as CNI plugin + daemon under podman on one machine, nothing left afterwards (integration, needs root)", function () {
  this.timeout(240_000);
  let work = "";

  before(function () {
    if (!["podman", "runc", "busybox", "nsenter"].every(have) || !existsSync(join(ROOT, "dist/wasp"))) this.skip();
    work = mkdtempSync(join(tmpdir(), "wasp-try-t-"));
  });
  after(() => { if (work) rmSync(work, { recursive: true, force: true }); });

  for (const offload of ["on", "off"]) {
    it(`--offload ${offload}: a container gets a pod address from the plugin and reaches the backend container through the ClusterIP; every CNI call (podman's cleanup DEL too) reached the daemon; doctor without flags finds the private conflist dir and passes; down leaves nothing`, async () => {
      const env = { WASP_TRY_DIR: join(work, `try-${offload}`), WASP_TRY_NS: `wasp-try-t-${process.pid}-${offload}`, WASP_TRY_OFFLOAD: offload };
      const picture = rootPicture();
      let daemonPid = 0;
      try {
        const up = await tryCni("up", env);
        daemonPid = Number(/daemon \(pid (\d+)\)/.exec(up.out)?.[1]);
        assert.equal(up.code, 0, up.out + up.err);
        const web = /container wasp-try-web at (10\.244\.1\.\d+) serves 8080/.exec(up.out)?.[1];
        assert.ok(web, `the backend's address: ${up.out}`);

        const run = await tryCni("run", env);
        assert.equal(run.code, 0, run.out + run.err);
        // the plugin's address (/32 in the node's pod CIDR, another than the backend's), its routes
        const mine = /inet (10\.244\.1\.\d+)\/32 scope global eth0/.exec(run.out)?.[1];
        assert.ok(mine && mine !== web, `the client's own address: ${run.out}`);
        assert.match(run.out, /^default via 169\.254\.1\.1 dev eth0/m);
        // busybox httpd's answer through 10.96.0.10:80 -> web:8080
        assert.match(run.out, /^HTTP\/1\.[01] 200 OK\r?$/m);
        assert.match(run.out, /hello from the wasp-try backend/);

        const status = await tryCni("status", env);
        assert.equal(status.code, 0, status.out + status.err);
        assert.match(status.out, offload === "on" ? /^datapath: +offload/m : /^datapath: +(?!offload)/m);
        // ADD of web, ADD and (podman --rm) DEL of the client, all by the conflist's cniSocket
        const calls = /^cni socket: +\S+cni\.sock: (\d+) calls? answered, 0 declined$/m.exec(status.out);
        assert.ok(calls && Number(calls[1]) >= 3, `the daemon answered every CNI call: ${status.out}`);

        // doctor without flags: the conflist dir from podman's CONTAINERS_CONF, the IPAM store from it
        const doctor = await tryCni("doctor", env);
        assert.equal(doctor.code, 0, doctor.out + doctor.err);
        const conflist = join(env.WASP_TRY_DIR, "net.d", "10-wasp.conflist");
        assert.match(doctor.out, new RegExp(`^wasp networks +ok +1 wasp network \\(waspnet: 10\\.244\\.1\\.0/24 in ${env.WASP_TRY_DIR}/ipam\\), one IPAM store per pod CIDR$`, "m"));
        assert.match(doctor.out, new RegExp(`^CNI socket +ok +dist/wasp reaches the daemon at ${env.WASP_TRY_DIR}/run/cni\\.sock \\(${conflist}\\)`, "m"));
      } finally {
        const down = await tryCni("down", env);
        assert.equal(down.code, 0, down.out + down.err);
      }
      assertLeftNothing(env.WASP_TRY_NS, env.WASP_TRY_DIR, daemonPid, picture);
    });
  }

  it("up that fails after its daemon started (podman refuses the backend container) exits non-zero and removes what it made", async () => {
    const fake = join(work, "fake-bin");
    execFileSync("mkdir", ["-p", fake]);
    writeFileSync(join(fake, "podman"), "#!/bin/sh\necho 'podman: refused by the test' >&2\nexit 125\n");
    chmodSync(join(fake, "podman"), 0o755);
    const env = { WASP_TRY_DIR: join(work, "try-fail"), WASP_TRY_NS: `wasp-try-t-${process.pid}-fail`, PATH: `${fake}:${process.env.PATH}` };
    const picture = rootPicture();
    const up = await tryCni("up", env);
    const daemonPid = Number(/daemon \(pid (\d+)\)/.exec(up.out)?.[1]);
    try {
      assert.notEqual(up.code, 0, up.out);
      assert.ok(daemonPid > 0, `the daemon had started: ${up.out}${up.err}`);
      assert.match(up.err, /podman: refused by the test/);
      assert.match(up.err, /up did not finish; removing what it made/);
    } finally {
      if (existsSync(env.WASP_TRY_DIR)) await tryCni("down", env);
    }
    assertLeftNothing(env.WASP_TRY_NS, env.WASP_TRY_DIR, daemonPid, picture);
  });
});
