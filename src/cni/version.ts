import { Code, CniError } from "./errors.js";

export const SUPPORTED_VERSIONS = ["0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST: CniVersion = "1.1.0";

export function isSupported(v: unknown): v is CniVersion {
  return typeof v === "string" && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** CNI spec: the VERSION result names the request's version and every version the plugin speaks. */
export function versionResult(requested: unknown): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion: typeof requested === "string" && requested !== "" ? requested : LATEST, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/** -1, 0, 1 for semantic versions "x.y.z". */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number), pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/** GC and STATUS came with spec 1.1.0; an older config must not be asked to do them. */
export function requireVersionFor(command: string, v: CniVersion, min: CniVersion): void {
  if (compareVersions(v, min) < 0) {
    throw new CniError(Code.IncompatibleVersion, `config version ${v} does not allow ${command}; ${command} needs cniVersion ${min} or later`);
  }
}
