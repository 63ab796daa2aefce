// errno → words, and the one error type src/io throws. Native code returns -errno; the sentence
// that names the device and the fix is made here, where the device's name is known.
import { constants } from "node:os";

/** Words for the errnos a TUN device or a socket can report (as strerror says them, shortened). */
const WORDS: Readonly<Record<string, string>> = {
  EPERM: "operation not permitted",
  ENOENT: "no such file",
  EINTR: "interrupted system call",
  EIO: "input/output error",
  ENXIO: "no such device or address",
  EBADF: "bad file descriptor",
  EAGAIN: "resource temporarily unavailable",
  ENOMEM: "out of memory",
  EACCES: "permission denied",
  EFAULT: "bad address",
  EBUSY: "device or resource busy",
  EEXIST: "file exists",
  ENODEV: "no such device",
  ENOTDIR: "not a directory",
  EISDIR: "is a directory",
  EINVAL: "invalid argument",
  ENFILE: "too many open files in system",
  EMFILE: "too many open files",
  ENOTTY: "inappropriate ioctl for device",
  ENOSPC: "no space left on device",
  EBADFD: "file descriptor in bad state",
  ENOTSOCK: "not a socket",
  EMSGSIZE: "message too long",
  EPROTONOSUPPORT: "protocol not supported",
  EOPNOTSUPP: "operation not supported",
  EAFNOSUPPORT: "address family not supported",
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available",
  ENETDOWN: "network is down",
  ENETUNREACH: "network is unreachable",
  ENOBUFS: "no buffer space available",
  ECONNREFUSED: "connection refused",
  EHOSTUNREACH: "no route to host",
  ECANCELED: "operation canceled",
  ETIMEDOUT: "timed out",
};

const CODES = new Map<number, string>(
  Object.entries(constants.errno).map(([code, n]) => [n, code] as [number, string]));

/** 'ENOENT' for 2; 'E123' for a number this platform does not name. */
export function errnoCode(errno: number): string {
  return CODES.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

/** 'no such file' for 'ENOENT' or 2. */
export function errnoWords(errno: number | string): string {
  const code = typeof errno === "number" ? errnoCode(errno) : errno;
  return WORDS[code] ?? `error ${code}`;
}

/** A failed system call on a device or socket: message names the thing, the errno and the fix. */
export class IoError extends Error {
  readonly code: string;
  readonly errno: number;
  constructor(message: string, errno: number) {
    super(message);
    this.name = "IoError";
    this.errno = Math.abs(errno);
    this.code = errnoCode(errno);
  }
}

/** `${what}: no such file (ENOENT). ${fix}` — what says "cannot <verb> <thing>". */
export function ioError(what: string, errno: number, fix?: string): IoError {
  const code = errnoCode(errno);
  return new IoError(`${what}: ${errnoWords(code)} (${code}).${fix ? ` ${fix}` : ""}`, errno);
}

/** The fix for missing privileges, the same for every device and socket. */
export const NEED_ROOT = "Run as root or with CAP_NET_ADMIN (raw sockets: CAP_NET_RAW)";

/** Numbers the wrappers compare the addon's -errno results with. */
export const { EAGAIN, EFAULT, EINVAL } = constants.errno;
