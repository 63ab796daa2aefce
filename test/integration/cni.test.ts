// The wasp CNI plugin driven exactly as a runtime drives it (bin/wasp-dev exec'd with CNI_* env and
// the config on stdin), inside test "node" namespaces, with Debian's reference plugins
// (bridge + host-local, portmap) as the independent cross-check. Expectations come from the CNI
// spec 1.1 and from the kernel's view of the namespaces, not from the plugin's own code.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addList, checkList, delList, execPlugin, expectQuietSuccess, type CniCall, type Conflist } from "../helpers/cni-driver.js";
import { deleteAllNs, deleteNs, inNs, ip, makeNs, sh, spawnInNs, stop, sysctl } from "../helpers/netns.js";
import { hostVethName } from "../../src/cni/names.js";

const WASP = new URL("../../bin/wasp-dev", import.meta.url).pathname;
const REF = "/usr/lib/cni";

interface Link { ifname: string; address: string; mtu: number; flags: string[]; operstate: string; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }
const links = (ns: string): Link[] => JSON.parse(ip(ns, "-j", "addr", "show"));
const waspLinks = (ns: string) => links(ns).map((l) => l.ifname).filter((n) => /^wasp[0-9a-f]{11}$/.test(n));
const routes = (ns: string, fam = "-4") => JSON.parse(ip(ns, "-j", fam, "route", "show")) as Array<{ dst: string; gateway?: string; dev: string; scope?: string; flags?: string[] }>;
const ping = (ns: string, addr: string) => { try { inNs(ns, "busybox", "ping", "-c1", "-W1", addr); return true; } catch { return false; } };

