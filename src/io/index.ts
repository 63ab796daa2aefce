// TUN/TAP devices and the VXLAN underlay socket, batched into wasm memory; errno → sentence.
export { TunDevice, type TunOptions } from "./tun.js";
export { UnderlaySocket, type UnderlayOptions } from "./underlay.js";
export { IoError, errnoCode, errnoWords, ioError } from "./errno.js";
export { type BatchMemory } from "./memory.js";
export { addonPath } from "./native.js";
export { ConntrackSocket } from "./conntrack.js";
