// Routing: longest prefix match over local and remote pod CIDRs; everything else goes to the host.
import assert from "node:assert/strict";
import { packet, parse } from "../../helpers/packets.js";
import { OpWriter } from "../../helpers/ops.js";
import { newEngine, clusterRoutes, commit, run, runOne, expectVerdict, Verdict, NODE2 } from "./setup.js";
import { parseIpv4 } from "../../../src/model/addr.js";

const from = "10.244.1.5";
const to = (dst: string) => packet({ src: from, dst }, { proto: "udp", sport: 1000, dport: 2000 });

describe("pipeline: routes", () => {
  let e: ReturnType<typeof newEngine>;
  beforeEach(() => { e = newEngine(); commit(e, clusterRoutes()); });

  it("a local /24 goes to the TUN with TTL decremented", () => {
    const o = runOne(e, to("10.244.1.9"));
    expectVerdict(o, Verdict.Tun);
    assert.equal(parse(o.bytes).ttl, 63);
  });

  it("a remote /24 goes to the overlay with peer = that node's underlay IPv4 (host order)", () => {
    const o = runOne(e, to("10.244.2.9"));
    expectVerdict(o, Verdict.Overlay);
    assert.equal(o.slot.peer, parseIpv4(NODE2));
  });

  it("the longest prefix wins: a /32 Local inside a remote /24, and a /25 Remote inside a local /24", () => {
    commit(e, clusterRoutes().route("10.244.2.9", 32, 0).route("10.244.1.128", 25, 1, parseIpv4("192.168.100.3")));
    const [a, b, c, d] = run(e, [to("10.244.2.9"), to("10.244.2.10"), to("10.244.1.200"), to("10.244.1.100")]);
    expectVerdict(a!, Verdict.Tun);
    expectVerdict(b!, Verdict.Overlay);
    expectVerdict(c!, Verdict.Overlay); assert.equal(c!.slot.peer, parseIpv4("192.168.100.3"));
    expectVerdict(d!, Verdict.Tun);
  });

  it("no route: back to the host unchanged (TTL too)", () => {
    const p = to("8.8.8.8");
    const o = runOne(e, p);
    expectVerdict(o, Verdict.Host);
    assert.deepEqual([...o.bytes], [...p]);
  });

  it("deleting the /32 falls back to the /24; deleting the /24 sends to the host", () => {
    commit(e, clusterRoutes().route("10.244.2.9", 32, 0));
    expectVerdict(runOne(e, to("10.244.2.9")), Verdict.Tun);
    commit(e, new OpWriter().deleteRoute("10.244.2.9", 32));
    expectVerdict(runOne(e, to("10.244.2.9")), Verdict.Overlay);
    commit(e, new OpWriter().deleteRoute("10.244.2.0", 24));
    expectVerdict(runOne(e, to("10.244.2.9")), Verdict.Host);
    assert.equal(e.checkInvariants(), 0);
  });

  it("an upsert replaces a route: Remote becomes Local", () => {
    commit(e, new OpWriter().route("10.244.2.0", 24, 0));
    expectVerdict(runOne(e, to("10.244.2.9")), Verdict.Tun);
    assert.equal(e.exports.routeCount(), 4);
  });

  it("a /0 default route catches what nothing longer does", () => {
    commit(e, clusterRoutes().route("0.0.0.0", 0, 1, parseIpv4("192.168.100.9")));
    const o = runOne(e, to("8.8.8.8"));
    expectVerdict(o, Verdict.Overlay);
    assert.equal(o.slot.peer, parseIpv4("192.168.100.9"));
    expectVerdict(runOne(e, to("10.244.1.9")), Verdict.Tun);
  });

  it("drops martian sources (network 0, loopback, multicast, class E, limited broadcast) as Martian (RFC 1812 §5.3.7)", () => {
    for (const src of ["0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.5", "239.1.1.1", "240.0.0.1", "255.255.255.255"]) {
      const o = runOne(e, packet({ src, dst: "10.244.1.9" }, { proto: "udp", sport: 1, dport: 2 }));
      expectVerdict(o, Verdict.Drop);
      assert.equal(o.slot.reason, 21);
    }
  });

  it("drops IPv6 packets from the unspecified (::), loopback (::1) or a multicast source as Martian (RFC 4291 §2.5.2)", () => {
    for (const src of ["::", "::1", "ff02::1"]) {
      const o = runOne(e, packet({ src, dst: "fd44:0:0:1::9" }, { proto: "udp", sport: 1, dport: 2 }));
      expectVerdict(o, Verdict.Drop);
      assert.equal(o.slot.reason, 21, src);
    }
  });

  it("a DHCP discover (0.0.0.0 -> 255.255.255.255) is the host's: handed back, not dropped", () => {
    const p = packet({ src: "0.0.0.0", dst: "255.255.255.255" }, { proto: "udp", sport: 68, dport: 67 });
    expectVerdict(runOne(e, p), Verdict.Host);
  });
});
