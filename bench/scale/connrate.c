// The scale benchmark's traffic tools, one binary (built at bench time with cc into a temp dir):
//
//   connrate serve PORT
//       accepts TCP connections on 0.0.0.0:PORT and closes each at once; prints "ready".
//   connrate connect IP PORT SECONDS WORKERS
//       WORKERS processes each open connections to IP:PORT one after another for SECONDS: connect()
//       (blocking; its duration is the latency: SYN out to SYN/ACK back through the dataplane), then
//       close with SO_LINGER 0 (an RST, so no TIME_WAIT pins the client's ports). Prints one JSON line:
//       {"connections":n,"errors":e,"seconds":s,"conn_per_s":r,"p50_us":x,"p99_us":y,"max_us":z}.
//   connrate udprecv PORT
//       counts datagrams on 0.0.0.0:PORT; on SIGTERM prints {"received":n,"max_seq":m,"reordered":r}.
//   connrate udpsend IP PORT PPS SECONDS
//       sends 64-byte datagrams carrying a sequence number (u64, from 1) at PPS for SECONDS or until
//       SIGTERM; prints {"sent":n,"send_errors":e}.
//   connrate flows FIRST_IP ADDRS PORT TOTAL PER_SECOND
//       opens TOTAL flows at PER_SECOND: a non-blocking connect() (one SYN) to PORT of one of the
//       ADDRS addresses from FIRST_IP in turn, then close() at once (a socket closed in SYN_SENT sends
//       nothing more). Each SYN is a new flow for a dataplane that tracks connections. Prints
//       {"opened":n,"errors":e}.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int parse_addr(const char *ip, const char *port, struct sockaddr_in *sa) {
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)atoi(port));
  if (inet_pton(AF_INET, ip, &sa->sin_addr) != 1) {
    fprintf(stderr, "connrate: %s is not an IPv4 address\n", ip);
    return -1;
  }
  return 0;
}

static int serve(const char *port) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa;
  parse_addr("0.0.0.0", port, &sa);
  if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s, 4096) < 0) {
    fprintf(stderr, "connrate serve: cannot listen on port %s: %s\n", port, strerror(errno));
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c >= 0) close(c);
  }
}

// Latencies in microseconds, bucketed: 1 us wide below 100 ms, one overflow bucket above.
#define BUCKETS 100001
struct shared { uint64_t hist[BUCKETS]; uint64_t count, errors; double max_us; };


static int connect_bench(const char *ip, const char *port, double secs, int workers) {
  struct sockaddr_in sa;
  if (parse_addr(ip, port, &sa) < 0) return 2;
  struct shared *sh = mmap(NULL, sizeof *sh * (size_t)workers, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) { perror("connrate: mmap"); return 1; }
  double t0 = now_s(), end = t0 + secs;
  for (int w = 0; w < workers; w++) {
    pid_t pid = fork();
    if (pid < 0) { perror("connrate: fork"); return 1; }
    if (pid > 0) continue;
    struct shared *me = &sh[w];
    struct linger lg = {1, 0};
    while (now_s() < end) {
      int s = socket(AF_INET, SOCK_STREAM, 0);
      if (s < 0) { me->errors++; usleep(1000); continue; }
      // A lost SYN is retried after 1 s by the kernel; cap a connect at 3 s so the run stays bounded.
      struct timeval tv = {3, 0};
      setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      double a = now_s();
      int r = connect(s, (struct sockaddr *)&sa, sizeof sa);
      double us = (now_s() - a) * 1e6;
      if (r == 0) {
        me->count++;
        size_t b = us < (double)(BUCKETS - 1) ? (size_t)us : BUCKETS - 1;
        me->hist[b]++;
        if (us > me->max_us) me->max_us = us;
      } else {
        me->errors++;
      }
      setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(s);
    }
    _exit(0);
  }
  for (int w = 0; w < workers; w++) wait(NULL);
  double took = now_s() - t0;
  uint64_t n = 0, e = 0;
  double mx = 0;
  static uint64_t hist[BUCKETS];
  for (int w = 0; w < workers; w++) {
    n += sh[w].count;
    e += sh[w].errors;
    if (sh[w].max_us > mx) mx = sh[w].max_us;
    for (size_t b = 0; b < BUCKETS; b++) hist[b] += sh[w].hist[b];
  }
  // Percentile p: the smallest bucket whose cumulative count reaches ceil(p * n).
  double pct[2] = {0.50, 0.99}, out[2] = {0, 0};
  for (int k = 0; k < 2; k++) {
    uint64_t want = (uint64_t)(pct[k] * (double)n + 0.999999), acc = 0;
    for (size_t b = 0; b < BUCKETS && n > 0; b++) {
      acc += hist[b];
      if (acc >= want) { out[k] = (double)b + 0.5; break; }
    }
  }
  printf("{\"connections\":%llu,\"errors\":%llu,\"seconds\":%.3f,\"conn_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n",
         (unsigned long long)n, (unsigned long long)e, took, (double)n / took, out[0], out[1], mx);
  return 0;
}

