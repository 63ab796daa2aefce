// dist/wasp, the front door of the CNI plugin. Node's start-up alone costs ~110 ms per exec and a
// container runtime waits on every ADD, so a CNI call (no arguments, CNI_COMMAND set) is handed to
// the running wasp daemon over a unix socket and answered in-process there. In every other case
// (no daemon, not a CNI call, a test failpoint, the daemon declines) this execs wasp-node, the real
// Node executable beside it, with the same argv, environment and stdin, exactly as if that had
// been exec'd directly; when a CNI call missed the daemon, WASP_FRONT_FALLBACK says why and
// WASP_FRONT_SOCKET which socket it asked, so wasp-node records it beside that socket
// (src/cni/fallback.ts; wasp doctor shows them).
//
// The socket: $WASP_CNI_SOCKET when set, else the network config's top-level "cniSocket" (the wasp
// plugin's entry of the conflist, so every call of every runtime finds the daemon: podman's cleanup
// DEL runs without the runtime's environment), else /run/wasp/cni.sock.
//
// ╒═══ request, client → daemon, then shutdown(SHUT_WR) ═══╕
//   "CNI_X=v\0" …                every environment variable whose name starts with CNI_
//   "WASP_FRONT_NETNS=dev:ino\0"  stat("/proc/self/ns/net"); the daemon declines another netns
//   "WASP_FRONT_SANDBOX=dev:ino\0" stat(CNI_NETNS) when it exists; the daemon declines a sandbox
//                                that is another file where it looks
//   "\0"                         an empty string ends the header
//   stdin bytes                  up to EOF (at most 4 MiB)
// ╒═══ reply, daemon → client, then close ═══╕
//   u8 status                    the exit code; 255 = "not handled here", run wasp-node instead
//   stdout bytes                 up to EOF (at most 16 MiB); after 255: why, in a sentence
//
// Build: cc -O2 -Wall -Wextra -std=gnu11 -o wasp native/front/wasp-front.c   (Linux, libc only)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_SOCKET "/run/wasp/cni.sock"
#define STDIN_CAP (4u << 20)
#define REPLY_CAP (16u << 20)
#define TIMEOUT_MS 60000
#define STATUS_NOT_HANDLED 255
// CNI spec 1.1 error codes.
#define CNI_IO_ERROR 5
#define CNI_TRY_AGAIN_LATER 11

struct buf {
  char *p;
  size_t len, cap;
};

/** Appends n bytes; false when out of memory. */
static bool buf_put(struct buf *b, const void *d, size_t n) {
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, d, n);
  b->len += n;
  return true;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** Waits for `events` on fd until the deadline (-1: forever). 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int ms = -1;
    if (deadline >= 0) {
      int64_t left = deadline - now_ms();
      ms = left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
    }
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, ms);
    if (r > 0) return 1;
    if (r == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

/** read() that retries EINTR and waits out EAGAIN (a non-blocking stdin is inherited as such). */
static ssize_t read_some(int fd, void *p, size_t n) {
  for (;;) {
    ssize_t r = read(fd, p, n);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    if (wait_fd(fd, POLLIN, -1) < 0) return -1;
  }
}

/** Writes all n bytes (partial writes, EINTR, a non-blocking fd); false on error. */
static bool write_all(int fd, const void *d, size_t n) {
  const char *p = d;
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(fd, POLLOUT, -1) > 0) continue;
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  return true;
}

/** Appends s as a JSON string body (no quotes): paths may hold quotes, backslashes, controls. */
static void json_escape(struct buf *b, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = (char)c;
      buf_put(b, esc, 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      buf_put(b, esc, 6);
    } else {
      buf_put(b, &c, 1);
    }
  }
}

/** Prints a CNI error object on stdout, the runtime reads it from there. */
static void cni_error(int code, const char *msg) {
  struct buf b = {0};
  char head[64];
  snprintf(head, sizeof head, "{\"cniVersion\":\"1.1.0\",\"code\":%d,\"msg\":\"", code);
  buf_put(&b, head, strlen(head));
  json_escape(&b, msg);
  buf_put(&b, "\"}\n", 3);
  if (b.p) write_all(STDOUT_FILENO, b.p, b.len);
  free(b.p);
}

// ── the network config's "cniSocket" ─────────────────────────────────────────────────────────────

struct cursor {
  const char *p, *end;
};

static void skip_ws(struct cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char h = p[i];
    v <<= 4;
    if (h >= '0' && h <= '9') v |= h - '0';
    else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
    else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
    else return -1;
  }
  return v;
}

/** Reads a JSON string at c (its opening quote) into out (NUL-terminated, UTF-8), at most cap
 *  bytes with the NUL; out may be NULL to skip it. False on a malformed or too long string. */
