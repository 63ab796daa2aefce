// src/netlink/ against the kernel, read back with iproute2 (`ip -j`): the messages the CNI plugin
// sends instead of running `ip` do what the equivalent `ip` commands do. Both namespaces are the
// test's own, addressed by path as CNI_NETNS is.
import assert from "node:assert/strict";
import { closeSync, openSync } from "node:fs";
import { NetlinkError, withRtnl } from "../../src/netlink/rtnl.js";
import { deleteAllNs, ip, makeNs } from "../helpers/netns.js";

describe("netlink: rtnetlink requests checked with iproute2 (integration, needs root)", function () {
  this.timeout(30_000);
  after(() => deleteAllNs());
  const path = (ns: string) => `/var/run/netns/${ns}`;
  const json = (ns: string, ...args: string[]) => JSON.parse(ip(ns, "-j", ...args));

  it("makes a veth whose peer is born in another namespace with its name, MTU and MAC; addresses, routes and a permanent neighbour as `ip` shows them", async () => {
    const host = makeNs("nlh"), pod = makeNs("nlp");
    const fd = openSync(path(pod), "r");
    try {
      await withRtnl(path(host), async (nl) => {
        await nl.addVeth({ name: "vh0", mtu: 1450, mac: "02:00:00:00:00:01", peer: { name: "eth0", mtu: 1450, mac: "02:00:00:00:00:02", netnsFd: fd } });
        const i = (await nl.linkIndex("vh0"))!;
        await nl.addAddr(i, "vh0", "fe80::1", 64, { nodad: true });
        await nl.linkUp(i, "vh0");
        await nl.addRoute({ dst: "10.244.1.2", prefix: 32, oif: i, scope: "link", replace: true }, "vh0");
        await nl.addRoute({ dst: "10.244.1.2", prefix: 32, oif: i, scope: "link", replace: true }, "vh0"); // replace twice: no error
        await nl.addRoute({ dst: "fd00::2", prefix: 128, oif: i, replace: true }, "vh0");
      });
    } finally {
      closeSync(fd);
    }
    await withRtnl(path(pod), async (nl) => {
      const i = (await nl.linkIndex("eth0"))!;
      await nl.addAddr(i, "eth0", "10.244.1.2", 32);
      await nl.addAddr(i, "eth0", "fd00::2", 128, { nodad: true });
      await nl.linkUp(i, "eth0");
      await nl.addRoute({ dst: "169.254.1.1", prefix: 32, oif: i, scope: "link" }, "eth0");
      await nl.addRoute({ dst: "0.0.0.0", prefix: 0, gateway: "169.254.1.1", oif: i, onlink: true }, "eth0");
      await nl.addRoute({ dst: "::", prefix: 0, gateway: "fe80::1", oif: i, onlink: true }, "eth0");
      await nl.replaceNeigh(i, "eth0", "169.254.1.1", "02:00:00:00:00:01");
    });

    const [h] = json(host, "addr", "show", "dev", "vh0");
    assert.equal(h.mtu, 1450);
    assert.equal(h.address, "02:00:00:00:00:01");
    assert.ok(h.flags.includes("UP"), `vh0 is UP: ${h.flags}`);
    assert.ok(h.addr_info.some((a: { local: string; prefixlen: number }) => a.local === "fe80::1" && a.prefixlen === 64), `vh0 holds fe80::1/64: ${JSON.stringify(h.addr_info)}`);
    assert.match(ip(host, "-4", "route", "show"), /^10\.244\.1\.2 dev vh0 scope link/m);
    assert.match(ip(host, "-6", "route", "show"), /^fd00::2 dev vh0/m);

    const [p] = json(pod, "addr", "show", "dev", "eth0");
    assert.equal(p.mtu, 1450);
    assert.equal(p.address, "02:00:00:00:00:02");
    assert.equal(p.link_type, "ether");
    assert.ok(p.addr_info.some((a: { local: string; prefixlen: number }) => a.local === "10.244.1.2" && a.prefixlen === 32), `eth0 holds 10.244.1.2/32: ${JSON.stringify(p.addr_info)}`);
    assert.ok(p.addr_info.some((a: { local: string; prefixlen: number }) => a.local === "fd00::2" && a.prefixlen === 128), `eth0 holds fd00::2/128: ${JSON.stringify(p.addr_info)}`);
    assert.match(ip(pod, "-4", "route", "show"), /^default via 169\.254\.1\.1 dev eth0 onlink/m);
    assert.match(ip(pod, "-4", "route", "show"), /^169\.254\.1\.1 dev eth0 scope link/m);
    assert.match(ip(pod, "-6", "route", "show"), /^default via fe80::1 dev eth0 .*onlink/m);
    assert.match(ip(pod, "neigh", "show", "dev", "eth0"), /^169\.254\.1\.1 lladdr 02:00:00:00:00:01 PERMANENT/m);

    // Deleting one end removes the pair; a second delete says "already gone" instead of failing.
    assert.equal(await withRtnl(path(host), (nl) => nl.delLink("vh0")), true);
    assert.equal(await withRtnl(path(host), (nl) => nl.delLink("vh0")), false);
    assert.deepEqual(json(pod, "link", "show").map((l: { ifname: string }) => l.ifname), ["lo"]);
  });

  it("a refusal names the request, the errno and the kernel's own words", async () => {
    const ns = makeNs("nle");
    await withRtnl(path(ns), async (nl) => {
      assert.equal(await nl.linkIndex("nope0"), undefined);
      const lo = (await nl.linkIndex("lo"))!;
      await nl.addAddr(lo, "lo", "10.9.9.9", 32);
      await assert.rejects(nl.addAddr(lo, "lo", "10.9.9.9", 32), (e: unknown) =>
        e instanceof NetlinkError && /cannot add 10\.9\.9\.9\/32 to lo in \/var\/run\/netns\/.*: file exists \(EEXIST\)/.test(e.message));
      await assert.rejects(nl.addRoute({ dst: "10.1.0.0", prefix: 16, oif: 99999, replace: true }, "ghost0"), (e: unknown) =>
        e instanceof NetlinkError && /cannot replace the route 10\.1\.0\.0\/16 dev ghost0/.test(e.message) && e.errno === 19);
      // extended acks: the kernel's sentence in parentheses
      await assert.rejects(nl.addAddr(lo, "lo", "10.9.9.8", 33), /cannot add 10\.9\.9\.8\/33 to lo .*: invalid argument \(EINVAL\) \(ipv4: Invalid prefix length\)$/);
      await assert.rejects(nl.addRoute({ dst: "10.1.0.0", prefix: 8, oif: lo }, "lo"), /invalid argument \(EINVAL\) \(Invalid prefix for given prefix length\)$/);
    });
    await assert.rejects(withRtnl("/var/run/netns/wasp-no-such-ns", async () => undefined), /cannot open rtnetlink in \/var\/run\/netns\/wasp-no-such-ns \(netns\): no such file \(ENOENT\)/);
  });
});
