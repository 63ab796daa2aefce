// The daemon's side of the CNI front door's protocol (native/front/wasp-front.c): what a request
// holds, and when the daemon must leave a call to the plugin run by the caller.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CNI_PARALLEL, declineReason, fileId, parseRequest, serveCni } from "../../../src/daemon/cni-socket.js";

const req = (...parts: Array<string | Buffer>) => Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : p)));

describe("CNI socket protocol (daemon side)", () => {
  it("splits NUL-ended NAME=value strings up to an empty one, then takes the rest as stdin (which may hold NULs)", () => {
    const r = parseRequest(req("CNI_COMMAND=ADD\0", "CNI_ARGS=K8S_POD_NAME=a;IgnoreUnknown=1\0", "WASP_FRONT_NETNS=4:5\0", "\0", '{"a":1}\0x'));
    assert.ok(r, "the well-formed request parses");
    assert.equal(r.vars.get("CNI_COMMAND"), "ADD");
    assert.equal(r.vars.get("CNI_ARGS"), "K8S_POD_NAME=a;IgnoreUnknown=1", "only the first = separates name and value");
    assert.equal(r.stdin, '{"a":1}\0x');
  });

  it("rejects a request without the empty string that ends the header, or a string without a name", () => {
    assert.equal(parseRequest(req("CNI_COMMAND=ADD\0")), undefined);
    assert.equal(parseRequest(req("=x\0\0")), undefined);
    assert.equal(parseRequest(req("CNI_COMMAND\0\0")), undefined);
    assert.equal(parseRequest(Buffer.alloc(0)), undefined);
  });

  it("declines a caller in another network namespace, and a sandbox path that is another file here (or none) than for the caller", () => {
    const vars = (o: Record<string, string>) => new Map(Object.entries(o));
    const ids: Record<string, string> = { "/var/run/netns/p": "3:77" };
    const id = (p: string) => ids[p];
    assert.equal(declineReason(vars({ WASP_FRONT_NETNS: "4:1", CNI_NETNS: "/var/run/netns/p", WASP_FRONT_SANDBOX: "3:77" }), "4:1", id), undefined);
    assert.match(declineReason(vars({ WASP_FRONT_NETNS: "4:2" }), "4:1", id)!, /another network namespace/);
    assert.match(declineReason(vars({}), "4:1", id)!, /another network namespace/);
    assert.match(declineReason(vars({ WASP_FRONT_NETNS: "4:1", CNI_NETNS: "/var/run/netns/p", WASP_FRONT_SANDBOX: "3:78" }), "4:1", id)!, /not the same file/);
    assert.match(declineReason(vars({ WASP_FRONT_NETNS: "4:1", CNI_NETNS: "/var/run/netns/p" }), "4:1", id)!, /not the same file/, "the caller cannot see it, the daemon can");
    // a DEL for a sandbox that is gone everywhere, and a call with no sandbox (VERSION, GC, STATUS)
    assert.equal(declineReason(vars({ WASP_FRONT_NETNS: "4:1", CNI_NETNS: "/var/run/netns/gone" }), "4:1", id), undefined);
    assert.equal(declineReason(vars({ WASP_FRONT_NETNS: "4:1", CNI_NETNS: "" }), "4:1", id), undefined);
  });
});

describe("CNI socket: parallel calls", function () {
  this.timeout(30_000);
  let dir = "";
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), "wasp-cnisock-")); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** One call as the front door makes it (this process's network namespace); resolves with the status byte and stdout. */
  const call = (path: string, id: number) => new Promise<{ status: number; out: string }>((resolve, reject) => {
    const c = createConnection(path);
    const chunks: Buffer[] = [];
    c.on("data", (d: Buffer) => chunks.push(d));
    c.on("error", reject);
    c.on("end", () => { const b = Buffer.concat(chunks); resolve({ status: b[0] ?? -1, out: b.subarray(1).toString() }); });
    c.end(`CNI_COMMAND=ADD\0CNI_CONTAINERID=c${id}\0WASP_FRONT_NETNS=${fileId("/proc/self/ns/net")}\0\0{}`);
  });

  it(`250 calls at once: every one is answered, at most ${CNI_PARALLEL} run at the same time (each holds files while it runs)`, async () => {
    const path = join(dir, "cni.sock");
    let running = 0, most = 0;
    const quiet = { info: () => {}, warn: () => {} };
    const server = await serveCni(path, async ({ env }) => {
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return { stdout: `{"id":"${env.CNI_CONTAINERID}"}`, exitCode: 0 };
    }, quiet);
    try {
      const answers = await Promise.all(Array.from({ length: 250 }, (_, i) => call(path, i)));
      assert.deepEqual(answers.filter((a, i) => a.status !== 0 || a.out !== `{"id":"c${i}"}\n`), [], "every call gets its own answer");
      assert.ok(most <= CNI_PARALLEL, `${most} calls ran at once; the limit is ${CNI_PARALLEL}`);
      assert.ok(most > 1, "calls do run in parallel");
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
