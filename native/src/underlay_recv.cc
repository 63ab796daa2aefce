// Underlay receive: recvmmsg straight into slots, a UDP GRO datagram cut back into one packet per
// slot, and a peer's unsegmented TSO packet cut into the frames a NIC would have sent.
#include <arpa/inet.h>
#include <errno.h>
#include <linux/udp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <cstdint>
#include <vector>

#include "args.h"
#include "state.h"
#include "underlay.h"

namespace wasp {
namespace {

// ── a peer's unsegmented TSO packet in one VXLAN frame ───────────────────────────────────────
// The kernel's vxlan hands a TSO packet to the underlay whole (UDP tunnel GSO); a NIC cuts it on
// the wire, but a veth, or a virtio NIC that passes the offload on to the receiving VM, delivers it
// to our UDP socket as ONE datagram of up to 64 KiB. It is rewritten here into the frames a NIC
// would have sent (inner packets of the pods' MTU), so the engine sees what it sees from any node:
// headers repeated, inner lengths, IPv4 ID and header checksum, TCP sequence number and flags per
// frame; each TCP checksum is left as the partial (pseudo-header) sum the sender left, which the
// engine completes (completeOffloadedChecksum in assembly/).
namespace untso {
constexpr uint32_t OUTER = 8 + 14;  // VXLAN + inner Ethernet
inline uint32_t be16(const uint8_t* p) { return uint32_t(p[0]) << 8 | p[1]; }
inline uint32_t be32(const uint8_t* p) { return be16(p) << 16 | be16(p + 2); }
inline void put16(uint8_t* p, uint32_t v) { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
inline void put32(uint8_t* p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v); }
inline uint32_t fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint32_t(s);
}
inline uint64_t words(const uint8_t* p, uint32_t n) {
  uint64_t s = 0;
  for (uint32_t i = 0; i + 1 < n; i += 2) s += be16(p + i);
  return s;
}
}  // namespace untso

/** Writes the frame train for the frame at p (len bytes) with inner packets of at most innerMtu
 *  bytes into out; returns the train's stride (bytes per frame but the last), or 0 when p is not
 *  one unsegmented TCP packet (a UDP datagram is never cut: one too big is the sender's MTU error).
 *  keepPartial: a packet whose checksum is still the pseudo-header sum stays whole (0): the engine
 *  hands it to a vnet TUN as one GSO packet (wholeTsoHeader in assembly/). */
uint32_t SplitTunnelGso(std::vector<uint8_t>& out, const uint8_t* p, uint32_t len, uint32_t innerMtu,
                        bool keepPartial) {
  using namespace untso;
  if (len < OUTER + 40) return 0;
  const uint8_t* ip = p + OUTER;
  uint32_t et = be16(p + 8 + 12), ipHl, innerLen, proto;
  bool v6;
  if (et == 0x0800 && ip[0] >> 4 == 4) {
    ipHl = (ip[0] & 15u) * 4;
    innerLen = be16(ip + 2);
    proto = ip[9];
    v6 = false;
    if (ipHl < 20 || (be16(ip + 6) & 0x3fff) != 0) return 0;  // fragments are not TSO
  } else if (et == 0x86dd && ip[0] >> 4 == 6) {
    ipHl = 40;
    innerLen = 40 + be16(ip + 4);
    proto = ip[6];  // extension headers: not cut here
    v6 = true;
  } else {
    return 0;
  }
  if (OUTER + innerLen != len) return 0;  // a train already (UDP GRO of frames), or not ours to judge
  if (proto != 6 || innerLen < ipHl + 20) return 0;
  uint32_t l4Hl = (ip[ipHl + 12] >> 4) * 4u, hdr = ipHl + l4Hl;
  if (l4Hl < 20 || innerMtu <= hdr || innerLen <= innerMtu) return 0;  // fits: nothing to cut
  uint64_t addrs = words(ip + (v6 ? 8 : 12), v6 ? 32 : 8);
  if (keepPartial && be16(ip + ipHl + 16) == fold(addrs + proto + innerLen - ipHl)) return 0;
  uint32_t mss = innerMtu - hdr;
  uint32_t payload = innerLen - hdr, n = (payload + mss - 1) / mss, stride = OUTER + hdr + mss;
  out.resize(size_t(n - 1) * stride + OUTER + hdr + (payload - (n - 1) * mss));
  uint32_t id0 = v6 ? 0 : be16(ip + 4), seq0 = be32(ip + ipHl + 4);
  for (uint32_t k = 0; k < n; k++) {
    uint8_t* f = out.data() + size_t(k) * stride;
    uint32_t chunk = k == n - 1 ? payload - k * mss : mss, l4len = l4Hl + chunk;
    memcpy(f, p, OUTER + hdr);
    memcpy(f + OUTER + hdr, p + OUTER + hdr + size_t(k) * mss, chunk);
    uint8_t *iph = f + OUTER, *l4 = iph + ipHl;
    if (!v6) {
      put16(iph + 2, ipHl + l4len);
      put16(iph + 4, (id0 + k) & 0xffff);  // as the kernel numbers TSO segments
      put16(iph + 10, 0);
      put16(iph + 10, ~fold(words(iph, ipHl)) & 0xffff);
    } else {
      put16(iph + 4, l4len);
    }
    put32(l4 + 4, seq0 + k * mss);
    uint8_t fl = l4[13];
    if (k > 0) fl &= uint8_t(~0x80);             // CWR only on the first
    if (k < n - 1) fl &= uint8_t(~(0x01 | 0x08));  // FIN and PSH only on the last
    l4[13] = fl;
    put16(l4 + 16, fold(addrs + proto + l4len));
  }
  return stride;
}

// recvBatch(udpFd, memory, slotsAddr, count, innerMtu, keepWhole) -> datagrams received, or -errno
// (first call only). Payload (the VXLAN header on) lands at data; peer = sender IPv4 in host order.
// innerMtu: the largest inner IP packet (underlay MTU - 50), the size a peer's unsegmented TCP
// packet is cut to (SplitTunnelGso); keepWhole: one with a partial checksum is left whole.
Napi::Value RecvBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd; Mem m; uint32_t slots, count, innerMtu;
  if (!GetFd(info, 0, &fd) || !GetMem(info, 1, &m) || !GetU32(info, 2, &slots) ||
      !GetU32(info, 3, &count) || !GetU32(info, 4, &innerMtu))
    return env.Undefined();
  const bool keepWhole = info[5].ToBoolean();
  if (!BuffersInside(m, slots, count, 0)) return Napi::Number::New(env, -EFAULT);
  State* st = env.GetInstanceData<State>();
  // A UDP GRO datagram is up to 64 KiB: with smaller slots it would be cut short, so such a
  // caller gets the segments one by one (UDP GRO off for this socket from now on).
  uint32_t minRoom = UINT32_MAX;
  for (uint32_t i = 0; i < count; i++) {
    uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
    uint32_t r = ld32(m.base, s + SLOT_BUF_END) - ld32(m.base, s + SLOT_DATA);
    if (r < minRoom) minRoom = r;
  }
  if (minRoom < 65535 && !st->groOff.count(fd)) {
    int zero = 0;
    setsockopt(fd, IPPROTO_UDP, UDP_GRO, &zero, sizeof zero);
    st->groOff.insert(fd);
  }
  auto slotAt = [&](uint32_t i) { return uint64_t(slots) + uint64_t(i) * SLOT_SIZE; };
  auto room = [&](uint32_t i) { uint64_t s = slotAt(i); return ld32(m.base, s + SLOT_BUF_END) - ld32(m.base, s + SLOT_DATA); };
  auto mark = [&](uint32_t i, uint32_t len, uint32_t peer) {
    uint64_t s = slotAt(i);
    st32(m.base, s + SLOT_LEN, len);
    st32(m.base, s + SLOT_PEER, peer);
    st16(m.base, s + SLOT_FLAGS, ld16(m.base, s + SLOT_FLAGS) | SlotFlag::FROM_OVERLAY);
  };
  uint32_t n = 0;

