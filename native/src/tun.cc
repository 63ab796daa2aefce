// TUN/TAP devices and the tunnel TAP: opening them (MakeTun), and moving a batch of packets between
// a device and slots in wasm memory, through one io_uring_enter (ring.h) or a read()/write() each.
#include "tun.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "args.h"
#include "batch_call.h"
#include "fd_result.h"
#include "netns.h"
#include "state.h"

namespace wasp {
namespace {

// Opens /dev/net/tun as device `name` with IFF_* flags; with IFF_VNET_HDR every packet carries a
// vnetHdrLen-byte virtio header and the kernel may hand over what `offloads` (TUN_F_*) allow.
// Returns the fd, or -errno with stage naming the step that failed (fd closed). Call it inside the
// target namespace.
int MakeTun(const std::string& name, int iff, int vnetHdrLen, unsigned offloads, const char** stage,
            struct ifreq* ifr) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) { *stage = "open"; return -errno; }
  memset(ifr, 0, sizeof *ifr);
  ifr->ifr_flags = short(iff | IFF_NO_PI);
  snprintf(ifr->ifr_name, IFNAMSIZ, "%s", name.c_str());
  if (ioctl(fd, TUNSETIFF, ifr) < 0) { int e = errno; close(fd); *stage = "setiff"; return -e; }
  if (iff & IFF_VNET_HDR) {
    if (ioctl(fd, TUNSETVNETHDRSZ, &vnetHdrLen) < 0) { int e = errno; close(fd); *stage = "vnethdr"; return -e; }
    if (ioctl(fd, TUNSETOFFLOAD, offloads) < 0) { int e = errno; close(fd); *stage = "offload"; return -e; }
  }
  return fd;
}

// openTun(name, tap, vnetHdr, multiQueue, netns, persist?) -> { fd } | { errno, stage }. An existing
// device of that name and kind (a persistent one left by an earlier process) is attached to.
// persist true: the device outlives the fd (TUNSETPERSIST), so its routes stay and packets for it are
// dropped, not routed elsewhere, while no process reads it; false: it goes with the last fd again.
Napi::Value OpenTun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!GetName(info, 0, &name)) return env.Undefined();
  bool tap = info[1].ToBoolean(), vnet = info[2].ToBoolean(), mq = info[3].ToBoolean();
  std::string ns = OptString(info, 4);
  const bool setPersist = info.Length() > 5 && info[5].IsBoolean();
  const bool persist = setPersist && info[5].As<Napi::Boolean>().Value();
  const char* stage = "";
  int r = InNetns(ns, &stage, [&]() -> int {
    struct ifreq ifr;
    // With these offloads the kernel hands over GSO super-packets (up to 64 KiB) with partial checksums.
    int fd = MakeTun(name, (tap ? IFF_TAP : IFF_TUN) | (vnet ? IFF_VNET_HDR : 0) | (mq ? IFF_MULTI_QUEUE : 0),
                     VNET_HDR_LEN, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, &stage, &ifr);
    if (fd >= 0 && setPersist && ioctl(fd, TUNSETPERSIST, persist ? 1 : 0) < 0) {
      int e = errno; close(fd); stage = "persist"; return -e;
    }
    return fd;
  });
  return FdResult(env, r, stage);
}

inline void SetRead(const Mem& m, uint64_t s, uint32_t got, uint32_t hdr, uint16_t flags) {
  st32(m.base, s + SLOT_LEN, got > hdr ? got - hdr : 0);
  if (flags) st16(m.base, s + SLOT_FLAGS, ld16(m.base, s + SLOT_FLAGS) | flags);
}

// The reads of a batch through io_uring. They run in order, so the packets fill a prefix; one
// that arrived between a read's EAGAIN and a later read is moved down into the first free slot
// (dropped if that buffer is smaller). Each read that finds nothing costs about 0.5 us in the
// kernel, so a call starts with as many reads as the previous call got (at least 4) and
// doubles them while every read returns a packet.
int32_t ReadRing(Napi::Env env, int fd, const Mem& m, uint32_t slots, uint32_t count, uint32_t hdr,
                 uint16_t flags) {
  State* st = env.GetInstanceData<State>();
  Ring& ring = st->ring;
  int r = ring.Setup();
  if (r < 0) return r;
  int res[Ring::ENTRIES];
  uint32_t n = 0;
  unsigned want = st->readHint;
  while (n < count) {
    unsigned k = count - n;
    if (k > want) k = want;
    if (k > ring.Entries()) k = ring.Entries();
    for (unsigned j = 0; j < k; j++) {
      uint64_t s = uint64_t(slots) + uint64_t(n + j) * SLOT_SIZE;
      uint32_t at = ld32(m.base, s + SLOT_DATA) - hdr, end = ld32(m.base, s + SLOT_BUF_END);
      ring.Prep(IORING_OP_READ, fd, m.base + at, end - at, j);
    }
    r = ring.SubmitAndWait(k, res);
    if (r < 0) return n ? int32_t(n) : r;
    unsigned got = 0;
    for (unsigned j = 0; j < k; j++) {
      if (res[j] < 0) {
        // -ECANCELED: the read waited after all and was cancelled; no packet was lost.
        if (res[j] != -EAGAIN && res[j] != -ECANCELED && n == 0 && got == 0) return res[j];
        continue;
      }
      uint64_t to = uint64_t(slots) + uint64_t(n + got) * SLOT_SIZE;
      if (j != got) {
        uint64_t from = uint64_t(slots) + uint64_t(n + j) * SLOT_SIZE;
        uint32_t src = ld32(m.base, from + SLOT_DATA) - hdr, dst = ld32(m.base, to + SLOT_DATA) - hdr;
        if (uint64_t(dst) + uint32_t(res[j]) > ld32(m.base, to + SLOT_BUF_END)) continue;
        memmove(m.base + dst, m.base + src, uint32_t(res[j]));
      }
      SetRead(m, to, uint32_t(res[j]), hdr, flags);
      got++;
    }
    n += got;
    if (got < k) break;
    want *= 2;
  }
  st->readHint = n > 4 ? n : 4;
  return int32_t(n);
}

