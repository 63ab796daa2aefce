// Prometheus text on 127.0.0.1: the engine's counters, read when scraped (never per packet).
// Every metric is listed with its type, labels and meaning in the README (section Metrics).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Engine, NamedCounters } from "../engine/engine.js";
import type { PathDrops } from "./path-drops.js";
import { cniCalls } from "./cni-socket.js";

/** Drop names as the metric labels them: NoBackend -> no_backend. */
export function snake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

export interface Metrics {
  registry: Registry;
  reloadSeconds: Histogram;
  /** A reload was turned down: counted, and kept for wasp status (the tables of `generation` stay). */
  reloadRejected(generation: number, problems: readonly string[]): void;
  rejections(): Rejections;
}

/** The reloads turned down since the daemon started, and the last one: which generation stayed, when, why. */
export interface Rejections { count: number; last?: { generation: number; at: string; problems: string[] } }

/** Offload mode: the kernel's counters of the offload table (offload-net.ts), undefined otherwise. */
export type KernelOffloadCounters = () => Promise<Record<"offloaded_in" | "offloaded_out" | "loop_dropped", { packets: number; bytes: number }> | undefined>;

export function makeMetrics(engine: () => Engine, pathDrops: () => PathDrops, kernel: KernelOffloadCounters = async () => undefined): Metrics {
  const registry = new Registry();
  new Counter({
    name: "wasp_packets_total", help: "Packets the engine gave each verdict", labelNames: ["verdict"], registers: [registry],
    collect() {
      this.reset();
      for (const [v, n] of Object.entries(engine().counters().verdicts)) if (v !== "none") this.inc({ verdict: snake(v) }, n);
    },
  });
  new Counter({
    name: "wasp_packets_dropped_total", help: "Packets the engine dropped (or answered itself) by reason", labelNames: ["reason"], registers: [registry],
    collect() {
      this.reset();
      for (const [r, n] of Object.entries(engine().counters().drops)) this.inc({ reason: snake(r) }, n);
    },
  });
  // Engine counters that only grow, one metric each.
  const named: Array<[string, string, keyof NamedCounters]> = [
    ["wasp_received_bytes_total", "Bytes of the packets the engine processed (from wasp0 and the VXLAN underlay)", "bytes_in"],
    ["wasp_received_packets_total", "Packets the engine processed", "packets_in"],
    ["wasp_new_flows_total", "Connections the engine started tracking (a service matched, a backend chosen)", "new_flows"],
    ["wasp_conntrack_evicted_total", "Flows removed from a full conntrack table before their timeout", "ct_evicted"],
    ["wasp_conntrack_expired_total", "Flows removed by their timeout", "ct_expired"],
    ["wasp_conntrack_stale_udp_flushed_total", "UDP flows removed after a reload took their backend away", "stale_udp_flushed"],
    ["wasp_replies_made_total", "Answers the engine made itself (TCP RST, ICMP unreachable or time exceeded, echo reply to a VIP)", "replies_made"],
    ["wasp_icmp_errors_translated_total", "ICMP errors about a NATed flow rewritten for the flow's client", "icmp_translated"],
    ["wasp_overlay_inner_checksums_completed_total", "Decapsulated TCP/UDP packets whose sender left the checksum to offload (a partial sum): the engine completed it", "inner_csum_completed"],
    ["wasp_overlay_tunnel_gso_sent_total", "TSO packets for other nodes encapsulated once and handed to the kernel whole (UDP-tunnel GSO through the tunnel TAP) instead of cut by the engine", "tunnel_gso_sent"],
    ["wasp_overlay_tunnel_gso_received_total", "TSO packets that crossed the underlay whole and went to the pods as one GSO packet", "tunnel_gso_received"],
    ["wasp_batches_total", "Batches the engine processed (one process() call each)", "batches"],
    ["wasp_offload_flows_total", "Offload mode: flows whose NAT binding the kernel's conntrack took (its NEW acked)", "offloaded"],
    ["wasp_offload_failures_total", "Offload mode: flows whose binding the kernel refused (table full, a clash); their packet was dropped", "offload_failed"],
    ["wasp_fragments_held_total", "Later fragments to a service that came before their first fragment: held until it came (a hold that ends unreleased counts as a fragment_untracked drop)", "frag_held"],
    ["wasp_fragments_released_total", "Held fragments sent on after their first fragment", "frag_released"],
    ["wasp_offload_resent_total", "Offload mode: packets of an offloaded flow that reached the engine again (the kernel's entry was gone) and had their binding sent again", "offload_resent"],
  ];
  for (const [name, help, key] of named) {
    new Counter({ name, help, registers: [registry], collect() { this.reset(); this.inc(engine().counters().named[key]); } });
  }
  new Counter({
    name: "wasp_flows_evicted_total", help: "Flows removed from a full conntrack table before their timeout, by why (source_share: a flow of the source holding the most flows, above the mean share; oldest: no source was above it, the least recently seen flow)",
    labelNames: ["why"], registers: [registry],
    collect() {
      this.reset();
      const n = engine().counters().named;
      this.inc({ why: "source_share" }, n.ct_evicted_share);
      this.inc({ why: "oldest" }, n.ct_evicted_oldest);
    },
  });
  new Counter({
    name: "wasp_path_dropped_total", help: "Packets lost on wasp's path outside the engine, by place (tun_queue_full: wasp0's queue to wasp was full; write_refused: the kernel refused a write; underlay_rcvbuf_full, tun_rx_dropped, tunnel_tap_dropped)",
    labelNames: ["place"], registers: [registry],
    collect() { this.reset(); for (const [place, n] of Object.entries(pathDrops())) this.inc({ place }, n); },
  });
  // The engine's tables as they are now, one gauge each.
  const gauges: Array<[string, string, (e: Engine) => number]> = [
    ["wasp_conntrack_entries", "Flows in the connection tracking table", (e) => e.flowCount()],
    ["wasp_conntrack_capacity", "Flows the connection tracking table holds now (it grows with the flows, up to wasp_conntrack_ceiling)", (e) => e.flowCapacity()],
    ["wasp_conntrack_ceiling", "Flows the connection tracking table may grow to (conntrack.capacity)", (e) => e.flowCeiling()],
    ["wasp_engine_memory_bytes", "Bytes of the engine's wasm memory (its tables grow with what is loaded)", (e) => e.tablesState().memoryBytes],
    ["wasp_engine_memory_limit_bytes", "The ceiling on the engine's memory (tables.memoryMiB); 0: none", (e) => e.tablesState().limitBytes ?? 0],
    ["wasp_tables_full", "1 while the engine's tables cannot take all they were given (a memory ceiling: entries wait, or the flow table cannot grow); they serve what they hold", (e) => (e.tablesState().full ? 1 : 0)],
    ["wasp_service_entries", "Service entries (VIP or node port, port, protocol) in the engine's tables", (e) => e.serviceCount()],
    ["wasp_routes", "Pod prefixes in the engine's route table", (e) => e.routeCount()],
    ["wasp_fragments_holding", "Fragments held now for their first fragment (at most 256)", (e) => e.counters().named.frag_holding],
    ["wasp_table_generation", "Generation of the engine's tables (one per load or reload)", (e) => e.generation()],
  ];
  for (const [name, help, read] of gauges) {
    new Gauge({ name, help, registers: [registry], collect() { this.set(read(engine())); } });
  }
  new Gauge({
    name: "wasp_tables_waiting_entries", help: "Entries the engine's tables could not take yet (memory): they keep what they had for these keys",
    labelNames: ["table"], registers: [registry],
    collect() {
      const w = engine().tablesState().waiting;
      this.set({ table: "services" }, w.services); this.set({ table: "routes" }, w.routes); this.set({ table: "local_addrs" }, w.localAddrs);
    },
  });
  // Offload mode: what the kernel carried for the engine's flows (counters of the offload table, read when scraped).
  for (const unit of ["packets", "bytes"] as const) {
    new Counter({
      name: `wasp_offloaded_${unit}_total`, help: `Offload mode: ${unit} of offloaded flows the kernel carried (in: entering the node, out: sent by the node itself)`,
      labelNames: ["direction"], registers: [registry],
      async collect() {
        const k = await kernel();
        this.reset();
        if (k) { this.inc({ direction: "in" }, k.offloaded_in[unit]); this.inc({ direction: "out" }, k.offloaded_out[unit]); }
      },
    });
  }
  new Counter({
    name: "wasp_offload_loop_dropped_total", help: "Offload mode: packets written back that the kernel did not translate and would have routed into wasp0 again (the loop guard dropped them)",
    registers: [registry], async collect() { const k = await kernel(); this.reset(); this.inc(k?.loop_dropped.packets ?? 0); },
  });
  new Counter({
    name: "wasp_cni_calls_total", help: "CNI calls the daemon's CNI socket answered, or declined (each decline cost the runtime a Node start-up in wasp-node)",
    labelNames: ["outcome"], registers: [registry],
    collect() { this.reset(); this.inc({ outcome: "answered" }, cniCalls.answered); this.inc({ outcome: "declined" }, cniCalls.declined); },
  });
  const reloadSeconds = new Histogram({
    name: "wasp_reload_duration_seconds", help: "Time from a config change to its commit",
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [registry],
  });
  const rejections: Rejections = { count: 0 };
  const rejected = new Counter({ name: "wasp_reload_rejected_total", help: "Config changes turned down (invalid, or a setting that takes a restart); the running tables stayed", registers: [registry] });
  const rejectedAt = new Gauge({ name: "wasp_reload_last_rejected_timestamp_seconds", help: "When the last config change was turned down (0: never)", registers: [registry] });
  rejectedAt.set(0);
  // process_* and nodejs_* (CPU, memory, event loop lag, GC): the daemon's own health
  collectDefaultMetrics({ register: registry });
  return {
    registry, reloadSeconds,
    reloadRejected(generation, problems) {
      const now = Date.now();
      rejections.count++;
      rejections.last = { generation, at: new Date(now).toISOString(), problems: [...problems] };
      rejected.inc();
      rejectedAt.set(now / 1000);
    },
    rejections: () => rejections,
  };
}

/** Serves /metrics on host:port (port 0: any free port); resolves with the bound port. */
export function serveMetrics(registry: Registry, host: string, port: number): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.url !== "/metrics" && req.url !== "/") { res.writeHead(404).end("not found; try /metrics\n"); return; }
    registry.metrics().then((text) => {
      res.writeHead(200, { "content-type": registry.contentType }).end(text);
    }, (e: Error) => { res.writeHead(500).end(`${e.message}\n`); });
  });
  return new Promise((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(new Error(`cannot serve metrics on ${host}:${port}: ${e.code ?? e.message}. Pick another port (--metrics-port)`)));
    server.listen(port, host, () => resolve({ server, port: (server.address() as AddressInfo).port }));
  });
}
