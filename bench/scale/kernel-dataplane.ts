// A kube-proxy mode as the scale benchmark runs it: commands that program the kernel (a load from
// nothing, then the two updates), each under the bound, with the kernel memory the load took and the
// same traffic as every dataplane. bench/scale/dataplanes/iptables.ts, nftables.ts and ipvs.ts say
// only which commands.
import { target, type Ctx, type Dataplane } from "./dataplane.js";
import { boundedStep, kernelKib, settle, traffic, updates, type Command } from "./measure.js";
import type { ScaleService } from "./rules.js";

export interface KernelMode {
  name: string;
  color: string;
  available?: Dataplane["available"];
  once?: Dataplane["once"];
  /** What the node needs before the rules (ipvs: the dummy device). */
  prepare?(c: Ctx): void;
  /** The commands that program `services` into a node without them, in order; load_ms is their sum. */
  load(c: Ctx, services: readonly ScaleService[]): Command[];
  /** After the load is measured, before the traffic: what kube-proxy adds once per node. */
  connect?(c: Ctx): void;
  /** The command that changes the endpoints programmed for `current` into those of `next`. */
  update(c: Ctx, current: readonly ScaleService[], next: readonly ScaleService[]): Command;
  /** Removes all that prepare, load and connect made; runs after a failure too. */
  remove(c: Ctx): Promise<void>;
}

/** load_ms and kernel_kib, the traffic, then update100_ms, lost_during_update and update_ms. */
export function kernelDataplane(mode: KernelMode): Dataplane {
  const { name } = mode;
  return {
    name, color: mode.color, available: mode.available, once: mode.once,
    async run(c, services, n, out) {
      try {
        mode.prepare?.(c);
        const k0 = kernelKib();
        let loadMs = 0;
        for (const command of mode.load(c, services)) {
          const ms = await boundedStep(c, out, "load", `${name} load of ${n} (${command.cmd})`, command);
          if (ms === undefined) return;
          loadMs += ms;
        }
        out.load_ms = loadMs;
        out.kernel_kib = kernelKib() - k0;
        mode.connect?.(c);
        out.settle_ms = await settle();
        await traffic(c, target(services).clusterIP, out);
        await updates(c, services, n, out, async (current, next, key) => {
          const ms = await boundedStep(c, out, key, `${name} ${key} at ${n}`, mode.update(c, current, next));
          if (ms !== undefined) out[`${key}_ms`] = ms;
          return ms !== undefined;
        });
      } finally {
        await mode.remove(c);
      }
    },
  };
}
