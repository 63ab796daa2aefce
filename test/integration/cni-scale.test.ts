// Many pods at once, and plugins killed mid-ADD: the IPAM store never hands out an address twice,
// and GC leaves nothing of a killed ADD behind. Same runtime-style driver as cni.test.ts.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execPlugin, startPlugin, type CniOutcome } from "../helpers/cni-driver.js";
import { deleteAllNs, inNs, ip, makeNs, sysctl } from "../helpers/netns.js";
import { hostVethName } from "../../src/cni/names.js";

const WASP = new URL("../../bin/wasp-dev", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const waspLinks = (ns: string) =>
  (JSON.parse(ip(ns, "-j", "link", "show")) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => /^wasp[0-9a-f]{11}$/.test(n)).sort();
const ping = (ns: string, addr: string) => { try { inNs(ns, "busybox", "ping", "-c1", "-W1", addr); return true; } catch { return false; } };

describe("cni plugin at scale: parallel ADD/DEL and kill -9", function () {
  this.timeout(300_000);
  let dataDir: string, node: string;
  const conf = () => ({ cniVersion: "1.1.0", name: "waspnet", type: "wasp", podCIDR: "10.244.1.0/24", dataDir });
  const storeFiles = () => fs.readdirSync(join(dataDir, "waspnet")).sort();
  const records = () => storeFiles().filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  const run = (command: string, pod: string | undefined, config: unknown, containerId = `cid-${pod}`) =>
    ({ command, containerId, netns: pod ? `/var/run/netns/${pod}` : "", ifname: "eth0", path: "/usr/lib/cni", config, nodeNs: node, timeoutMs: 120_000 });

  beforeEach(() => {
    dataDir = fs.mkdtempSync(join(tmpdir(), "wasp-cni-scale-"));
    node = makeNs("node");
    sysctl(node, "net.ipv4.ip_forward", 1);
    ip(node, "link", "add", "wasp0", "type", "bridge");
    ip(node, "addr", "add", "10.244.1.1/32", "dev", "wasp0");
    ip(node, "link", "set", "wasp0", "up");
  });
  afterEach(() => {
    deleteAllNs();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("50 ADDs in parallel get 50 distinct addresses and every pod answers the node's ping; 50 parallel DELs empty the pool and leave no veth", async () => {
    const pods = Array.from({ length: 50 }, () => makeNs("pod"));
    const adds = await Promise.all(pods.map((p) => execPlugin(WASP, run("ADD", p, conf()))));
    adds.forEach((r, i) => assert.equal(r.exitCode, 0, `ADD ${i}: ${r.stdout}${r.stderr}`));
    const addrs = adds.map((r) => r.json.ips[0].address.split("/")[0] as string);
    assert.equal(new Set(addrs).size, 50);
    assert.equal(records().length, 50);
    assert.equal(waspLinks(node).length, 50);
    const unreachable = addrs.filter((a) => !ping(node, a));
    assert.deepEqual(unreachable, []);
    assert.ok(ping(pods[0]!, addrs[49]!), "first pod reaches the last");

    const dels = await Promise.all(pods.map((p, i) => execPlugin(WASP, run("DEL", p, { ...conf(), prevResult: adds[i]!.json }))));
    dels.forEach((r, i) => assert.equal(r.exitCode, 0, `DEL ${i}: ${r.stdout}${r.stderr}`));
    assert.deepEqual(storeFiles(), ["last_reserved_ip.0"], "only bookkeeping is left");
    assert.deepEqual(waspLinks(node), []);
  });

  for (const [point, leaves] of [["after-claim", "an address record"], ["after-veth", "a record and a veth"], ["after-pod", "a complete attachment"]] as const) {
    it(`SIGKILL ${point.replace("-", " ")} leaves ${leaves}; a retried ADD reuses the address, and GC without that attachment removes all of it`, async () => {
      const pod = makeNs("pod");
      const k = await execPlugin(WASP, { ...run("ADD", pod, conf()), extraEnv: { WASP_CNI_FAILPOINT: point } });
      assert.equal(k.signal, "SIGKILL");
      assert.deepEqual(records(), ["10.244.1.2"], "the claim survived the kill");
      assert.equal(waspLinks(node).length, point === "after-claim" ? 0 : 1);

      // A retried ADD of the same attachment (what a runtime does) gets the address back and a fresh veth.
      const retry = await execPlugin(WASP, run("ADD", pod, conf()));
      assert.equal(retry.exitCode, 0, retry.stdout);
      assert.equal(retry.json.ips[0].address, "10.244.1.2/32");
      assert.deepEqual(waspLinks(node), [hostVethName(`cid-${pod}`, "eth0")]);
      assert.ok(ping(node, "10.244.1.2"), "the node pings the pod the retried ADD wired");

      // Killed again, and this time the runtime has given up on the pod: GC removes everything.
      const k2 = await execPlugin(WASP, { ...run("ADD", pod, conf()), extraEnv: { WASP_CNI_FAILPOINT: point } });
      assert.equal(k2.signal, "SIGKILL");
      const gc = await execPlugin(WASP, { ...run("GC", undefined, { ...conf(), "cni.dev/valid-attachments": [] }), containerId: undefined, ifname: undefined, netns: undefined });
      assert.equal(gc.exitCode, 0, gc.stdout);
      assert.deepEqual(records(), []);
      assert.deepEqual(waspLinks(node), []);
      assert.deepEqual(storeFiles().filter((f) => f.startsWith(".tmp-") || f === "lock"), []);
      assert.deepEqual((JSON.parse(ip(pod, "-j", "link", "show")) as Array<{ ifname: string }>).map((l) => l.ifname), ["lo"]);
    });
  }

  it("kill -9 of plugins in the middle of ADD, then GC with the survivors as valid attachments: no leaked address, veth, temp file or lock", async () => {
    const pods = Array.from({ length: 20 }, () => makeNs("pod"));
    const started = pods.map((p) => startPlugin(WASP, run("ADD", p, conf())));
    // Kill every other plugin at a different moment: during Node's start-up, IPAM, or the ip calls.
    const kills = started.map(async (s, i) => {
      if (i % 2 === 1) return;
      await sleep(300 + i * 150);
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGKILL"); // by its PID
    });
    const outcomes: CniOutcome[] = await Promise.all(started.map((s) => s.done));
    await Promise.all(kills);
    const killed = outcomes.filter((o) => o.signal === "SIGKILL").length;
    assert.ok(killed >= 3, `only ${killed} plugins were killed mid-ADD; the test proves nothing`);
    await sleep(1000); // an `ip` a killed plugin had started finishes on its own

    const survivors = pods.filter((_, i) => outcomes[i]!.exitCode === 0);
    const valid = survivors.map((p) => ({ containerID: `cid-${p}`, ifname: "eth0" }));
    const gc = await execPlugin(WASP, { ...run("GC", undefined, { ...conf(), "cni.dev/valid-attachments": valid }), containerId: undefined, ifname: undefined, netns: undefined });
    assert.equal(gc.exitCode, 0, gc.stdout + gc.stderr);

    const survivorAddrs = survivors.map((p) => outcomes[pods.indexOf(p)]!.json.ips[0].address.split("/")[0] as string).sort();
    assert.deepEqual(records().sort(), survivorAddrs);
    assert.deepEqual(waspLinks(node), survivors.map((p) => hostVethName(`cid-${p}`, "eth0")).sort());
    assert.deepEqual(storeFiles().filter((f) => f.startsWith(".tmp-") || f === "lock"), []);
    for (const [i, p] of pods.entries()) {
      if (outcomes[i]!.exitCode === 0) continue;
      const podLinks = (JSON.parse(ip(p, "-j", "link", "show")) as Array<{ ifname: string }>).map((l) => l.ifname);
      assert.deepEqual(podLinks, ["lo"], `killed pod ${i} keeps no interface`);
    }
    for (const a of survivorAddrs) assert.ok(ping(node, a), `survivor ${a} still reachable after GC`);
  });
});