describe("cni plugin: wasp driven like a runtime, in test namespaces", function () {
  this.timeout(120_000);
  let work: string, cniPath: string, dataDir: string;
  let node: string;
  let n = 0;

  before(() => {
    work = fs.mkdtempSync(join(tmpdir(), "wasp-cni-"));
    fs.mkdirSync(join(work, "bin"));
    fs.symlinkSync(WASP, join(work, "bin", "wasp")); // CNI_PATH/<type>, as a runtime finds it
    cniPath = `${join(work, "bin")}:${REF}`;
  });
  after(() => {
    deleteAllNs();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** A fresh node namespace per test: forwarding on, and wasp0 stood in by a port-less bridge
   *  holding the node's first pod address with the default route (what the daemon sets up). */
  beforeEach(() => {
    node = makeNs("node");
    sysctl(node, "net.ipv4.ip_forward", 1);
    ip(node, "link", "add", "wasp0", "type", "bridge");
    ip(node, "addr", "add", "10.244.1.1/32", "dev", "wasp0");
    ip(node, "link", "set", "wasp0", "up");
    ip(node, "route", "add", "default", "dev", "wasp0");
    dataDir = join(work, `ipam-${++n}`);
  });
  afterEach(() => deleteAllNs());

  const conf = (extra: Record<string, unknown> = {}) => ({ cniVersion: "1.0.0", name: "waspnet", type: "wasp", podCIDR: "10.244.1.0/24", dataDir, ...extra });
  const call = (command: string, pod: string | undefined, config: unknown, over: Partial<CniCall> = {}) =>
    execPlugin(WASP, { command, containerId: `cid-${pod ?? "none"}`, netns: pod ? `/var/run/netns/${pod}` : "", ifname: "eth0", path: cniPath, config, nodeNs: node, ...over });
  const records = (net = "waspnet") => {
    try { return fs.readdirSync(join(dataDir, net)).filter((f) => /^[0-9a-f.:]+$/.test(f) && /[.:]/.test(f)); } catch { return []; }
  };

  it("ADD (1.0.0) gives eth0 a /32, 'default via 169.254.1.1 onlink', the host veth proxy_arp and a /32 route; the result says so", async () => {
    const pod = makeNs("pod");
    // a node whose distribution makes new interfaces filter strictly, as many do
    inNs(node, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=1");
    const r = await call("ADD", pod, conf({ dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] } }));
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    const res = r.json;
    assert.deepEqual(Object.keys(res).sort(), ["cniVersion", "dns", "interfaces", "ips", "routes"]);
    assert.equal(res.cniVersion, "1.0.0");

    // Pod side, as the kernel sees it.
    const eth0 = links(pod).find((l) => l.ifname === "eth0")!;
    assert.ok(eth0.flags.includes("UP"), `the pod's eth0 is UP: ${eth0.flags}`);
    assert.equal(eth0.mtu, 1450);
    assert.deepEqual(eth0.addr_info!.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`), ["10.244.1.2/32"]);
    const pr = routes(pod);
    assert.ok(pr.some((x) => x.dst === "169.254.1.1" && x.dev === "eth0" && x.scope === "link"), JSON.stringify(pr));
    assert.ok(pr.some((x) => x.dst === "default" && x.gateway === "169.254.1.1" && x.dev === "eth0" && x.flags?.includes("onlink")), JSON.stringify(pr));

    // Node side.
    const host = hostVethName(`cid-${pod}`, "eth0");
    const hv = links(node).find((l) => l.ifname === host)!;
    assert.ok(hv, `host veth ${host} missing`);
    assert.ok(hv.flags.includes("UP"), `the host veth is UP: ${hv.flags}`);
    assert.equal(hv.mtu, 1450);
    assert.equal(inNs(node, "cat", `/proc/sys/net/ipv4/conf/${host}/proxy_arp`).trim(), "1");
    // the pod's traffic is routed into wasp0, not back out of this veth: strict rp_filter must be off
    assert.equal(inNs(node, "cat", `/proc/sys/net/ipv4/conf/${host}/rp_filter`).trim(), "0");
    assert.ok(routes(node).some((x) => x.dst === "10.244.1.2" && x.dev === host && x.scope === "link"), `node route 10.244.1.2 dev ${host} scope link: ${JSON.stringify(routes(node))}`);

    // The result matches the kernel: MACs, sandbox, ips pointing at the pod interface.
    assert.deepEqual(res.interfaces, [
      { name: host, mac: hv.address },
      { name: "eth0", mac: eth0.address, sandbox: `/var/run/netns/${pod}` },
    ]);
    assert.deepEqual(res.ips, [{ address: "10.244.1.2/32", gateway: "169.254.1.1", interface: 1 }]);
    assert.deepEqual(res.routes, [{ dst: "0.0.0.0/0", gw: "169.254.1.1" }]);
    assert.deepEqual(res.dns, { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] });
    // IPAM: one record named by the address, host-local style.
    assert.equal(fs.readFileSync(join(dataDir, "waspnet", "10.244.1.2"), "utf8"), `cid-${pod}\neth0`);
  });

  it("each cniVersion gets its result shape: 0.4.0 ips[].version '4', 1.0.0 none, 1.1.0 adds interfaces[].mtu", async () => {
    for (const v of ["0.4.0", "1.0.0", "1.1.0"]) {
      const pod = makeNs("pod");
      const r = await call("ADD", pod, conf({ cniVersion: v }));
      assert.equal(r.exitCode, 0, r.stdout);
      assert.equal(r.json.cniVersion, v);
      const ip0 = r.json.ips[0];
      if (v === "0.4.0") assert.equal(ip0.version, "4");
      else assert.equal("version" in ip0, false);
      assert.equal(r.json.interfaces[1].mtu, v === "1.1.0" ? 1450 : undefined);
      const d = await call("DEL", pod, { ...conf({ cniVersion: v }), prevResult: r.json });
      assert.equal(d.exitCode, 0, d.stdout);
    }
    assert.deepEqual(records(), []);
  });

  it("IPv6 (podCIDRv6): eth0 gets a /128 and 'default via fe80::1'; the host veth holds fe80::1 and a /128 route", async () => {
    const pod = makeNs("pod");
    const r = await call("ADD", pod, conf({ cniVersion: "1.1.0", podCIDRv6: "fd00:10:244:1::/120" }));
    assert.equal(r.exitCode, 0, r.stdout);
    assert.deepEqual(r.json.ips.map((i: { address: string }) => i.address), ["10.244.1.2/32", "fd00:10:244:1::2/128"]);
    const eth0 = links(pod).find((l) => l.ifname === "eth0")!;
    assert.ok(eth0.addr_info!.some((a) => a.local === "fd00:10:244:1::2" && a.prefixlen === 128), `eth0 holds fd00:10:244:1::2/128: ${JSON.stringify(eth0.addr_info)}`);
    assert.ok(routes(pod, "-6").some((x) => x.dst === "default" && x.gateway === "fe80::1"), `pod route default via fe80::1: ${JSON.stringify(routes(pod, "-6"))}`);
    const host = hostVethName(`cid-${pod}`, "eth0");
    assert.ok(links(node).find((l) => l.ifname === host)!.addr_info!.some((a) => a.local === "fe80::1"), `the host veth ${host} holds fe80::1`);
    assert.ok(routes(node, "-6").some((x) => x.dst === "fd00:10:244:1::2" && x.dev === host), `node route fd00:10:244:1::2 dev ${host}: ${JSON.stringify(routes(node, "-6"))}`);
    assert.equal((await call("DEL", pod, conf({ cniVersion: "1.1.0", podCIDRv6: "fd00:10:244:1::/120" }))).exitCode, 0);
    assert.deepEqual(records(), []);
  });

  it("CHECK passes right after ADD, and fails (code 100, naming what differs) once the pod's address is removed", async () => {
    const pod = makeNs("pod");
    const r = await call("ADD", pod, conf());
    const c = await call("CHECK", pod, { ...conf(), prevResult: r.json });
    expectQuietSuccess(c, "CHECK");
    ip(pod, "addr", "del", "10.244.1.2/32", "dev", "eth0");
    const bad = await call("CHECK", pod, { ...conf(), prevResult: r.json });
    assert.equal(bad.exitCode, 1);
    assert.equal(bad.json.code, 100);
    assert.match(bad.json.msg, /eth0 lacks address 10\.244\.1\.2\/32/);
    const none = await call("CHECK", pod, conf());
    assert.equal(none.json.code, 7, "CHECK without prevResult is an invalid config");
  });

  it("DEL removes veth, host route and IPAM record; then a 2nd DEL, a DEL with empty CNI_NETNS, after the netns is gone, and without ADD all exit 0 silently", async () => {
    const pod = makeNs("pod");
    const r = await call("ADD", pod, conf());
    const del = await call("DEL", pod, { ...conf(), prevResult: r.json });
    expectQuietSuccess(del, "DEL");
    assert.deepEqual(waspLinks(node), []);
    assert.equal(routes(node).some((x) => x.dst === "10.244.1.2"), false);
    assert.equal(links(pod).some((l) => l.ifname === "eth0"), false);
    assert.deepEqual(records(), []);

    for (const [what, out] of [
      ["second DEL", await call("DEL", pod, conf())],
      ["empty CNI_NETNS (containerd)", await call("DEL", pod, conf(), { netns: "" })],
      ["never ADDed", await call("DEL", "other", conf(), { netns: "" })],
    ] as const) {
      expectQuietSuccess(out, what);
    }
    const pod2 = makeNs("pod");
    await call("ADD", pod2, conf());
    deleteNs(pod2); // the sandbox is gone (its eth0, and with it the host veth, went too)
    const gone = await call("DEL", pod2, conf());
    assert.equal(gone.exitCode, 0, gone.stdout);
    assert.deepEqual(records(), []);
    assert.deepEqual(waspLinks(node), []);
  });

  it("pod A pings pod B and the node pings both: routed over /32 host routes via the 169.254.1.1 gateway", async () => {
    const a = makeNs("pod"), b = makeNs("pod");
    const ra = await call("ADD", a, conf()), rb = await call("ADD", b, conf());
    const ipA = ra.json.ips[0].address.split("/")[0], ipB = rb.json.ips[0].address.split("/")[0];
    assert.ok(ping(a, ipB), `pod A -> ${ipB}`);
    assert.ok(ping(b, ipA), `pod B -> ${ipA}`);
    assert.ok(ping(node, ipA) && ping(node, ipB), "node -> pods");
    // Negative control: after DEL of B, A cannot reach B's address any more.
    await call("DEL", b, conf());
    assert.equal(ping(a, ipB), false);
  });

  it("two networks on one podCIDR with their own IPAM stores hand out the same address: the second ADD is refused (the address is routed to another pod's veth), and neither it nor its DEL takes the first pod's route", async () => {
    const a = makeNs("pod"), b = makeNs("pod");
    const ra = await call("ADD", a, conf());
    assert.equal(ra.exitCode, 0, ra.stdout + ra.stderr);
    const other = { ...conf(), name: "othernet", dataDir: join(work, `ipam-other-${n}`) };
    const rb = await call("ADD", b, other);
    assert.equal(rb.exitCode, 1, "the second ADD must fail");
    assert.match(rb.json.msg, /^10\.244\.1\.2 is already routed to wasp[0-9a-f]{11}, another pod's veth: .*othernet handed out an address another IPAM store had given$/);
    assert.match(rb.json.details, /two wasp networks .* share this podCIDR/);
    const hostA = hostVethName(`cid-${a}`, "eth0");
    const routeA = () => routes(node).filter((x) => x.dst === "10.244.1.2").map((x) => x.dev);
    assert.deepEqual(routeA(), [hostA], "pod A's route is untouched");
    // the runtime cleans up after a failed ADD
    const del = await call("DEL", b, other);
    assert.equal(del.exitCode, 0, del.stdout + del.stderr);
    assert.deepEqual(routeA(), [hostA], "DEL of the refused pod leaves pod A's route");
    assert.ok(ping(node, "10.244.1.2"), "the node still reaches pod A");
    assert.deepEqual(fs.readdirSync(join(other.dataDir, "othernet")).filter((f) => /^[0-9.]+$/.test(f)), [], "the refused ADD released its address");
  });

  it("a sandbox given as /proc/<pid>/ns/net (containerd's form) works for ADD, CHECK and DEL", async () => {
    const pod = makeNs("pod");
    const holder = spawnInNs(pod, "sleep", ["60"]); // `ip netns exec` execs sleep: same PID
    try {
      const netns = `/proc/${holder.pid}/ns/net`;
      const r = await call("ADD", pod, conf(), { netns });
      assert.equal(r.exitCode, 0, r.stdout);
      assert.equal(r.json.interfaces[1].sandbox, netns);
      assert.ok(links(pod).some((l) => l.ifname === "eth0"), "eth0 made in the sandbox named by /proc/<pid>/ns/net");
      assert.ok(ping(node, "10.244.1.2"), "the node pings the pod");
      assert.equal((await call("CHECK", pod, { ...conf(), prevResult: r.json }, { netns })).exitCode, 0);
      assert.equal((await call("DEL", pod, conf(), { netns })).exitCode, 0);
      assert.deepEqual(waspLinks(node), []);
    } finally {
      await stop(holder);
    }
  });

  it("proxy_arp on the host veth answers ARP for 169.254.1.1 with the host veth's MAC (pod without a static entry)", async () => {
    const a = makeNs("pod"), b = makeNs("pod");
    const ra = await call("ADD", a, conf()), rb = await call("ADD", b, conf());
    ip(a, "neigh", "flush", "dev", "eth0", "nud", "permanent");
    assert.ok(ping(a, rb.json.ips[0].address.split("/")[0]), "pod A pings pod B through 169.254.1.1, found by ARP");
    const neigh = JSON.parse(ip(a, "-j", "neigh", "show", "169.254.1.1", "dev", "eth0")) as Array<{ lladdr?: string }>;
    assert.equal(neigh[0]?.lladdr, ra.json.interfaces[0].mac);
  });

  it("STATUS: 0 with free addresses; 50 when the /30 pool is full; 51 when daemonSocket does not answer, 0 when it does", async () => {
    const c30 = conf({ cniVersion: "1.1.0", podCIDR: "10.244.1.0/30" });
    assert.equal((await call("STATUS", undefined, c30)).exitCode, 0);
    const pod = makeNs("pod");
    assert.equal((await call("ADD", pod, c30)).exitCode, 0);
    const full = await call("STATUS", undefined, c30);
    assert.equal(full.exitCode, 1);
    assert.equal(full.json.code, 50);
    assert.match(full.json.msg, /no free pod address in 10\.244\.1\.0\/30/);

    const sock = join(work, `d${n}.sock`);
    const down = await call("STATUS", undefined, conf({ cniVersion: "1.1.0", daemonSocket: sock }));
    assert.equal(down.json.code, 51);
    assert.match(down.json.msg, new RegExp(`does not answer on ${sock}`));
    const srv: Server = createServer((s) => s.end());
    await new Promise<void>((r) => srv.listen(sock, r));
    try {
      const up = await call("STATUS", undefined, conf({ cniVersion: "1.1.0", daemonSocket: sock }));
      assert.equal(up.exitCode, 0, up.stdout);
    } finally {
      srv.close();
    }
  });

  it("GC releases the address and veth of every attachment not in cni.dev/valid-attachments, keeps the listed ones", async () => {
    const keep = makeNs("pod"), drop = makeNs("pod");
    const c = conf({ cniVersion: "1.1.0" });
    const rk = await call("ADD", keep, c), rd = await call("ADD", drop, c);
    assert.deepEqual([rk.exitCode, rd.exitCode], [0, 0]);
    const g = await call("GC", undefined, { ...c, "cni.dev/valid-attachments": [{ containerID: `cid-${keep}`, ifname: "eth0" }] }, { containerId: undefined, ifname: undefined, netns: undefined });
    expectQuietSuccess(g, "GC");
    assert.deepEqual(records(), ["10.244.1.2"]);
    assert.deepEqual(waspLinks(node), [hostVethName(`cid-${keep}`, "eth0")]);
    assert.ok(ping(node, "10.244.1.2"), "the node still pings the kept pod");
    const missing = await call("GC", undefined, c, { containerId: undefined, ifname: undefined, netns: undefined });
    assert.equal(missing.json.code, 7, "GC without the list is refused rather than releasing everything");
  });

  it("bad input fails with the spec's code and leaves no veth and no IPAM record behind", async () => {
    const pod = makeNs("pod");
    const cases: Array<[string, number, Promise<Awaited<ReturnType<typeof call>>>]> = [
      ["malformed JSON", 6, call("ADD", pod, "{\"cniVersion\": \"1.0.0\", ")],
      ["missing name and podCIDR", 7, call("ADD", pod, { cniVersion: "1.0.0", type: "wasp", dataDir })],
      ["unknown cniVersion", 1, call("ADD", pod, conf({ cniVersion: "2.7.0" }))],
      ["wrong CNI_COMMAND", 4, call("ATTACH", pod, conf())],
      ["CNI_NETNS missing", 4, call("ADD", pod, conf(), { netns: undefined })],
      ["CNI_NETNS names no namespace", 3, call("ADD", pod, conf(), { netns: "/var/run/netns/wasp-t-none" })],
      ["podCIDR not a CIDR", 7, call("ADD", pod, conf({ podCIDR: "10.244.1.0/33" }))],
    ];
    for (const [what, code, p] of cases) {
      const r = await p;
      assert.equal(r.exitCode, 1, what);
      assert.equal(r.json?.code, code, `${what}: ${r.stdout}`);
      assert.equal(typeof r.json.msg, "string");
    }
    assert.deepEqual(waspLinks(node), []);
    assert.deepEqual(links(pod).map((l) => l.ifname), ["lo"]);
    assert.deepEqual(records(), []);
  });

  it("ADD into an exhausted /30 pool fails with code 11 (try again later) and leaves no veth and no record", async () => {
    const c30 = conf({ podCIDR: "10.244.1.0/30" });
    const p1 = makeNs("pod"), p2 = makeNs("pod");
    assert.equal((await call("ADD", p1, c30)).exitCode, 0);
    const r = await call("ADD", p2, c30);
    assert.equal(r.exitCode, 1);
    assert.equal(r.json.code, 11);
    assert.match(r.json.msg, /no free address in 10\.244\.1\.0\/30/);
    assert.deepEqual(waspLinks(node), [hostVethName(`cid-${p1}`, "eth0")]);
    assert.deepEqual(links(p2).map((l) => l.ifname), ["lo"]);
    assert.deepEqual(records(), ["10.244.1.2"]);
  });

  it("a failure after the address is claimed (eth0 already in the pod) is undone: record released, no veth", async () => {
    const pod = makeNs("pod");
    ip(pod, "link", "add", "eth0", "type", "bridge");
    const r = await call("ADD", pod, conf());
    assert.equal(r.exitCode, 1);
    assert.match(r.json.msg, /cannot create veth .* <-> eth0/);
    assert.deepEqual(records(), []);
    assert.deepEqual(waspLinks(node), []);
  });

  describe("cross-check with Debian's reference plugins (bridge + host-local, portmap)", () => {
    const refConf = () => ({
      cniVersion: "1.0.0", name: "refnet", type: "bridge", bridge: "rcbr0", isGateway: true, ipMasq: false,
      ipam: { type: "host-local", dataDir, ranges: [[{ subnet: "10.244.7.0/24" }]], routes: [{ dst: "0.0.0.0/0" }] },
    });
    const ref = (command: string, pod: string | undefined, config: unknown, over: Partial<CniCall> = {}) =>
      execPlugin(`${REF}/bridge`, { command, containerId: `cid-${pod ?? "none"}`, netns: pod ? `/var/run/netns/${pod}` : "", ifname: "eth0", path: cniPath, config, nodeNs: node, ...over });

    it("1.0.0 results parse the same way: same top-level keys, interfaces {name, mac[, sandbox]}, ips {address, gateway, interface -> the sandboxed eth0}", async () => {
      const pw = makeNs("pod"), pr = makeNs("pod");
      const w = (await call("ADD", pw, conf())).json, b = (await ref("ADD", pr, refConf())).json;
      const shape = (res: any) => ({
        keys: Object.keys(res).filter((k) => k !== "routes").sort(), // bridge omits routes when host-local has none to give
        ifKeys: res.interfaces.map((i: object) => Object.keys(i).sort().join(",")),
        ipKeys: res.ips.map((i: object) => Object.keys(i).sort().join(",")),
        ipIfIsSandboxEth0: res.ips.every((i: { interface: number }) => res.interfaces[i.interface].name === "eth0" && !!res.interfaces[i.interface].sandbox),
      });
      const sw = shape(w), sb = shape(b);
      assert.deepEqual(sw.keys, sb.keys);
      assert.deepEqual(sw.ipKeys, sb.ipKeys);
      assert.ok(sw.ipIfIsSandboxEth0 && sb.ipIfIsSandboxEth0, `ips[].interface is the sandboxed eth0 in both: ${JSON.stringify({ wasp: w, reference: b })}`);
      assert.deepEqual(sw.ifKeys.at(-1), sb.ifKeys.at(-1)); // the pod interface: mac,name,sandbox
      assert.ok(new Set([...sw.ifKeys.slice(0, -1), ...sb.ifKeys.slice(0, -1)]).size === 1, `host-side interfaces have the same keys in both: ${JSON.stringify([sw.ifKeys, sb.ifKeys])}`); // host-side ones: mac,name
      assert.equal(w.cniVersion, b.cniVersion);
    });

    it("error objects have the same shape and code for malformed JSON (6), unknown version (1), unknown command (4), missing CNI_NETNS (4)", async () => {
      const pod = makeNs("pod");
      const pairs: Array<[string, (f: typeof call) => ReturnType<typeof call>]> = [
        ["malformed JSON", (f) => f("ADD", pod, "{x")],
        ["unknown version", (f) => f("ADD", pod, { ...(f === call ? conf() : refConf()), cniVersion: "9.9.9" })],
        ["unknown command", (f) => f("FOO", pod, f === call ? conf() : refConf())],
        ["missing CNI_NETNS", (f) => f("ADD", pod, f === call ? conf() : refConf(), { netns: undefined })],
      ];
      for (const [what, mk] of pairs) {
        const w = await mk(call), b = await mk(ref);
        assert.equal(w.exitCode, 1, what);
        assert.equal(b.exitCode, 1, what);
        assert.equal(w.json.code, b.json.code, `${what}: wasp ${w.stdout} vs reference ${b.stdout}`);
        assert.equal(typeof w.json.msg, typeof b.json.msg);
        for (const k of Object.keys(b.json)) assert.ok(k in w.json, `${what}: wasp's error lacks ${k}`);
      }
    });

    it("VERSION answers like the reference's: {cniVersion, supportedVersions}, with 0.4.0 and 1.0.0 in both lists", async () => {
      const w = await execPlugin(WASP, { command: "VERSION", config: { cniVersion: "1.0.0" }, nodeNs: node });
      const b = await execPlugin(`${REF}/bridge`, { command: "VERSION", config: { cniVersion: "1.0.0" }, nodeNs: node });
      assert.deepEqual(Object.keys(w.json).sort(), Object.keys(b.json).sort());
      assert.equal(w.json.cniVersion, b.json.cniVersion);
      for (const v of ["0.4.0", "1.0.0"]) assert.ok(w.json.supportedVersions.includes(v) && b.json.supportedVersions.includes(v), `${v} supported by both: ${JSON.stringify([w.json, b.json])}`);
      assert.deepEqual(w.json.supportedVersions, ["0.4.0", "1.0.0", "1.1.0"]);
    });

    it("DEL without ADD and a repeated DEL: both plugins exit 0 with empty stdout", async () => {
      const pod = makeNs("pod");
      for (const f of [call, ref]) {
        const c = f === call ? conf() : refConf();
        for (let i = 0; i < 2; i++) {
          const r = await f("DEL", pod, c);
          assert.equal(r.exitCode, 0, r.stdout);
          assert.equal(r.stdout.trim(), "");
        }
      }
    });

    it("conflist wasp -> portmap (1.0.0): portmap takes wasp's result as prevResult, DNATs hostPort to the pod in the node namespace only, and DEL in reverse removes it all", async () => {
      const pod = makeNs("pod");
      const list: Conflist = {
        cniVersion: "1.0.0", name: "waspnet",
        plugins: [
          { type: "wasp", podCIDR: "10.244.1.0/24", dataDir },
          { type: "portmap", capabilities: { portMappings: true }, snat: true },
        ],
      };
      const at = { containerId: `cid-${pod}`, netns: `/var/run/netns/${pod}`, ifname: "eth0", path: cniPath, nodeNs: node };
      const caps = { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: "tcp" }] };
      const rootNat = () => sh("iptables-save", ["-t", "nat"]).split("\n").filter((l) => !l.startsWith("#")).join("\n");
      const rootNatBefore = rootNat();

      const add = await addList(list, at, caps);
      assert.ok(add.ok, JSON.stringify(add.steps.map((s) => s.outcome.stdout)));
      const [wasp, portmap] = add.steps.map((s) => s.outcome.json);
      assert.deepEqual(portmap, wasp, "portmap passes wasp's result through unchanged");
      const nat = inNs(node, "iptables-save", "-t", "nat");
      assert.match(nat, /CNI-HOSTPORT-DNAT/);
      assert.match(nat, /--dport 18080 -j DNAT --to-destination 10\.244\.1\.2:80/);
      assert.equal(rootNat(), rootNatBefore, "the root namespace's nat table is untouched");

      const chk = await checkList(list, at, add.result, caps);
      assert.equal(chk.steps[0]!.outcome.exitCode, 0, `wasp CHECK: ${chk.steps[0]!.outcome.stdout}`);
      // Debian's portmap 1.1.1 fails CHECK on any IPv4-only attachment (it looks for the ip6tables
      // chain it never made); with the reference bridge in front it fails the same way (tried by hand).
      if (!chk.ok) assert.match(chk.steps[1]!.outcome.json.msg, /could not check ipv6 dnat/);

      const del = await delList(list, at, add.result, caps);
      assert.ok(del.ok, JSON.stringify(del.steps.map((s) => s.outcome.stdout)));
      assert.deepEqual(del.steps.map((s) => s.type), ["portmap", "wasp"]);
      assert.doesNotMatch(inNs(node, "iptables-save", "-t", "nat"), /10\.244\.1\.2:80/);
      assert.deepEqual(waspLinks(node), []);
      assert.deepEqual(records(), []);
    });
  });
});
