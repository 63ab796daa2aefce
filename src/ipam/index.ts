export { parseCidr, parseAddr, formatAddr, cidrSize, type Cidr, type Family } from "./cidr.js";
export { poolFromCidr, poolContains, type Pool } from "./pool.js";
export { Store, StoreError, sameOwner, formatRecord, parseRecord, ownerKey, type Owner, type Allocation } from "./store.js";
export { allocate, freeCount, PoolExhaustedError, type Allocated } from "./allocate.js";
