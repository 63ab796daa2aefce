export type {
  BackendConfig, Config, ConfigChanges, NodeConfig, PeerNodeConfig, Problem, Protocol, ServiceConfig, ServicePortConfig, TrafficPolicy,
} from "./schema.js";
export { NODE_PORT_MAX, NODE_PORT_MIN, DEFAULT_AFFINITY_TIMEOUT_SEC } from "./schema.js";
export { validateConfig, validateConfigAsync, formatPath, ServiceCache } from "./validate.js";
export { parseConfigText, loadConfigText, loadConfigTextAsync, loadConfigBytesAsync, formatProblems } from "./parse.js";
export { DEFAULT_CONFIG_YAML, DEFAULT_CONFIG_RAW, defaultConfig } from "./default.js";
export { FileConfigSource, loadConfigFile, type ConfigEvent, type ConfigSource, type FileSourceOptions } from "./file-source.js";
