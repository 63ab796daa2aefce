// native/front/wasp-front.c, the C front door that is dist/wasp: a CNI call goes to the daemon over
// a unix socket, everything else (and every decline) execs wasp-node beside it with the same argv,
// environment and stdin. Compiled with cc into a temp dir next to a fake wasp-node (a tiny C
// program, so argv[0] is seen as passed, which a #! script would lose) and a fake daemon here.
// Needs cc; no root, no namespaces.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = new URL("../../..", import.meta.url).pathname;
const SOURCE = join(ROOT, "native", "front", "wasp-front.c");

// Prints what it was started with, then the stdin it got, byte for byte.
const FAKE_NODE = String.raw`
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  static char in[8 << 20];
  size_t n = 0; ssize_t r;
  while ((r = read(0, in + n, sizeof in - n)) > 0) n += (size_t)r;
  for (int i = 0; i < argc; i++) printf("arg:%s\n", argv[i]);
  const char *names[] = {"WASP_FRONT_FALLBACK", "WASP_FRONT_SOCKET"};
  for (int i = 0; i < 2; i++) if (getenv(names[i])) printf("env:%s=%s\n", names[i], getenv(names[i]));
  const char *c = getenv("CNI_COMMAND");
  printf("CNI_COMMAND:%s\nstdin:%zu\n", c ? c : "(unset)", n);
  fflush(stdout);
  fwrite(in, 1, n, stdout);
  return 0;
}
`;

interface Run { status: number | null; stdout: Buffer; stderr: string }
interface Request { header: string[]; body: Buffer }
/** What the fake daemon does with a request: a reply, "end" (close after reading, no byte), or
 *  "reset" (close at once, before reading anything). */
type Answer = Buffer | "end" | "reset";