static volatile sig_atomic_t stop_flag = 0;
static void on_term(int sig) { (void)sig; stop_flag = 1; }

static int udprecv(const char *port) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  int buf = 4 << 20;
  setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  struct sockaddr_in sa;
  parse_addr("0.0.0.0", port, &sa);
  if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
    fprintf(stderr, "connrate udprecv: cannot bind port %s: %s\n", port, strerror(errno));
    return 1;
  }
  struct sigaction act;
  memset(&act, 0, sizeof act);
  act.sa_handler = on_term; // no SA_RESTART: recv returns EINTR and the loop ends
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);
  printf("ready\n");
  fflush(stdout);
  uint64_t received = 0, max_seq = 0, reordered = 0;
  unsigned char b[2048];
  while (!stop_flag) {
    ssize_t n = recv(s, b, sizeof b, 0);
    if (n < 0) continue;
    if (n < 8) continue;
    uint64_t seq;
    memcpy(&seq, b, 8);
    received++;
    if (seq < max_seq) reordered++;
    else max_seq = seq;
  }
  printf("{\"received\":%llu,\"max_seq\":%llu,\"reordered\":%llu}\n", (unsigned long long)received, (unsigned long long)max_seq, (unsigned long long)reordered);
  return 0;
}

static int udpsend(const char *ip, const char *port, double pps, double secs) {
  struct sockaddr_in sa;
  if (parse_addr(ip, port, &sa) < 0) return 2;
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connrate udpsend: connect"); return 1; }
  unsigned char b[64];
  memset(b, 0xab, sizeof b);
  uint64_t sent = 0, failed = 0;
  double t0 = now_s(), gap = 1.0 / pps;
  struct sigaction act;
  memset(&act, 0, sizeof act);
  act.sa_handler = on_term;
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);
  printf("ready\n");
  fflush(stdout);
  while (!stop_flag) {
    double due = t0 + (double)sent * gap, t = now_s();
    if (t - t0 >= secs) break;
    if (t < due) {
      double w = due - t;
      if (w > 0.0002) usleep((useconds_t)(w * 1e6 * 0.8));
      continue;
    }
    uint64_t seq = sent + 1;
    memcpy(b, &seq, 8);
    if (send(s, b, sizeof b, 0) < 0) failed++;
    sent++;
  }
  printf("{\"sent\":%llu,\"send_errors\":%llu}\n", (unsigned long long)sent, (unsigned long long)failed);
  return 0;
}

static int flows(const char *first, int addrs, const char *port, long total, double per_sec) {
  struct sockaddr_in sa;
  if (parse_addr(first, port, &sa) < 0) return 2;
  uint32_t base = ntohl(sa.sin_addr.s_addr);
  long opened = 0, errors = 0;
  double t0 = now_s();
  for (long i = 0; i < total; i++) {
    // pace: flow i is due at i / per_sec seconds
    while (i % 256 == 0 && now_s() - t0 < i / per_sec) {
      struct timespec d = { 0, 200000 };
      nanosleep(&d, NULL);
    }
    sa.sin_addr.s_addr = htonl(base + (uint32_t)(i % addrs));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { errors++; continue; }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 || errno == EINPROGRESS) opened++; else errors++;
    close(fd);
  }
  printf("{\"opened\":%ld,\"errors\":%ld}\n", opened, errors);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 3 && !strcmp(argv[1], "serve")) return serve(argv[2]);
  if (argc >= 6 && !strcmp(argv[1], "connect")) return connect_bench(argv[2], argv[3], atof(argv[4]), atoi(argv[5]));
  if (argc >= 3 && !strcmp(argv[1], "udprecv")) return udprecv(argv[2]);
  if (argc >= 6 && !strcmp(argv[1], "udpsend")) return udpsend(argv[2], argv[3], atof(argv[4]), atof(argv[5]));
  if (argc >= 7 && !strcmp(argv[1], "flows")) return flows(argv[2], atoi(argv[3]), argv[4], atol(argv[5]), atof(argv[6]));
  fprintf(stderr, "usage: connrate serve PORT | connect IP PORT SECONDS WORKERS | udprecv PORT | udpsend IP PORT PPS SECONDS | flows FIRST_IP ADDRS PORT TOTAL PER_SECOND\n");
  return 2;
}
