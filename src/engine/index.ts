export * from "./abi.js";
export { Engine, defaultWasmPath } from "./engine.js";
export { parseIpv4 } from "../model/addr.js";
export type { EngineOptions, SlotView, EngineCounters, NamedCounters } from "./engine.js";
