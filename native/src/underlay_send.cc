// Underlay send: the engine's outer packets through the raw socket (sendmmsg), one flow's run of
// them as one UDP GSO datagram, and tunnel-GSO frames to the tunnel TAP.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/sockios.h>
#include <linux/udp.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>

#include "args.h"
#include "batch_call.h"
#include "state.h"
#include "underlay.h"

namespace wasp {
namespace {

// ── UDP GSO on the underlay ─────────────────────────────────────────────────────────────────
// A GSO super-packet from a pod comes out of the engine as up to ~45 outer VXLAN packets, each
// through the raw socket alone: ~8 us of kernel per packet on this hardware. Consecutive packets
// of one flow (same outer addresses and ports, equal lengths but a shorter last one) go instead as
// ONE datagram with UDP_SEGMENT (Linux 4.18): the stack is crossed once and the packet is cut at
// the device (or not at all: veth and the receiver's GRO keep it whole). The kernel then builds
// the outer IPv4 and UDP headers itself: same addresses and ports, TTL 64, DF clear (PMTU
// discovery off, as the engine's headers), a computed UDP checksum (UDP GSO needs one).
constexpr uint32_t GSO_MAX_SEGMENTS = 64;          // the kernel takes up to UDP_MAX_SEGMENTS (128)
constexpr uint32_t GSO_MAX_BYTES = 65535 - 20 - 8; // one IPv4 datagram's payload
constexpr size_t GSO_MAX_SOCKETS = 1024;           // flows beyond this go through the raw socket

struct OuterUdp {
  uint32_t src, dst;  // network order
  uint16_t sport, dport;
  uint32_t payload;   // bytes after the outer IPv4 and UDP headers
};

// The outer IPv4/UDP header of a slot the engine built (20-byte IPv4 header, UDP), or false.
bool ParseOuter(const Mem& m, uint64_t s, OuterUdp* o) {
  uint32_t data = ld32(m.base, s + SLOT_DATA), len = ld32(m.base, s + SLOT_LEN);
  if (len < 28 || uint64_t(data) + len > m.size) return false;
  const uint8_t* p = m.base + data;
  if (p[0] != 0x45 || p[9] != IPPROTO_UDP) return false;
  memcpy(&o->src, p + 12, 4);
  memcpy(&o->dst, p + 16, 4);
  o->sport = uint16_t(p[20] << 8 | p[21]);
  o->dport = uint16_t(p[22] << 8 | p[23]);
  o->payload = len - 28;
  return true;
}

// How many selected slots from i on form one UDP GSO datagram (1 when none does).
uint32_t GsoRun(const Mem& m, uint32_t slots, uint32_t count, uint32_t mask, uint32_t i) {
  OuterUdp head, o;
  uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
  if (!ParseOuter(m, s, &head) || head.payload == 0) return 1;
  uint32_t n = 1, bytes = head.payload;
  for (uint32_t j = i + 1; j < count && n < GSO_MAX_SEGMENTS; j++, n++) {
    uint64_t t = uint64_t(slots) + uint64_t(j) * SLOT_SIZE;
    if (!Selected(m.base, t, mask) || !ParseOuter(m, t, &o)) break;
    if (o.src != head.src || o.dst != head.dst || o.sport != head.sport || o.dport != head.dport) break;
    if (o.payload > head.payload || o.payload == 0 || bytes + o.payload > GSO_MAX_BYTES) break;
    bytes += o.payload;
    if (o.payload < head.payload) return n + 1;  // a shorter segment can only be the last
  }
  return n;
}

// The pool's socket for (src, sport), made in the raw socket's network namespace.
int GsoSocket(GsoPool& pool, int rawFd, uint32_t src, uint16_t sport) {
  uint64_t key = uint64_t(src) << 16 | sport;
  auto it = pool.fds.find(key);
  if (it != pool.fds.end()) return it->second;
  if (pool.fds.size() >= GSO_MAX_SOCKETS) return -1;
  int nsFd = ioctl(rawFd, SIOCGSKNS);
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (nsFd < 0 || self < 0) {
    if (nsFd >= 0) close(nsFd);
    if (self >= 0) close(self);
    return -1;
  }
  struct stat a, b;
  bool other = fstat(nsFd, &a) == 0 && fstat(self, &b) == 0 && (a.st_ino != b.st_ino || a.st_dev != b.st_dev);
  if (other && setns(nsFd, CLONE_NEWNET) < 0) { close(nsFd); close(self); return -1; }
  int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (other && setns(self, CLONE_NEWNET) < 0) {
    fprintf(stderr, "wasp_native: cannot return to the original network namespace: %s\n", strerror(errno));
    abort();
  }
  close(nsFd);
  close(self);
  if (u < 0) return -1;
  int one = 1, pmtu = IP_PMTUDISC_DONT, snd = 4 << 20;
  setsockopt(u, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(u, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
  if (setsockopt(u, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) < 0)
    setsockopt(u, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
  // Send-only: nothing is ever read here, so whatever arrives is dropped before it queues.
  struct sock_filter dropAll = BPF_STMT(BPF_RET | BPF_K, 0);
  struct sock_fprog prog = {1, &dropAll};
  setsockopt(u, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = src;
  sa.sin_port = htons(sport);
  // The port may be taken (some program's socket in the dynamic range): that flow goes raw.
  if (bind(u, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) { close(u); return -1; }
  pool.fds.emplace(key, u);
  return u;
}

enum class GsoResult { Sent, Dropped, UseRaw };

// Sends slots [i, i+n) as one UDP GSO datagram.
GsoResult SendGso(Drops& drops, GsoPool& pool, int rawFd, const Mem& m, uint32_t slots, uint32_t i, uint32_t n) {
  OuterUdp head;
  uint64_t s0 = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
  if (!ParseOuter(m, s0, &head)) return GsoResult::UseRaw;
  int u = GsoSocket(pool, rawFd, head.src, head.sport);
  if (u < 0) return GsoResult::UseRaw;
  struct iovec iov[GSO_MAX_SEGMENTS];
  for (uint32_t k = 0; k < n; k++) {
    uint64_t s = uint64_t(slots) + uint64_t(i + k) * SLOT_SIZE;
    iov[k].iov_base = m.base + ld32(m.base, s + SLOT_DATA) + 28;
    iov[k].iov_len = ld32(m.base, s + SLOT_LEN) - 28;
  }
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = head.dst;
  to.sin_port = htons(head.dport);
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(uint16_t))];
  memset(control, 0, sizeof control);
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &to;
  msg.msg_namelen = sizeof to;
  msg.msg_iov = iov;
  msg.msg_iovlen = n;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = IPPROTO_UDP;  // SOL_UDP
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  uint16_t gsoSize = uint16_t(head.payload);
  memcpy(CMSG_DATA(c), &gsoSize, sizeof gsoSize);
  ssize_t r;
  do r = sendmsg(u, &msg, MSG_DONTWAIT); while (r < 0 && errno == EINTR);
  if (r >= 0) return GsoResult::Sent;
  switch (errno) {
    case EAGAIN: case ENOBUFS: case ENETUNREACH: case EHOSTUNREACH: case ECONNREFUSED:
      drops.Add(errno, n);  // as the raw socket would have refused them
      return GsoResult::Dropped;
    case EINVAL: case EMSGSIZE:
      return GsoResult::UseRaw;  // e.g. a segment longer than the route's MTU: the raw path fragments
    default:
      pool.disabled = true;      // ENOPROTOOPT, EOPNOTSUPP, EIO: no UDP GSO here
      return GsoResult::UseRaw;
  }
}

// sendBatch(rawFd, memory, slotsAddr, count, verdictMask, tapFd, drops) -> packets sent, or -errno
// for a broken fd. Each selected slot holds a whole IPv4 packet; it goes to peer (host order). A
// slot noted TUNNEL_GSO holds a tunnel-GSO frame instead, written to tapFd (the tunnel TAP, -1:
// none). Refused packets are dropped and counted in drops (drops.h).
Napi::Value SendBatch(const Napi::CallbackInfo& info) {
  const int tapFd = info[5].IsNumber() ? info[5].As<Napi::Number>().Int32Value() : -1;
  return BatchCall(info, 6, 0, [&](State* st, const BatchArgs& a, Drops& drops) -> int32_t {
    const int fd = a.fd;
    const Mem& m = a.m;
    const uint32_t slots = a.slots, count = a.count, mask = a.mask;
    struct mmsghdr msgs[MMSG_CHUNK];
    struct iovec iov[MMSG_CHUNK];
    struct sockaddr_in to[MMSG_CHUNK];
    uint32_t sent = 0, i = 0;
    unsigned k = 0;
    GsoPool& pool = st->gso[fd];
    bool useGso = !pool.disabled && getenv("WASP_NO_UDP_GSO") == nullptr;
    // The raw packets gathered so far, in order; false when the fd is broken.
    auto flush = [&]() -> bool {
      unsigned off = 0;
      while (off < k) {
        int r = sendmmsg(fd, msgs + off, k - off, MSG_DONTWAIT);
        if (r < 0) {
          if (errno == EINTR) continue;
          if (errno == EBADF || errno == ENOTSOCK) return false;
          // sendmmsg reports only the first failure: drop that packet, go on with the rest.
          drops.Add(errno);
          off++;
          continue;
        }
        sent += r;
        off += r;
      }
      k = 0;
      return true;
    };
    while (i < count) {
      uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
      if (!Selected(m.base, s, mask)) { i++; continue; }
      if (ld32(m.base, s + SLOT_NOTE) & Note::TUNNEL_GSO) {
        // what came before goes first: one flow's packets never overtake each other
        if (!flush()) return -errno;
        i++;
        ssize_t put = -1;
        errno = EBADF;
        if (tapFd >= 0) {
          do put = write(tapFd, m.base + ld32(m.base, s + SLOT_DATA), ld32(m.base, s + SLOT_LEN));
          while (put < 0 && errno == EINTR);
        }
        if (put >= 0) { sent++; continue; }
        drops.Add(errno);
        if (errno == EINVAL || errno == EBADF) drops.TunnelRefused();
        continue;
      }
      if (useGso && !pool.disabled) {
        uint32_t n = GsoRun(m, slots, count, mask, i);
        if (n >= 2) {
          // what came before goes first: one flow's packets never overtake each other
          if (!flush()) return -errno;
          GsoResult g = SendGso(drops, pool, fd, m, slots, i, n);
          if (g != GsoResult::UseRaw) {
            if (g == GsoResult::Sent) sent += n;
            i += n;
            continue;
          }
        }
      }
      iov[k].iov_base = m.base + ld32(m.base, s + SLOT_DATA);
      iov[k].iov_len = ld32(m.base, s + SLOT_LEN);
      memset(&to[k], 0, sizeof to[k]);
      to[k].sin_family = AF_INET;
      to[k].sin_addr.s_addr = htonl(ld32(m.base, s + SLOT_PEER));
      memset(&msgs[k].msg_hdr, 0, sizeof msgs[k].msg_hdr);
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      msgs[k].msg_hdr.msg_name = &to[k];
      msgs[k].msg_hdr.msg_namelen = sizeof to[k];
      k++;
      i++;
      if (k == MMSG_CHUNK && !flush()) return -errno;
    }
    if (!flush()) return -errno;
    return int32_t(sent);
  });
}

}  // namespace

void RegisterUnderlaySend(Napi::Env env, Napi::Object exports) {
  ExportAll(env, exports, {{"sendBatch", SendBatch}});
}

}  // namespace wasp
