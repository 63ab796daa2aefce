// The CLI's pure parts and the offline commands, without a daemon: the command tree's help, the
// argument parsers, the pcap
// reader (fed by the tests' own independent writer), replay through the engine (its output decoded by
// tshark), and top's rates.
import { strict as assert } from "node:assert";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildProgram } from "../../../src/cli/index.js";
import { CliError, EXIT } from "../../../src/cli/client.js";
import { readCapture, readPcap } from "../../../src/cli/pcap.js";
import { matchService, parseFilters, type ServiceRow } from "../../../src/cli/queries.js";
import { runReplay } from "../../../src/cli/replay.js";
import { rates, render } from "../../../src/cli/top.js";
import { plural } from "../../../src/cli/format.js";
import { parseTarget, summarize } from "../../../src/cli/trace.js";
import { checksumsOk, packet, TCP } from "../../helpers/packets.js";
import { LINKTYPE_ETHERNET, LINKTYPE_RAW, pcapBytes, writePcap } from "../../helpers/pcap.js";
import { dissect, CHECKSUM_GOOD } from "../../helpers/tshark.js";

const DAEMON_COMMANDS = ["status", "services", "backends", "conntrack", "routes", "nodes", "counters", "trace"];

describe("wasp CLI (unit)", () => {
  describe("the command tree", () => {
    it("every command has help with its usage and a description; every daemon command takes --socket PATH and --json", () => {
      const program = buildProgram();
      const names = program.commands.map((c) => c.name());
      assert.deepEqual(names.sort(), [...DAEMON_COMMANDS, "daemon", "doctor", "replay", "top"].sort());
      for (const c of program.commands.filter((x) => x.name() !== "daemon")) {
        const help = c.helpInformation();
        assert.match(help, new RegExp(`^Usage: wasp ${c.name()} `), c.name());
        assert.ok(c.description().length > 20, c.name());
        if (DAEMON_COMMANDS.includes(c.name())) {
          assert.match(help, /--socket <path> +the daemon's control socket/, c.name());
          assert.match(help.replace(/\s+/g, " "), /\(default: "\/run\/wasp\/wasp\.sock"\)/, c.name());
          assert.match(help, /--json/, c.name());
        }
      }
      assert.match(program.helpInformation(), /^Usage: wasp \[options\] \[command\]/);
    });
  });

  describe("argument parsing", () => {
    it("--filter takes key=value, repeated or comma-joined; an unknown key or a missing value is a usage error naming it", () => {
      assert.deepEqual(parseFilters(["proto=tcp", "dst=10.96.0.10,dport=80"]), { proto: "tcp", dst: "10.96.0.10", dport: "80" });
      const usage = (f: () => unknown, re: RegExp) => assert.throws(f, (e: unknown) => e instanceof CliError && e.exitCode === EXIT.USAGE && re.test(e.message));
      usage(() => parseFilters(["colour=red"]), /--filter key "colour" is unknown/);
      usage(() => parseFilters(["proto"]), /--filter "proto" is not key=value/);
      usage(() => parseFilters(["proto="]), /is not key=value/);
    });

    it("--filter values that can never match are usage errors naming the rule: dport=abc, a port over 65535, src that is no address, an unknown protocol or state", () => {
      const usage = (f: () => unknown, re: RegExp) => assert.throws(f, (e: unknown) => e instanceof CliError && e.exitCode === EXIT.USAGE && re.test(e.message));
      usage(() => parseFilters(["dport=abc"]), /^--filter dport="abc": a port is a number 0-65535$/);
      usage(() => parseFilters(["port=70000"]), /a port is a number 0-65535/);
      usage(() => parseFilters(["src=10.0.0.300"]), /^--filter src="10\.0\.0\.300": expected an IPv4 or IPv6 address$/);
      usage(() => parseFilters(["proto=sctp"]), /a protocol is one of tcp, udp, icmp, icmpv6/);
      usage(() => parseFilters(["state=OPEN"]), /a state is one of SYN_SENT, .*ESTABLISHED/);
      assert.deepEqual(parseFilters(["state=established,dport=80,addr=fd00::1,service=web"]), { state: "established", dport: "80", addr: "fd00::1", service: "web" });
    });

    it("counts take the noun's number: 1 route, 2 routes, 1 service entry, 3 service entries, 1,000 flows", () => {
      assert.deepEqual([plural(1, "route"), plural(2, "route"), plural(1, "service entry", "service entries"), plural(3, "service entry", "service entries"), plural(1000, "flow"), plural(0, "problem")],
        ["1 route", "2 routes", "1 service entry", "3 service entries", "1,000 flows", "0 problems"]);
    });

    it("--to takes IP:PORT and [IPv6]:PORT; icmp needs no port; a missing port or a bad address is a usage error", () => {
      assert.deepEqual(parseTarget("10.96.0.10:80", "tcp"), { addr: "10.96.0.10", port: 80 });
      assert.deepEqual(parseTarget("[fd00::0a]:53", "udp"), { addr: "fd00::a", port: 53 });
      assert.deepEqual(parseTarget("10.96.0.10", "icmp"), { addr: "10.96.0.10", port: 0 });
      assert.deepEqual(parseTarget("fd00::a", "icmp"), { addr: "fd00::a", port: 0 });
      assert.throws(() => parseTarget("10.96.0.10", "tcp"), /needs a port 1-65535 for tcp/);
      assert.throws(() => parseTarget("10.96.0.300:80", "tcp"), /is not IP:PORT/);
      assert.throws(() => parseTarget("10.96.0.10:70000", "udp"), /needs a port 1-65535/);
    });

    it("a service is found by entry key, namespace/name or bare name", () => {
      const row = (key: string, service: string) => ({ key, service, port: "80", kind: "ClusterIP", id: 0, select: "random", affinitySec: 0, backends: [], packets: 0, bytes: 0, newFlows: 0 }) as ServiceRow;
      const rows = [row("10.96.0.10:80/TCP", "default/web"), row("10.96.0.11:80/TCP", "prod/web"), row("10.96.0.12:53/UDP", "default/dns")];
      assert.deepEqual(matchService(rows, "web").map((r) => r.key), ["10.96.0.10:80/TCP", "10.96.0.11:80/TCP"]);
      assert.deepEqual(matchService(rows, "prod/web").map((r) => r.key), ["10.96.0.11:80/TCP"]);
      assert.deepEqual(matchService(rows, "10.96.0.12:53/udp").map((r) => r.key), ["10.96.0.12:53/UDP"]);
      assert.deepEqual(matchService(rows, "nginx"), []);
    });
  });


  describe("pcap and replay", () => {
    let dir = "";
    before(() => { dir = mkdtempSync(join(tmpdir(), "wasp-cli-unit-")); });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it("reads what an independent writer wrote, either byte order; names a file that is neither pcap nor pcapng, a cut record and a snaplen-truncated one", () => {
      const pkts = [packet({ src: "10.244.1.5", dst: "10.96.0.10" }, { proto: "tcp", sport: 1234, dport: 80 }), packet({ src: "10.244.1.5", dst: "10.96.0.53" }, { proto: "udp", sport: 5, dport: 53 })];
      const le = pcapBytes(pkts, LINKTYPE_RAW);
      const r = readPcap(le, "x.pcap");
      assert.equal(r.linktype, LINKTYPE_RAW);
      assert.deepEqual(r.records.map((x) => Buffer.from(x.data).toString("hex")), pkts.map((p) => Buffer.from(p).toString("hex")));
      assert.deepEqual(r.records.map((x) => x.sec), [1_700_000_000, 1_700_000_001]);
      // the same file big-endian: swap every header field
      const be = Buffer.from(le), v = new DataView(be.buffer, be.byteOffset);
      v.setUint32(0, 0xa1b2c3d4, false); v.setUint16(4, 2, false); v.setUint16(6, 4, false); v.setUint32(16, 262144, false); v.setUint32(20, LINKTYPE_RAW, false);
      for (let o = 24, i = 0; i < pkts.length; i++) {
        const n = pkts[i]!.length;
        v.setUint32(o, 1_700_000_000 + i, false); v.setUint32(o + 4, 0, false); v.setUint32(o + 8, n, false); v.setUint32(o + 12, n, false);
        o += 16 + n;
      }
      assert.deepEqual(readPcap(be, "be.pcap").records.map((x) => x.data.length), pkts.map((p) => p.length));
      assert.throws(() => readCapture(Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, ...Array(24).fill(0)]), "a.out"), /a\.out is neither a pcap nor a pcapng file \(magic 0x464c457f\)/);
      assert.throws(() => readPcap(le.subarray(0, le.length - 3), "cut.pcap"), /cut\.pcap: record 2 is cut short/);
      const trunc = Buffer.from(le);
      trunc.writeUInt32LE(pkts[0]!.length + 10, 24 + 12);
      assert.throws(() => readPcap(trunc, "t.pcap"), /record 1 was truncated by the capture's snaplen .*tcpdump -s 0/);
    });

    it("replay on the embedded config: a SYN to web is DNATed to a web backend (tshark reads the output), a port no service has is answered with a RST, a bad IPv4 checksum is dropped; Ethernet captures too", async () => {
      const syn = packet({ src: "10.244.1.20", dst: "10.96.0.10", ttl: 63 }, { proto: "tcp", sport: 41000, dport: 80, flags: TCP.SYN });
      const noSvc = packet({ src: "10.244.1.20", dst: "10.96.0.10", ttl: 63 }, { proto: "tcp", sport: 41001, dport: 81, flags: TCP.SYN });
      const bad = packet({ src: "10.244.1.20", dst: "10.244.1.12", ttl: 63 }, { proto: "udp", sport: 5, dport: 53 });
      bad[10] = bad[10]! ^ 0xff;
      const inRaw = join(dir, "in.pcap"), outRaw = join(dir, "out.pcapng");
      writePcap(inRaw, [syn, noSvc, bad], LINKTYPE_RAW);
      const s = await runReplay(inRaw, undefined, outRaw);
      assert.deepEqual(s.verdicts, { tun: 2, drop: 1 });
      assert.deepEqual(s.drops, { no_service: 1, bad_ipv4_checksum: 1 });
      assert.equal(s.newFlows, 1);
      assert.deepEqual(s.services, { "default/web:80": 1 });
      assert.deepEqual(s.out, { file: outRaw, packets: 2, dropped: 1 });
      const d = dissect(readCapture(readFileSync(outRaw), "out").records.map((r) => r.data));
      assert.ok(["10.244.1.10", "10.244.1.11"].includes(d[0]!.get("ip.dst")!), d[0]!.get("ip.dst"));
      assert.equal(d[0]!.get("tcp.dstport"), "8080");
      assert.equal(d[0]!.get("tcp.checksum.status"), CHECKSUM_GOOD);
      assert.equal(d[1]!.get("ip.src"), "10.96.0.10");
      assert.equal(d[1]!.get("tcp.flags.reset"), "1");
      // the same packets captured on an Ethernet interface replay alike
      const eth = (p: Uint8Array) => Uint8Array.from([...Array(12).fill(2), 0x08, 0x00, ...p]);
      const inEth = join(dir, "eth.pcap");
      writeFileSync(inEth, pcapBytes([syn, noSvc, bad].map(eth), LINKTYPE_ETHERNET));
      const e = await runReplay(inEth, undefined, undefined);
      assert.deepEqual([e.verdicts, e.drops], [s.verdicts, s.drops]);
    });

    it("replay names an unreadable file and a link type it cannot replay", async () => {
      await assert.rejects(runReplay(join(dir, "none.pcap"), undefined, undefined), /cannot read .*none\.pcap: ENOENT/);
      const f = join(dir, "usb.pcap");
      writeFileSync(f, pcapBytes([Uint8Array.from([1, 2, 3])], 189));
      await assert.rejects(runReplay(f, undefined, undefined), /link type 189 is not one wasp replays/);
    });
  });

  describe("top", () => {
    it("rates are the counter differences over the time between two samples; the busiest service is first", () => {
      const status = (pk: number, by: number, nf: number, drop: number) => ({
        mode: "tun", device: "wasp0", ioUring: false, address: "10.244.1.1", node: "node-a", generation: 3, uptimeSec: 61, services: 2,
        conntrack: { entries: 7, capacity: 262144 }, pathDrops: { tun_queue_full: 3, write_refused: 0 },
        counters: { verdicts: { tun: pk, overlay: 0, host: 0, drop }, drops: { no_backend: drop }, named: { packets_in: pk + drop, bytes_in: by, new_flows: nf } },
      });
      const svc = (key: string, packets: number) => ({ key, service: `default/${key}`, port: "80", kind: "ClusterIP", id: 0, select: "random", affinitySec: 0, backends: [], packets, bytes: packets * 100, newFlows: 0 });
      const a = { at: 1000, status: status(100, 10_000, 10, 1), services: [svc("a", 10), svc("b", 50)] };
      const b = { at: 3000, status: status(300, 30_480, 30, 5), services: [svc("a", 410), svc("b", 60)] };
      const screen = render(a as any, b as any, 200);
      assert.match(screen, /^wasp top - node node-a, tun mode, generation 3, up 1m1s/);
      assert.match(screen, /^packets\/s 102 +bytes\/s 10\.0 KiB +new flows\/s 10 +conntrack 7 \/ 262,144$/m);
      assert.match(screen, /^verdicts\/s: tun 100 +overlay 0 +host 0 +drop 2$/m);
      const lines = screen.split("\n"), head = lines.findIndex((l) => l.startsWith("SERVICE"));
      assert.match(lines[head + 1]!, /^default\/a +80 +a +200 +19\.5 KiB +0 +410$/);
      assert.match(screen, /^no_backend +2 +5$/m);
      // --json: the same rates as data
      const r = rates(a as any, b as any);
      assert.deepEqual([r.packetsPerSec, r.bytesPerSec, r.newFlowsPerSec, r.intervalSec, r.verdictsPerSec], [102, 10240, 10, 2, { tun: 100, overlay: 0, host: 0, drop: 2 }]);
      assert.deepEqual(r.services[0], { service: "default/a", port: "80", entry: "a", packetsPerSec: 200, bytesPerSec: 20000, newFlowsPerSec: 0, packets: 410 });
      assert.deepEqual(r.drops, [{ reason: "no_backend", perSec: 2, total: 5 }]);
    });
  });
  describe("trace's answer", () => {
    it("the one-line result names a refusal, a drop and a delivery with its rewritten tuple", () => {
      const base = { generation: 1, packet: { proto: "tcp", src: "10.244.1.5", sport: 40000, dst: "10.96.0.30", dport: 80 }, stages: [], notes: [] as string[], service: "" };
      assert.match(summarize({ ...base, verdict: "tun", reason: "no_backend", notes: ["reply_made"] }), /no ready backend, the engine answers a TCP RST/);
      assert.match(summarize({ ...base, verdict: "drop", reason: "martian" }), /^dropped: martian$/);
      assert.equal(summarize({ ...base, verdict: "tun", reason: "none", output: { src: "10.244.1.5", sport: 40000, dst: "10.244.1.10", dport: 8080, len: 40 } }),
        "delivered through wasp0 as 10.244.1.5:40000 -> 10.244.1.10:8080");
    });
  });
});