static bool json_string(struct cursor *c, char *out, size_t cap) {
  if (c->p >= c->end || *c->p != '"') return false;
  size_t n = 0;
  for (c->p++; c->p < c->end; c->p++) {
    unsigned char ch = (unsigned char)*c->p;
    unsigned cp;
    if (ch == '"') {
      c->p++;
      if (out) out[n] = '\0';
      return true;
    }
    if (ch < 0x20) return false;
    if (ch != '\\') {
      cp = ch;  // a byte of UTF-8 as it is
    } else {
      if (++c->p >= c->end) return false;
      switch (*c->p) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
          int v = c->end - c->p > 4 ? hex4(c->p + 1) : -1;
          if (v <= 0 || (v >= 0xd800 && v <= 0xdfff)) return false;  // no NUL, no surrogate halves in a path
          c->p += 4;
          cp = (unsigned)v;
          break;
        }
        default: return false;
      }
    }
    char enc[3];
    size_t len = 1;
    if (ch != '\\' || cp < 0x80) enc[0] = (char)cp;
    else if (cp < 0x800) enc[0] = (char)(0xc0 | (cp >> 6)), enc[1] = (char)(0x80 | (cp & 0x3f)), len = 2;
    else enc[0] = (char)(0xe0 | (cp >> 12)), enc[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), enc[2] = (char)(0x80 | (cp & 0x3f)), len = 3;
    if (out) {
      if (n + len >= cap) return false;
      memcpy(out + n, enc, len);
    }
    n += len;
  }
  return false;
}

/** Skips one JSON value of any kind (nested objects and arrays by depth, strings with escapes). */
static bool json_skip(struct cursor *c) {
  int depth = 0;
  do {
    skip_ws(c);
    if (c->p >= c->end) return false;
    char ch = *c->p;
    if (ch == '"') {
      if (!json_string(c, NULL, 0)) return false;
    } else if (ch == '{' || ch == '[') {
      depth++, c->p++;
    } else if (ch == '}' || ch == ']') {
      if (--depth < 0) return false;
      c->p++;
    } else if (ch == ',' || ch == ':') {
      if (depth == 0) return false;
      c->p++;
    } else {
      while (c->p < c->end && strchr(",:]} \t\r\n", *c->p) == NULL) c->p++;  // number, true, false, null
    }
  } while (depth > 0);
  return true;
}

/** The string value of key `key` of the JSON object that is the whole of [p, p+n) (top level
 *  only), into out; false when the text is not such an object or the key is absent or no string. */
static bool json_top_string(const char *p, size_t n, const char *key, char *out, size_t cap) {
  struct cursor c = {p, p + n};
  char name[64];
  skip_ws(&c);
  if (c.p >= c.end || *c.p != '{') return false;
  c.p++;
  bool found = false;
  for (;;) {
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') return found;
    const char *at = c.p;
    if (!json_string(&c, name, sizeof name)) {
      c.p = at;  // a key longer than any wasp reads is skipped, a malformed one ends the search
      if (!json_string(&c, NULL, 0)) return false;
      name[0] = '\0';
    }
    skip_ws(&c);
    if (c.p >= c.end || *c.p != ':') return false;
    c.p++;
    skip_ws(&c);
    if (strcmp(name, key) == 0 && c.p < c.end && *c.p == '"') {
      if (!json_string(&c, out, cap)) return false;
      found = true;
    } else if (!json_skip(&c)) {
      return false;
    }
    skip_ws(&c);
    if (c.p < c.end && *c.p == ',') {
      c.p++;
      continue;
    }
    if (c.p < c.end && *c.p == '}') return found;
    return false;
  }
}

// ── stdin ────────────────────────────────────────────────────────────────────────────────────────

struct input {
  struct buf data;  // bytes already taken from fd 0
  bool at_eof;      // fd 0 has nothing more (or was never read: closed, a TTY)
  bool ok;          // all of stdin is in data, within STDIN_CAP
};

static struct input read_stdin(void) {
  struct input in = {.at_eof = true};
  // A TTY or a closed fd 0 is an empty stdin; nothing is taken, so wasp-node sees fd 0 as is.
  if (fcntl(STDIN_FILENO, F_GETFD) < 0 || isatty(STDIN_FILENO)) {
    in.ok = true;
    return in;
  }
  in.at_eof = false;
  char chunk[65536];
  for (;;) {
    // Reading at most one byte past the cap tells "exactly 4 MiB" from "more".
    size_t room = STDIN_CAP + 1 - in.data.len;
    ssize_t r = read_some(STDIN_FILENO, chunk, room < sizeof chunk ? room : sizeof chunk);
    if (r < 0) return in;  // a broken stdin: let wasp-node meet it and say so
    if (r == 0) {
      in.at_eof = true;
      in.ok = true;
      return in;
    }
    if (!buf_put(&in.data, chunk, (size_t)r)) return in;
    if (in.data.len > STDIN_CAP) return in;
  }
}