  // 1. What the last call could not place.
  auto pit = st->pending.find(fd);
  if (pit != st->pending.end()) {
    auto& q = pit->second.queue;
    while (!q.empty() && n < count) {
      auto& d = q.front();
      size_t len = d.bytes.size() - d.off < d.gso ? d.bytes.size() - d.off : d.gso;
      if (len > room(n)) len = room(n);
      memcpy(m.base + ld32(m.base, slotAt(n) + SLOT_DATA), d.bytes.data() + d.off, len);
      mark(n++, uint32_t(len), d.peer);
      d.off += d.gso;
      if (d.off >= d.bytes.size()) q.pop_front();
    }
    if (q.empty()) st->pending.erase(pit);
    if (n == count) return Napi::Number::New(env, n);
  }

  // 2. New datagrams, each into its own slot; a GRO datagram is then cut into segments.
  struct mmsghdr msgs[MMSG_CHUNK];
  struct iovec iov[MMSG_CHUNK];
  struct sockaddr_in from[MMSG_CHUNK];
  alignas(struct cmsghdr) char control[MMSG_CHUNK][CMSG_SPACE(sizeof(int))];
  uint32_t segs[MMSG_CHUNK], gso[MMSG_CHUNK];
  // Ask for as many datagrams as the free slots can take once cut: a GRO datagram of 45 segments
  // needs 45 slots, and every datagram read beyond the batch is copied out to wait in pending.
  // Small datagrams (one segment) keep the full chunk per call.
  uint32_t& hint = st->segsHint[fd];
  if (hint == 0) hint = 1;
  while (n < count) {
    unsigned k = (count - n) / hint;
    if (k == 0) k = 1;
    if (k > MMSG_CHUNK) k = MMSG_CHUNK;
    for (unsigned j = 0; j < k; j++) {
      uint64_t s = slotAt(n + j);
      uint32_t data = ld32(m.base, s + SLOT_DATA), be = ld32(m.base, s + SLOT_BUF_END);
      iov[j].iov_base = m.base + data;
      iov[j].iov_len = be - data;
      memset(&msgs[j].msg_hdr, 0, sizeof msgs[j].msg_hdr);
      msgs[j].msg_hdr.msg_iov = &iov[j];
      msgs[j].msg_hdr.msg_iovlen = 1;
      msgs[j].msg_hdr.msg_name = &from[j];
      msgs[j].msg_hdr.msg_namelen = sizeof from[j];
      msgs[j].msg_hdr.msg_control = control[j];
      msgs[j].msg_hdr.msg_controllen = sizeof control[j];
    }
    int got = recvmmsg(fd, msgs, k, MSG_DONTWAIT, nullptr);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || n > 0) break;
      return Napi::Number::New(env, -errno);
    }
    uint32_t total = 0, most = 1;
    for (int j = 0; j < got; j++) {
      gso[j] = 0;
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&msgs[j].msg_hdr); c; c = CMSG_NXTHDR(&msgs[j].msg_hdr, c)) {
        if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) {
          int g;
          memcpy(&g, CMSG_DATA(c), sizeof g);
          if (g > 0) gso[j] = uint32_t(g);
        }
      }
      uint32_t len = msgs[j].msg_len;
      // (no UDP_GRO cmsg comes with such a datagram: the kernel gives it for UDP GRO trains only)
      if (len > untso::OUTER + innerMtu && !(msgs[j].msg_hdr.msg_flags & MSG_TRUNC)) {
        uint32_t stride = SplitTunnelGso(st->split[j], static_cast<const uint8_t*>(iov[j].iov_base), len, innerMtu,
                                         keepWhole);
        if (stride) {  // from here on the datagram is that train, cut like any UDP GRO datagram
          iov[j].iov_base = st->split[j].data();
          len = msgs[j].msg_len = uint32_t(st->split[j].size());
          gso[j] = stride;
        }
      }
      segs[j] = gso[j] && len > gso[j] ? (len + gso[j] - 1) / gso[j] : 1;
      if (segs[j] == 1) gso[j] = 0;
      total += segs[j];
      if (segs[j] > most) most = segs[j];
    }
    if (got > 0) hint = most;
    // Where each datagram's first segment ends up: after all segments of the ones before it.
    // Datagrams past the batch's end wait in pending (copied out before any slot is reused).
    uint32_t fit = 0, at = n;
    while (fit < uint32_t(got) && at + segs[fit] <= count) at += segs[fit++];
    if (fit < uint32_t(got)) {
      auto& q = st->pending[fd].queue;
      for (uint32_t j = fit; j < uint32_t(got); j++) {
        const uint8_t* src = static_cast<const uint8_t*>(iov[j].iov_base);
        uint32_t len = msgs[j].msg_len, g = gso[j] ? gso[j] : len;
        uint32_t place = 0;
        // the part of a datagram that still fits goes into the batch after the ones that fit
        if (j == fit) place = count - at < segs[j] ? count - at : segs[j];
        size_t skip = size_t(place) * g;
        if (skip < len) q.push_back({std::vector<uint8_t>(src + skip, src + len), g, ntohl(from[j].sin_addr.s_addr), 0});
      }
    }
    // Cut from the last datagram back to the first: a datagram only moves to later slots, and
    // every slot it lands in is past the slots of the datagrams not cut yet.
    uint32_t end = at;
    if (fit < uint32_t(got) && at < count) {
      // the head of the first datagram that did not fit fills the batch
      uint32_t j = fit, g = gso[j], place = count - at;
      const uint8_t* src = static_cast<const uint8_t*>(iov[j].iov_base);
      for (int p = int(place) - 1; p >= 0; p--) {
        uint32_t off = uint32_t(p) * g, len = msgs[j].msg_len - off < g ? msgs[j].msg_len - off : g;
        memmove(m.base + ld32(m.base, slotAt(at + p) + SLOT_DATA), src + off, len);
        mark(at + uint32_t(p), len, ntohl(from[j].sin_addr.s_addr));
      }
      end = count;
    }
    for (int j = int(fit) - 1; j >= 0; j--) {
      at -= segs[j];
      const uint8_t* src = static_cast<const uint8_t*>(iov[j].iov_base);
      uint32_t peer = ntohl(from[j].sin_addr.s_addr), len = msgs[j].msg_len;
      if (segs[j] == 1) {
        if (at != n + uint32_t(j)) memmove(m.base + ld32(m.base, slotAt(at) + SLOT_DATA), src, len);
        mark(at, len, peer);
        continue;
      }
      // Later segments first: segment 0 may share its slot with where this datagram sits now.
      for (int p = int(segs[j]) - 1; p >= 0; p--) {
        uint32_t off = uint32_t(p) * gso[j], l = len - off < gso[j] ? len - off : gso[j];
        uint8_t* dst = m.base + ld32(m.base, slotAt(at + uint32_t(p)) + SLOT_DATA);
        if (dst != src + off) memmove(dst, src + off, l);
        mark(at + uint32_t(p), l, peer);
      }
    }
    (void)total;
    n = end;
    if (unsigned(got) < k || fit < uint32_t(got)) break;  // the queue is empty, or the batch is full
  }
  return Napi::Number::New(env, n);
}

// recvPending(udpFd) -> datagram segments waiting for the next recvBatch (the caller drains
// again without waiting for the socket to become readable).
Napi::Value RecvPending(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info, 0, &fd)) return info.Env().Undefined();
  State* st = info.Env().GetInstanceData<State>();
  auto it = st->pending.find(fd);
  return Napi::Number::New(info.Env(), it == st->pending.end() ? 0 : double(it->second.queue.size()));
}

}  // namespace

void RegisterUnderlayRecv(Napi::Env env, Napi::Object exports) {
  ExportAll(env, exports, {{"recvBatch", RecvBatch}, {"recvPending", RecvPending}});
}

}  // namespace wasp
