// Long computations over a whole config (validation, the model) are written as generators that
// yield between items. Run to the end at once (drain), or with breaks (drainAsync) so the daemon's
// event loop, which also reads and writes the datapath's packets, never waits on a big reload.

export type Steps<T> = Generator<void, T, void>;

/** Runs the steps to the end without a break. */
export function drain<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Runs the steps, giving the event loop a turn (setImmediate: pending I/O first) whenever about
 *  sliceMs of work has passed since the last one. */
export async function drainAsync<T>(steps: Steps<T>, sliceMs = 2): Promise<T> {
  let since = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() - since >= sliceMs) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      since = performance.now();
    }
  }
}

/** True on every 64th item: how often a loop over services offers to yield. */
export function every64(i: number): boolean {
  return (i & 63) === 63;
}
