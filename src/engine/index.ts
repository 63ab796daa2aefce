export * from "./abi.js";
export { Engine, addr16, macBytes, parseIpv4, defaultWasmPath } from "./engine.js";
export type { EngineOptions, SlotView, EngineCounters, NamedCounters } from "./engine.js";
