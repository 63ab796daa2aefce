// Reloads run one at a time, in the order their configs came; each caller gets a promise that
// settles when its config is in force (or was turned down), so nobody polls for it.
import type { ConfigEvent } from "../config/index.js";

/** applied: a new generation or node picture; unchanged: the same tables, now the config in force;
 *  rejected: turned down with the reason logged, the running tables stay. */
export type ReloadOutcome = "applied" | "unchanged" | "rejected";

export class ReloadQueue {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly apply: (ev: ConfigEvent) => Promise<ReloadOutcome>) {}

  /** Queues a config event; settles once it is applied. A throw from apply rejects this promise
   *  only: the queue goes on with the next event. */
  push(ev: ConfigEvent): Promise<ReloadOutcome> {
    const done = this.tail.then(() => this.apply(ev));
    this.tail = done.catch(() => undefined);
    return done;
  }

  /** Settles when every event queued so far has been handled. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
