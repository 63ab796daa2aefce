export * from "./abi.js";
export { Engine, defaultWasmPath } from "./engine.js";
export type { EngineOptions, SlotView, EngineCounters, NamedCounters, TablesState } from "./engine.js";