// readBatch(fd, memory, slotsAddr, count, vnet, uring, flags) -> packets read (>= 0), or -errno when
// the first read fails with anything but EAGAIN. uring: the reads go through one io_uring_enter. -EFAULT: a slot points outside memory (nothing read).
Napi::Value ReadBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd; Mem m; uint32_t slots, count;
  if (!GetFd(info, 0, &fd) || !GetMem(info, 1, &m) || !GetU32(info, 2, &slots) ||
      !GetU32(info, 3, &count))
    return env.Undefined();
  const uint32_t hdr = info[4].ToBoolean() ? VNET_HDR_LEN : 0;
  if (!BuffersInside(m, slots, count, hdr)) return Napi::Number::New(env, -EFAULT);
  // flags: what every slot read gets in SlotFlag (VNET, ETHERNET for a TAP); default VNET if vnet.
  const uint16_t flags = info[6].IsNumber() ? uint16_t(info[6].As<Napi::Number>().Uint32Value())
                                            : (hdr ? SlotFlag::VNET : 0);
  if (info[5].ToBoolean()) return Napi::Number::New(env, ReadRing(env, fd, m, slots, count, hdr, flags));
  uint32_t n = 0;
  while (n < count) {
    uint64_t s = uint64_t(slots) + uint64_t(n) * SLOT_SIZE;
    uint32_t at = ld32(m.base, s + SLOT_DATA) - hdr, end = ld32(m.base, s + SLOT_BUF_END);
    ssize_t got = read(fd, m.base + at, end - at);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || n > 0) break;  // a later error shows up again on the next call
      return Napi::Number::New(env, -errno);
    }
    SetRead(m, s, uint32_t(got), hdr, flags);
    n++;
  }
  return Napi::Number::New(env, n);
}

// The writes of a batch through io_uring; like the write() loop, a refused packet is counted.
int32_t WriteRing(State* st, Drops& drops, int fd, const Mem& m, uint32_t slots, uint32_t count, uint32_t mask,
                  uint32_t hdr) {
  Ring& ring = st->ring;
  int r = ring.Setup();
  if (r < 0) return r;
  int res[Ring::ENTRIES];
  uint32_t n = 0, i = 0;
  while (i < count) {
    unsigned k = 0;
    for (; i < count && k < ring.Entries(); i++) {
      uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
      if (!Selected(m.base, s, mask)) continue;
      uint32_t at = ld32(m.base, s + SLOT_DATA) - hdr, len = ld32(m.base, s + SLOT_LEN) + hdr;
      ring.Prep(IORING_OP_WRITE, fd, m.base + at, len, k++);
    }
    if (k == 0) break;
    r = ring.SubmitAndWait(k, res);
    if (r < 0) return r;
    for (unsigned j = 0; j < k; j++) {
      if (res[j] >= 0) { n++; continue; }
      if (res[j] == -EBADF) return -EBADF;
      drops.Add(-res[j]);
    }
  }
  return int32_t(n);
}

// writeBatch(fd, memory, slotsAddr, count, verdictMask, vnet, uring, drops) -> packets written, or
// -errno for a broken fd. A refused packet (EAGAIN, ENOBUFS, EINVAL...) is dropped and counted in
// drops (drops.h). -EFAULT: a selected slot points outside memory (nothing written).
Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
  const uint32_t hdr = info[5].ToBoolean() ? VNET_HDR_LEN : 0;
  const bool uring = info[6].ToBoolean();
  return BatchCall(info, 7, hdr, [&](State* st, const BatchArgs& a, Drops& drops) -> int32_t {
    if (uring) return WriteRing(st, drops, a.fd, a.m, a.slots, a.count, a.mask, hdr);
    int32_t n = 0;
    for (uint32_t i = 0; i < a.count; i++) {
      uint64_t s = uint64_t(a.slots) + uint64_t(i) * SLOT_SIZE;
      if (!Selected(a.m.base, s, a.mask)) continue;
      uint32_t at = ld32(a.m.base, s + SLOT_DATA) - hdr, len = ld32(a.m.base, s + SLOT_LEN) + hdr;
      ssize_t put;
      do put = write(a.fd, a.m.base + at, len); while (put < 0 && errno == EINTR);
      if (put < 0) {
        if (errno == EBADF) return -EBADF;
        // A TUN write is all or nothing; a full queue or a malformed packet loses this one only.
        drops.Add(errno);
        continue;
      }
      n++;
    }
    return n;
  });
}