describe("CNI front door: dist/wasp hands a CNI call to the daemon, else execs wasp-node beside it", function () {
  this.timeout(20_000);
  let work = "", front = "", lonely = "", sock = "";
  let server: net.Server;
  let requests: Request[] = [];
  let connections = 0;
  let answer: (req: Request) => Answer = () => Buffer.from([255]);

  before(async () => {
    work = fs.realpathSync(fs.mkdtempSync(join(tmpdir(), "wasp-front-")));
    front = join(work, "wasp");
    execFileSync("cc", ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-o", front, SOURCE], { stdio: "inherit" });
    fs.writeFileSync(join(work, "fake-node.c"), FAKE_NODE);
    execFileSync("cc", ["-O2", "-o", join(work, "wasp-node"), join(work, "fake-node.c")], { stdio: "inherit" });
    fs.mkdirSync(join(work, "alone"));
    lonely = join(work, "alone", "wasp"); // the front door with no wasp-node beside it
    fs.copyFileSync(front, lonely);
    fs.chmodSync(lonely, 0o755);

    sock = join(work, "cni.sock");
    server = net.createServer((c) => {
      connections++;
      if (answer({ header: [], body: Buffer.alloc(0) }) === "reset") { c.destroy(); return; }
      const parts: Buffer[] = [];
      c.on("data", (d: Buffer) => parts.push(d));
      c.on("end", () => {
        const req = parse(Buffer.concat(parts));
        requests.push(req);
        const a = answer(req);
        if (a === "end" || a === "reset") c.end();
        else c.end(a);
      });
      c.on("error", () => {});
    });
    await new Promise<void>((ok) => server.listen(sock, ok));
  });
  after(async () => {
    if (server) await new Promise((ok) => server.close(ok));
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });
  // The fake daemon starts each test declining (255), whatever answer the test before set.
  beforeEach(() => {
    requests = [];
    connections = 0;
    answer = () => Buffer.from([255]);
  });

  /** NUL-terminated strings up to an empty one, then the stdin bytes. */
  function parse(b: Buffer): Request {
    const header: string[] = [];
    let at = 0;
    for (;;) {
      const nul = b.indexOf(0, at);
      assert.ok(nul >= 0, "the header ends with an empty string");
      const s = b.subarray(at, nul).toString();
      at = nul + 1;
      if (s === "") break;
      header.push(s);
    }
    return { header, body: b.subarray(at) };
  }

  /** Runs the front door asynchronously (the fake daemon answers on this event loop). */
  function run(args: string[], env: Record<string, string>, stdin: Buffer | null, exe = front): Promise<Run> {
    return new Promise((resolve, reject) => {
      const child = spawn(exe, args, { argv0: "wasp-as-called", env, stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe"] });
      const out: Buffer[] = [];
      let err = "";
      child.stdout!.on("data", (d: Buffer) => out.push(d));
      child.stderr!.on("data", (d: Buffer) => { err += d.toString(); });
      child.on("error", reject);
      child.on("close", (status) => resolve({ status, stdout: Buffer.concat(out), stderr: err }));
      if (stdin) {
        child.stdin!.on("error", () => {}); // wasp-node need not read everything in every case
        child.stdin!.end(stdin);
      }
    });
  }

  const CNI = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "cid-1", CNI_NETNS: "/var/run/netns/pod", CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin" };
  const env = (over: Record<string, string> = {}): Record<string, string> =>
    ({ PATH: process.env.PATH ?? "/usr/bin:/bin", WASP_SOMETHING: "not for the daemon", WASP_CNI_SOCKET: sock, ...CNI, ...over });
  const config = Buffer.from(JSON.stringify({ cniVersion: "1.1.0", name: "waspnet", type: "wasp" }));

  /** What the fake wasp-node saw: its argv, CNI_COMMAND and the stdin bytes. */
  function ranNode(r: Run): { argv: string[]; cniCommand: string; stdin: Buffer; env: Record<string, string> } {
    const argv: string[] = [], seenEnv: Record<string, string> = {};
    let at = 0;
    for (;;) {
      const nl = r.stdout.indexOf(10, at);
      assert.ok(nl >= 0, `wasp-node ran: ${r.stdout.subarray(0, 200).toString()} ${r.stderr}`);
      const line = r.stdout.subarray(at, nl).toString();
      at = nl + 1;
      if (line.startsWith("arg:")) { argv.push(line.slice(4)); continue; }
      if (line.startsWith("env:")) { const eq = line.indexOf("="); seenEnv[line.slice(4, eq)] = line.slice(eq + 1); continue; }
      assert.ok(line.startsWith("CNI_COMMAND:"), line);
      const cniCommand = line.slice(12);
      const nl2 = r.stdout.indexOf(10, at);
      const len = Number(r.stdout.subarray(at, nl2).toString().replace("stdin:", ""));
      const stdin = r.stdout.subarray(nl2 + 1);
      assert.equal(stdin.length, len);
      return { argv, cniCommand, stdin, env: seenEnv };
    }
  }

  it("hands a CNI ADD to the daemon: only the CNI_* variables, the caller's netns as dev:ino and the stdin go over; the daemon's bytes and status 0 come back", async () => {
    const reply = Buffer.concat([Buffer.from('{"cniVersion":"1.1.0","ips":[]}\n'), Buffer.from([0, 1, 2, 255, 0xc3])]);
    answer = () => Buffer.concat([Buffer.from([0]), reply]);
    const r = await run([], env(), config);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout, reply, "stdout is the daemon's bytes, unchanged");
    assert.equal(r.stderr, "");
    assert.equal(requests.length, 1);
    const ns = fs.statSync("/proc/self/ns/net", { bigint: true });
    assert.deepEqual([...requests[0]!.header].sort(), [
      ...Object.entries(CNI).map(([k, v]) => `${k}=${v}`),
      `WASP_FRONT_NETNS=${ns.dev}:${ns.ino}`,
    ].sort(), "exactly the CNI_* variables (no PATH, no WASP_*) and the netns");
    assert.equal(requests[0]!.header.at(-1), `WASP_FRONT_NETNS=${ns.dev}:${ns.ino}`, "the netns comes last");
    assert.deepEqual(requests[0]!.body, config);
  });

  it("names the sandbox as the caller sees it (WASP_FRONT_SANDBOX=dev:ino of CNI_NETNS) when it exists, so a daemon in another mount namespace can tell", async () => {
    answer = () => Buffer.from([0]);
    const sandbox = join(work, "sandbox");
    fs.writeFileSync(sandbox, "");
    const r = await run([], env({ CNI_NETNS: sandbox }), config);
    assert.equal(r.status, 0, r.stderr);
    const st = fs.statSync(sandbox, { bigint: true });
    assert.ok(requests[0]!.header.includes(`WASP_FRONT_SANDBOX=${st.dev}:${st.ino}`), requests[0]!.header.join(" "));
    assert.ok(requests[0]!.header.includes(`CNI_NETNS=${sandbox}`), `CNI_NETNS=${sandbox} passed on: ${requests[0]!.header.join(" ")}`);
  });

  it("exits with the daemon's status (7) and prints its CNI error; an empty stdin is an empty body", async () => {
    const error = Buffer.from('{"cniVersion":"1.1.0","code":7,"msg":"bad config"}\n');
    answer = () => Buffer.concat([Buffer.from([7]), error]);
    const r = await run([], env({ CNI_COMMAND: "DEL" }), null);
    assert.equal(r.status, 7, r.stderr);
    assert.deepEqual(r.stdout, error);
    assert.equal(requests.length, 1);
    assert.ok(requests[0]!.header.includes("CNI_COMMAND=DEL"), `CNI_COMMAND=DEL passed on: ${requests[0]!.header.join(" ")}`);
    assert.equal(requests[0]!.body.length, 0);
  });

  it("no daemon socket (path missing): wasp-node runs with the same argv[0] and gets the full stdin", async () => {
    const r = await run([], env({ WASP_CNI_SOCKET: join(work, "no-such.sock") }), config);
    assert.equal(r.status, 0, r.stderr);
    const seen = ranNode(r);
    assert.deepEqual(seen.argv, ["wasp-as-called"]);
    assert.equal(seen.cniCommand, "ADD");
    assert.deepEqual(seen.stdin, config);
  });

  it("the daemon answers 255 (not handled here): falls back, wasp-node gets the full stdin, and the rest of the answer as the reason in WASP_FRONT_FALLBACK", async () => {
    answer = () => Buffer.from([255, ...Buffer.from("the caller is in another network namespace")]);
    const r = await run([], env(), config);
    assert.equal(requests.length, 1, "the daemon was asked first");
    assert.equal(r.status, 0, r.stderr);
    const seen = ranNode(r);
    assert.deepEqual(seen.argv, ["wasp-as-called"]);
    assert.deepEqual(seen.stdin, config);
    assert.deepEqual(seen.env, { WASP_FRONT_FALLBACK: `the daemon at ${sock} declined the call: the caller is in another network namespace`, WASP_FRONT_SOCKET: sock });
  });

  it("the network config names the daemon's socket (top-level cniSocket, JSON escapes read): a call without WASP_CNI_SOCKET reaches it; WASP_CNI_SOCKET wins when set; a cniSocket inside another object is not it", async () => {
    answer = () => Buffer.from([0]);
    const noEnv = env();
    delete noEnv.WASP_CNI_SOCKET;
    const withSock = (v: string, extra = "") => Buffer.from(`{"cniVersion":"1.0.0","name":"waspnet",${extra}"type":"wasp","cniSocket":${v}}`);
    const r1 = await run([], noEnv, withSock(JSON.stringify(sock)));
    assert.equal(r1.status, 0, r1.stderr);
    assert.equal(requests.length, 1, "the conflist's socket was asked");
    // "\/" and "\u0063" are JSON for "/" and "c": the same path
    const escaped = JSON.stringify(sock).replace(/\//g, "\\/").replace(/c/, "\\u0063");
    const r2 = await run([], noEnv, withSock(escaped, '"args":{"x":[1,{"y":"}"}]},'));
    assert.equal(r2.status, 0, r2.stderr);
    assert.equal(requests.length, 2, `the escaped path ${escaped} is the socket`);
    const r3 = await run([], env(), withSock(JSON.stringify(join(work, "other.sock"))));
    assert.equal(r3.status, 0, r3.stderr);
    assert.equal(requests.length, 3, "WASP_CNI_SOCKET overrides the conflist");
    const missing = join(work, "missing.sock");
    const nested = Buffer.from(`{"dns":{"cniSocket":${JSON.stringify(sock)}},"cniSocket":${JSON.stringify(missing)},"type":"wasp"}`);
    const r4 = await run([], noEnv, nested);
    assert.equal(requests.length, 3, "the nested cniSocket is not the conflist's");
    assert.deepEqual(ranNode(r4).env, { WASP_FRONT_FALLBACK: `no daemon answers at ${missing} (ENOENT: no socket)`, WASP_FRONT_SOCKET: missing });
  });

  it("the daemon closes without a byte (after reading the request, or at once): falls back to wasp-node", async () => {
    for (const a of ["end", "reset"] as const) {
      connections = 0;
      answer = () => a;
      const r = await run([], env(), config);
      assert.equal(connections, 1, `${a}: the daemon was asked first`);
      assert.equal(r.status, 0, `${a}: ${r.stderr}`);
      assert.deepEqual(ranNode(r).stdin, config, a);
    }
  });

  it("with arguments and no CNI_COMMAND (wasp --help, wasp status --json): execs wasp-node with the same argv, the daemon is never contacted", async () => {
    answer = () => Buffer.from([0]);
    const plain = env();
    delete plain.CNI_COMMAND;
    for (const args of [["--help"], ["status", "--json"]]) {
      const r = await run(args, plain, null);
      assert.equal(r.status, 0, r.stderr);
      const seen = ranNode(r);
      assert.deepEqual(seen.argv, ["wasp-as-called", ...args]);
      assert.equal(seen.cniCommand, "(unset)");
    }
    const withArgs = await run(["version"], env(), config); // CNI_COMMAND set but arguments given
    assert.deepEqual(ranNode(withArgs).argv, ["wasp-as-called", "version"]);
    assert.deepEqual(ranNode(withArgs).stdin, config, "stdin untouched");
    const noCni = await run([], plain, config); // no arguments but no CNI_COMMAND
    assert.deepEqual(ranNode(noCni).stdin, config);
    assert.deepEqual(ranNode(noCni).env, {}, "not a CNI call: nothing to record");
    assert.equal(connections, 0);
  });

  it("WASP_CNI_FAILPOINT set (even empty): the daemon is never contacted, the Node plugin runs the call", async () => {
    answer = () => Buffer.from([0]);
    for (const fp of ["after-veth", ""]) {
      const r = await run([], env({ WASP_CNI_FAILPOINT: fp }), config);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(ranNode(r).cniCommand, "ADD");
      assert.deepEqual(ranNode(r).stdin, config);
    }
    assert.equal(connections, 0);
  });

  it("a 1 MiB config goes through intact both to the daemon and to wasp-node; over 4 MiB goes to wasp-node whole", async () => {
    const big = randomBytes(1 << 20);
    answer = (req) => Buffer.concat([Buffer.from([0]), req.body]);
    const viaDaemon = await run([], env(), big);
    assert.equal(viaDaemon.status, 0, viaDaemon.stderr);
    assert.equal(requests[0]!.body.length, big.length);
    assert.ok(requests[0]!.body.equals(big), "daemon got the 1 MiB stdin");
    assert.ok(viaDaemon.stdout.equals(big), "front door printed the 1 MiB answer");

    answer = () => Buffer.from([255]);
    const viaNode = await run([], env(), big);
    assert.ok(ranNode(viaNode).stdin.equals(big), "wasp-node got the 1 MiB stdin after the daemon declined");

    requests = [];
    const huge = randomBytes((4 << 20) + 12345); // past the 4 MiB cap: part read, the rest still in the pipe
    const over = await run([], env(), huge);
    assert.equal(requests.length, 0, "the daemon is not asked");
    assert.ok(ranNode(over).stdin.equals(huge), "wasp-node got the read part and the unread rest");
  });

  it("wasp-node missing: `cannot run` on stderr, and for a CNI call a CNI error with code 5 on stdout and exit 1 (else 127)", async () => {
    const path = join(work, "alone", "wasp-node");
    const cni = await run([], env({ WASP_CNI_SOCKET: join(work, "no-such.sock") }), config, lonely);
    assert.equal(cni.status, 1);
    assert.equal(cni.stderr, `wasp: cannot run ${path}: No such file or directory\n`);
    const err = JSON.parse(cni.stdout.toString());
    assert.equal(err.code, 5);
    assert.equal(err.msg, `cannot run ${path}: No such file or directory`);
    assert.equal(typeof err.cniVersion, "string");

    const plain = env();
    delete plain.CNI_COMMAND;
    const cli = await run(["--help"], plain, null, lonely);
    assert.equal(cli.status, 127);
    assert.equal(cli.stdout.length, 0);
    assert.match(cli.stderr, /^wasp: cannot run .*\/alone\/wasp-node: No such file or directory$/m);
  });
});
