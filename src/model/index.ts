export {
  buildModel, buildModelAsync, deriveVtepMac, localVtepMac, IdAllocator, EMPTY_MODEL, PROTO,
  ServiceKind, Select, ServiceFlag, RouteKind,
  type Model, type ModelDelta, type ServiceEntry, type ServiceKey, type ModelBackend, type SourceRange, type Route,
} from "./model.js";
export { localEndpointTest, orderBackends, topologyPreference } from "./service-drafts.js";
export { updateModel, updateModelAsync, serviceChanges, diffModel, fullDelta, applyDelta, isEmptyDelta, goneBackends, type GoneBackend } from "./model-delta.js";
export {
  parseIp, formatIp, canonicalIp, parseCidr, formatCidr, canonicalCidr, cidrContains, cidrsOverlap, mappedPrefixLen,
  writeAddr16, readAddr16, ipv4ToU32, u32ToIpv4, isV4Mapped, ipToBigint, bigintToIp, parseMac, macBytes, formatMac, firstAddress, firstAddress6, parseIpv4,
  type Ip, type Cidr, type Family,
} from "./addr.js";