// ── fall back: exec wasp-node ────────────────────────────────────────────────────────────────────

/** Makes fd 0 a memfd holding the stdin bytes already taken plus whatever fd 0 still has. */
static bool restore_stdin(struct input *in) {
  if (in->data.len == 0 && in->at_eof) return true;  // nothing taken: fd 0 reads the same
  // Created close-on-exec; dup2 gives fd 0 a copy without the flag, so only fd 0 reaches wasp-node.
  int mfd = memfd_create("wasp-stdin", MFD_CLOEXEC);
  if (mfd < 0) return false;
  bool ok = write_all(mfd, in->data.p, in->data.len);
  char chunk[65536];
  while (ok && !in->at_eof) {
    ssize_t r = read_some(STDIN_FILENO, chunk, sizeof chunk);
    if (r < 0) break;  // the same error would have met wasp-node; hand over what there is
    if (r == 0) in->at_eof = true;
    else ok = write_all(mfd, chunk, (size_t)r);
  }
  ok = ok && lseek(mfd, 0, SEEK_SET) == 0 && dup2(mfd, STDIN_FILENO) == STDIN_FILENO;
  close(mfd);
  return ok;
}

static _Noreturn void cannot_run(const char *path, const char *why, bool cni) {
  fprintf(stderr, "wasp: cannot run %s: %s\n", path, why);
  if (cni) {
    char msg[PATH_MAX + 256];
    snprintf(msg, sizeof msg, "cannot run %s: %s", path, why);
    cni_error(CNI_IO_ERROR, msg);
  }
  exit(cni ? 1 : 127);
}

static _Noreturn void fall_back(char **argv, struct input *in) {
  bool cni = getenv("CNI_COMMAND") != NULL;
  // The real file, not a symlink to it: wasp-node is installed beside dist/wasp itself.
  char path[PATH_MAX + 16];
  ssize_t n = readlink("/proc/self/exe", path, PATH_MAX);
  if (n <= 0) cannot_run("wasp-node", "cannot read /proc/self/exe", cni);
  path[n] = '\0';
  char *slash = strrchr(path, '/');
  if (!slash) cannot_run("wasp-node", "/proc/self/exe is not a path", cni);
  strcpy(slash + 1, "wasp-node");
  if (!restore_stdin(in)) cannot_run(path, "cannot hand it the stdin already read", cni);
  execve(path, argv, environ);
  cannot_run(path, strerror(errno), cni);
}

// ── fast path: ask the daemon ────────────────────────────────────────────────────────────────────

enum outcome { FALL_BACK, ANSWERED, FAILED };

/** Sends all n bytes before the deadline; false on any error or timeout. */
static bool send_all(int fd, const char *p, size_t n, int64_t deadline) {
  while (n) {
    // MSG_NOSIGNAL: a daemon that hangs up early is EPIPE here, not a SIGPIPE death.
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(fd, POLLOUT, deadline) > 0) continue;
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  return true;
}

/** Why a CNI call is going to wasp-node after all (WASP_FRONT_FALLBACK for it to record). */
static char fallback_why[PATH_MAX + 128];

static enum outcome fall_back_because(const char *fmt, const char *path, const char *detail) {
  snprintf(fallback_why, sizeof fallback_why, fmt, path, detail);
  return FALL_BACK;
}

