// The wasm memory the batch lives in. memory.buffer is taken at every call: a grow() detaches
// the old ArrayBuffer, and the addon must never hold on to a stale one.

/** Either the instance's WebAssembly.Memory or its current buffer. */
export type BatchMemory = WebAssembly.Memory | ArrayBuffer;

export function bufferOf(memory: BatchMemory): ArrayBuffer {
  return memory instanceof ArrayBuffer ? memory : memory.buffer;
}

/** The error for -EFAULT from the addon: a slot points outside memory; nothing was transferred. */
export function slotsOutsideMemory(op: string, thing: string, buffer: ArrayBuffer, slotsAddr: number,
  count: number): RangeError {
  const err = new RangeError(`${op} on ${thing} refused: the ${count} slots at ${slotsAddr}, or a ` +
    `packet buffer they name, lie outside the wasm memory (${buffer.byteLength} bytes); nothing was ` +
    "transferred. Fill data, bufStart and bufEnd of every slot inside the memory");
  (err as RangeError & { code: string }).code = "EFAULT";
  return err;
}
