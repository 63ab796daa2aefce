// `wasp <command>`: argv → one call → print. Each command's module is imported when it runs, so
// `wasp status` never loads the engine and `wasp replay` never opens a socket.
import { Command, CommanderError, Option } from "commander";
import { CliError, DEFAULT_SOCKET, EXIT } from "./client.js";

export const EXIT_CODES_HELP = `
Exit codes:
  0  success (doctor: every check passed)
  1  the command ran and something is wrong: doctor found a problem, the daemon refused the
     request (an unknown service, a bad filter), a file could not be read or written
  2  usage: an unknown command or option, a missing or malformed argument
  3  the daemon is not running or does not answer on its control socket (--socket PATH)
`;

function socketOption(): Option {
  return new Option("--socket <path>", "the daemon's control socket").default(process.env.WASP_SOCKET ?? DEFAULT_SOCKET);
}

function daemonCommand(program: Command, name: string, description: string): Command {
  return program.command(name).description(description).addOption(socketOption()).option("--json", "one JSON document on stdout, for scripts");
}

type Opts = Record<string, any>;

/** The whole command tree (exported for tests: every command's help). */
export function buildProgram(): Command {
  const program = new Command("wasp");
  program
    .description("wasp: a Kubernetes node dataplane with a WebAssembly packet path.\n"
      + "With CNI_COMMAND set it is the CNI plugin; `wasp daemon` is the node datapath; the rest are operator tools.")
    .addHelpText("after", `${EXIT_CODES_HELP}\nRun \`wasp daemon --help\` for the daemon's options; \`wasp <command> --help\` for each command's.`)
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  program.command("daemon").description("run the node datapath (as root, in the node's network namespace); see wasp daemon --help")
    .helpOption(false).allowUnknownOption().allowExcessArguments();

  daemonCommand(program, "status", "mode, device, table generation, uptime, conntrack use and packet counters")
    .action(async (o: Opts) => (await import("./queries.js")).status(o.socket, !!o.json));
  daemonCommand(program, "services", "every service entry (VIP:port/protocol) with its backends, packets, bytes and new flows")
    .action(async (o: Opts) => (await import("./queries.js")).services(o.socket, !!o.json));
  daemonCommand(program, "backends", "the backends of one service: namespace/name, name, or an entry key like 10.96.0.10:80/TCP")
    .argument("<service>", "namespace/name, name, or VIP:port/PROTOCOL")
    .action(async (service: string, o: Opts) => (await import("./queries.js")).backends(o.socket, !!o.json, service));
  daemonCommand(program, "conntrack", "flows in connection tracking (forward and reply tuple, state, service, timeout)")
    .option("--filter <key=value>", "keep flows where key is value (repeatable; keys: proto src dst sport dport backend service state addr port)",
      (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--limit <n>", "show at most n flows", "1000")
    .action(async (o: Opts) => (await import("./queries.js")).conntrack(o.socket, !!o.json, o.filter, o.limit));
  daemonCommand(program, "routes", "pod prefixes the engine routes: local (wasp0) or remote (VXLAN to a node)")
    .action(async (o: Opts) => (await import("./queries.js")).routes(o.socket, !!o.json));
  daemonCommand(program, "nodes", "this node and its peers: underlay address, pod CIDR, VTEP MAC")
    .action(async (o: Opts) => (await import("./queries.js")).nodes(o.socket, !!o.json));
  daemonCommand(program, "counters", "packets by verdict, drops by reason, and the engine's other counters")
    .option("--all", "also list drop reasons that are zero")
    .action(async (o: Opts) => (await import("./queries.js")).counters(o.socket, !!o.json, !!o.all));
  daemonCommand(program, "trace", "run a crafted packet through a twin of the engine with the daemon's current tables and print each stage")
    .requiredOption("--from <pod-or-ip>", "source: an IP address, or a pod's container ID (or a unique prefix) from the IPAM records")
    .requiredOption("--to <ip:port>", "destination, e.g. 10.96.0.10:80 or [fd00::a]:80 (icmp: just the address)")
    .addOption(new Option("--proto <proto>", "protocol").choices(["tcp", "udp", "icmp"]).default("tcp"))
    .option("--sport <port>", "source port of the crafted packet", "40000")
    .option("--ipam-dir <dir>", "IPAM store to resolve a pod name in", "/var/lib/cni/networks")
    .action(async (o: Opts) => (await import("./trace.js")).trace(o));
  program.command("replay").description("feed a capture (pcap or pcapng) through the production engine offline (unprivileged): per packet what the engine did, and a summary")
    .argument("<capture>", "pcap or pcapng to replay (tcpdump -i wasp0 -Q out: what the kernel hands the engine)")
    .option("--config <file>", "node config (YAML or JSON) the engine's tables come from; default: the embedded demo config")
    .option("--out <out.pcapng>", "write, as pcapng with a comment per packet (verdict, reason), every packet the engine let out (rewritten, encapsulated, or its answer; GSO segments next to each other) and each input it dropped")
    .option("--filter <expr>", "replay only packets this tcpdump-style expression matches (host, net, port, portrange, src, dst, tcp, udp, icmp, ip, ip6, proto, not, and, or, parentheses)")
    .option("--packets <range>", "replay only these frame numbers (from 1, as tshark counts): 1-100,250,300-")
    .addOption(new Option("--from <role>", "what the capture's interfaces are: pod (wasp0: packets the kernel sent into it go in, the engine's own are left out), underlay (only VXLAN for this node), auto (VXLAN for this node as underlay, the rest as pod), skip").choices(["pod", "underlay", "auto", "skip"]).default("auto"))
    .option("--interface <id=role>", "the role of one interface: its pcapng id or name, or ifindex:N of a Linux cooked v2 capture (tcpdump -i any -y LINUX_SLL2); repeatable; wasp0 is pod unless named",
      (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--conntrack <flows.json>", "start from the flows of `wasp conntrack --json --limit 10000` on the node: a capture taken mid-flow replays as the node saw it")
    .option("--vnet-hdr-len <bytes>", "the virtio header before each LINKTYPE_USER0 (147) frame: 12 (virtio_net_hdr_v1) or 10", "12")
    .option("--list", "one line per replayed packet: verdict, reason, service entry, the tuple before and after, its packets in --out")
    .option("--json", "one JSON document on stdout: the summary and one record per replayed packet")
    .action(async (file: string, o: Opts) => (await import("./replay.js")).replay(file, o));
  program.command("top").description("a live view: packets/s, bytes/s, new flows/s, top services, drops by reason (q or Ctrl-C quits)")
    .addOption(socketOption())
    .option("--interval <sec>", "seconds between refreshes", "1")
    .option("--iterations <n>", "stop after n refreshes (0: until q or Ctrl-C; with --json: 1)", "0")
    .option("--json", "the rates over each interval as one JSON document a line, for scripts (one unless --iterations says more)")
    .action(async (o: Opts) => (await import("./top.js")).top(o));
  program.command("doctor").description("check this node for what breaks pod networking, each finding with its fix; non-zero exit when something is wrong")
    .addOption(socketOption())
    .option("--config <file>", "node config to check (CIDRs, MTU, VXLAN port); default: ask the running daemon")
    .option("--ipam-dir <dir>", "IPAM store (one file per address, per network); default: /var/lib/cni/networks, every wasp conflist's dataDir and those of the networks the daemon served")
    .option("--cni-conf-dir <dir>", "CNI config dir holding the wasp conflist (its MTU, pod CIDR, store, cniSocket); default: /etc/cni/net.d")
    .option("--dev-tun <path>", "the TUN device node", "/dev/net/tun")
    .option("--proc-sys <dir>", "where the sysctls are read", "/proc/sys")
    .option("--json", "one JSON document on stdout, for scripts")
    .action(async (o: Opts) => (await import("./doctor.js")).doctor(o));
  for (const c of program.commands) c.exitOverride().showHelpAfterError("(run with --help for usage)");
  return program;
}

/** Runs `wasp ARGV`; failures set process.exitCode (nothing calls process.exit). */
export async function runCli(argv: readonly string[]): Promise<void> {
  if (argv[0] === "daemon") {
    const { runDaemon } = await import("../daemon/index.js");
    await runDaemon(argv.slice(1));
    return;
  }
  // `wasp conntrack | head`: a reader that leaves early is not an error
  process.stdout.on("error", (e: NodeJS.ErrnoException) => { if (e.code !== "EPIPE") throw e; });
  const program = buildProgram();
  if (argv.length === 0) {
    process.stdout.write(program.helpInformation());
    process.stdout.write(`${EXIT_CODES_HELP}`);
    return;
  }
  try {
    await program.parseAsync([...argv], { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.code === "commander.helpDisplayed" || e.code === "commander.help" || e.code === "commander.version" ? EXIT.OK : EXIT.USAGE;
    } else if (e instanceof CliError) {
      process.stderr.write(`wasp ${argv[0]}: ${e.message}\n`);
      process.exitCode = e.exitCode;
    } else {
      process.stderr.write(`wasp ${argv[0]}: ${(e as Error).stack ?? e}\n`);
      process.exitCode = EXIT.FAILED;
    }
  }
}
