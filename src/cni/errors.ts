// CNI spec 1.1, "Error": codes 0-99 are the well-known ones, 100+ belong to the plugin.
export const enum Code {
  IncompatibleVersion = 1,
  UnsupportedField = 2,
  UnknownContainer = 3,
  InvalidEnv = 4,
  Io = 5,
  Decoding = 6,
  InvalidConfig = 7,
  TryAgainLater = 11,
  NotAvailable = 50,
  LimitedConnectivity = 51,
  // wasp's own
  CheckMismatch = 100,
  Internal = 999, // the reference plugins' "internal" code, for failures no other code describes
}

export class CniError extends Error {
  constructor(readonly code: number, readonly msg: string, readonly details?: string) {
    super(msg);
  }
}

export interface ErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export function errorJson(e: CniError, cniVersion: string): ErrorJson {
  return { cniVersion, code: e.code, msg: e.msg, ...(e.details ? { details: e.details } : {}) };
}