static enum outcome ask_daemon(const char *sock_path, const struct input *in) {
  struct stat ns;
  // the daemon could not check the netns
  if (stat("/proc/self/ns/net", &ns) < 0) return fall_back_because("%s: cannot stat /proc/self/ns/net (%s)", sock_path, strerror(errno));

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof addr.sun_path) return fall_back_because("%s: the path is longer than a unix socket's%s", sock_path, "");
  strcpy(addr.sun_path, sock_path);

  struct buf head = {0};
  for (char **e = environ; *e; e++)
    if (strncmp(*e, "CNI_", 4) == 0 && !buf_put(&head, *e, strlen(*e) + 1)) return FALL_BACK;
  char netns[96];
  int len = snprintf(netns, sizeof netns, "WASP_FRONT_NETNS=%ju:%ju", (uintmax_t)ns.st_dev, (uintmax_t)ns.st_ino);
  if (!buf_put(&head, netns, (size_t)len + 1)) return FALL_BACK;
  // The sandbox as this process sees it: the daemon may live in another mount namespace, where
  // the same path is another file (or a plain file where the bind mount did not propagate).
  const char *sandbox = getenv("CNI_NETNS");
  struct stat sb;
  if (sandbox && *sandbox && stat(sandbox, &sb) == 0) {
    len = snprintf(netns, sizeof netns, "WASP_FRONT_SANDBOX=%ju:%ju", (uintmax_t)sb.st_dev, (uintmax_t)sb.st_ino);
    if (!buf_put(&head, netns, (size_t)len + 1)) return FALL_BACK;
  }
  if (!buf_put(&head, "", 1)) return FALL_BACK;

  // Non-blocking: a daemon whose accept backlog is full (EAGAIN) or who stops reading cannot hang
  // the runtime. Kept above fd 2 so a closed stdout can never become the socket.
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return FALL_BACK;
  if (fd <= STDERR_FILENO) {
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    close(fd);
    if (hi < 0) return FALL_BACK;
    fd = hi;
  }
  int r;
  do r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    close(fd);
    return fall_back_because("no daemon answers at %s (%s)", sock_path, e == ENOENT ? "ENOENT: no socket" : e == ECONNREFUSED ? "ECONNREFUSED: a stale socket" : e == EAGAIN ? "EAGAIN: its backlog is full" : strerror(e));
  }

  // Until the daemon has the whole request up to EOF it cannot have acted on it, so a send that
  // fails or times out still falls back safely.
  int64_t deadline = now_ms() + TIMEOUT_MS;
  bool sent = send_all(fd, head.p, head.len, deadline) && send_all(fd, in->data.p, in->data.len, deadline) &&
              shutdown(fd, SHUT_WR) == 0;
  free(head.p);
  if (!sent) {
    close(fd);
    return fall_back_because("the daemon at %s did not take the request (%s)", sock_path, "send failed");
  }

  struct buf reply = {0};
  char chunk[65536];
  const char *failure = NULL;
  for (;;) {
    int ready = wait_fd(fd, POLLIN, deadline);
    if (ready == 0) {
      failure = "timeout";
      break;
    }
    ssize_t n = ready < 0 ? -1 : recv(fd, chunk, sizeof chunk, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      // ECONNRESET before any byte: the daemon closed with part of the request unread, so it
      // cannot have acted on it. After some bytes it is the end of an answer given early.
      if (errno == ECONNRESET) break;
      failure = strerror(errno);
      break;
    }
    if (reply.len + (size_t)n > REPLY_CAP) {
      failure = "answer larger than 16 MiB";
      break;
    }
    if (!buf_put(&reply, chunk, (size_t)n)) {
      failure = "out of memory";
      break;
    }
  }
  close(fd);

  if (failure) {
    // The daemon may be doing the call right now: running it a second time in wasp-node is not safe.
    char msg[sizeof addr.sun_path + 128];
    if (strcmp(failure, "timeout") == 0)
      snprintf(msg, sizeof msg, "the wasp daemon at %s did not answer within %d s", sock_path, TIMEOUT_MS / 1000);
    else
      snprintf(msg, sizeof msg, "the wasp daemon at %s did not answer: %s", sock_path, failure);
    cni_error(CNI_TRY_AGAIN_LATER, msg);
    exit(1);
  }
  if (reply.len == 0 || (unsigned char)reply.p[0] == STATUS_NOT_HANDLED) {
    // a decline may say why after its status byte
    char why[256] = "";
    if (reply.len > 1) {
      size_t n = reply.len - 1 < sizeof why - 1 ? reply.len - 1 : sizeof why - 1;
      memcpy(why, reply.p + 1, n);
      why[n] = '\0';
    }
    free(reply.p);
    return fall_back_because("the daemon at %s declined the call: %s", sock_path, *why ? why : "(no reason given)");
  }
  int status = (unsigned char)reply.p[0];
  if (!write_all(STDOUT_FILENO, reply.p + 1, reply.len - 1) && status == 0) status = 1;
  exit(status);
}

int main(int argc, char **argv) {
  struct input in = {.at_eof = true, .ok = true};
  static char tried[PATH_MAX];  // the socket asked
  // The failpoint makes the Node plugin kill itself at a step; it must run there, not here.
  if (argc == 1 && getenv("CNI_COMMAND") && !getenv("WASP_CNI_FAILPOINT")) {
    in = read_stdin();
    if (in.ok) {
      static char from_conf[PATH_MAX];
      const char *sock = getenv("WASP_CNI_SOCKET");
      if (!sock || !*sock) {
        bool named = in.data.len && json_top_string(in.data.p, in.data.len, "cniSocket", from_conf, sizeof from_conf) && *from_conf;
        sock = named ? from_conf : DEFAULT_SOCKET;
      }
      snprintf(tried, sizeof tried, "%s", sock);
      ask_daemon(sock, &in);  // returns only to fall back
    } else {
      snprintf(fallback_why, sizeof fallback_why, "the network config on stdin is over %u MiB or unreadable", STDIN_CAP >> 20);
    }
    if (*fallback_why) setenv("WASP_FRONT_FALLBACK", fallback_why, 1);
    if (*fallback_why && *tried) setenv("WASP_FRONT_SOCKET", tried, 1);
  }
  fall_back(argv, &in);
}