// probeUring() -> 0 when this thread's io_uring is set up, else -errno (ENOSYS, EPERM).
Napi::Value ProbeUring(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), info.Env().GetInstanceData<State>()->ring.Setup());
}

// ── the tunnel TAP: encapsulated TSO packets handed to the kernel whole ────────────────────────
constexpr unsigned TUN_F_UDP_TUNNEL_GSO_ = 0x080;   // Linux 6.17 (linux/if_tun.h)
constexpr int TNL_VNET_HDR_LEN = 24;               // struct virtio_net_hdr_v1_hash_tunnel

bool WriteSysctl(const std::string& path, const char* value) {
  int f = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (f < 0) return false;
  bool ok = write(f, value, strlen(value)) == ssize_t(strlen(value));
  close(f);
  return ok;
}

int ReadSysctl(const std::string& path) {
  int f = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f < 0) return -1;
  char b[16] = {0};
  ssize_t n = read(f, b, sizeof b - 1);
  close(f);
  return n > 0 ? atoi(b) : -1;
}

// openTunnelTap(name, netns) -> { fd, mac } | { errno, stage }. A TAP that takes frames with a
// virtio_net_hdr_v1_hash_tunnel and UDP-tunnel GSO: what is written to it arrives in the kernel as
// if from a NIC and is routed like any packet to the peer node's underlay address. Its source is
// this node's own address, so the device accepts local sources (accept_local) and does no
// reverse-path check; it has no address, no IPv6, and is gone when the fd closes.
// stage "offload": the kernel lacks UDP-tunnel GSO on TUN (before 6.17); "rpfilter": strict
// reverse-path filtering for all interfaces would drop the frames (conf/all/rp_filter = 1).
Napi::Value OpenTunnelTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!GetName(info, 0, &name)) return env.Undefined();
  std::string ns = OptString(info, 1);
  const char* stage = "";
  uint8_t mac[6] = {0};
  int r = InNetns(ns, &stage, [&]() -> int {
    if (ReadSysctl("/proc/sys/net/ipv4/conf/all/rp_filter") == 1) { stage = "rpfilter"; return -EPERM; }
    struct ifreq ifr;
    int fd = MakeTun(name, IFF_TAP | IFF_VNET_HDR, TNL_VNET_HDR_LEN,
                     TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UDP_TUNNEL_GSO_, &stage, &ifr);
    if (fd < 0) return fd;
    std::string conf = "/proc/sys/net/ipv4/conf/" + std::string(ifr.ifr_name) + "/";
    if (!WriteSysctl(conf + "accept_local", "1") || !WriteSysctl(conf + "rp_filter", "0")) {
      int e = errno; close(fd); stage = "sysctl"; return -(e ? e : EIO);
    }
    WriteSysctl("/proc/sys/net/ipv6/conf/" + std::string(ifr.ifr_name) + "/disable_ipv6", "1");
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) { int e = errno; close(fd); stage = "up"; return -e; }
    struct ifreq q;
    memset(&q, 0, sizeof q);
    memcpy(q.ifr_name, ifr.ifr_name, IFNAMSIZ);
    int ok = ioctl(s, SIOCGIFHWADDR, &q);
    if (ok == 0) memcpy(mac, q.ifr_hwaddr.sa_data, 6);
    if (ok == 0) ok = ioctl(s, SIOCGIFFLAGS, &q);
    if (ok == 0) { q.ifr_flags = short(q.ifr_flags | IFF_UP); ok = ioctl(s, SIOCSIFFLAGS, &q); }
    int e = errno;
    close(s);
    if (ok < 0) { close(fd); stage = "up"; return -e; }
    return fd;
  });
  Napi::Object out = FdResult(env, r, stage);
  if (r >= 0) {
    char text[18];
    snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    out.Set("mac", Napi::String::New(env, text));
  }
  return out;
}

}  // namespace

void RegisterTun(Napi::Env env, Napi::Object exports) {
  ExportAll(env, exports, {
      {"openTun", OpenTun},
      {"readBatch", ReadBatch},
      {"writeBatch", WriteBatch},
      {"probeUring", ProbeUring},
      {"openTunnelTap", OpenTunnelTap},
  });
}

}  // namespace wasp
