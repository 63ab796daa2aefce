// wasp_native: TUN/TAP and underlay sockets for the batch loop, reading and writing packets
// straight into slots of the wasm linear memory (one JS->native call per batch, no copies).
// Failures come back as -errno (openTun/openUnderlay also say which step failed); src/io/
// turns them into sentences. Only argument misuse throws here.
#include <napi.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/sockios.h>
#include <linux/udp.h>
#include <netinet/ip.h>
#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <deque>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "netlink.h"
#include "fd_result.h"
#include "netns.h"
#include "slot.h"

namespace wasp {
namespace {

constexpr unsigned MMSG_CHUNK = 64;    // messages per recvmmsg/sendmmsg call

// An io_uring used synchronously: a batch of reads or writes is submitted and reaped in one
// io_uring_enter. Every request carries RWF_NOWAIT, so it completes inline with data or
// -EAGAIN (O_NONBLOCK alone is not enough: io_uring arms a poll for a pollable file and the
// read would wait for the next packet). No buffer stays in the kernel's hands after a call.
class Ring {
 public:
  static constexpr unsigned ENTRIES = 256;

  ~Ring() {
    if (sqes_) munmap(sqes_, sqesSize_);
    if (cqPtr_ && cqPtr_ != sqPtr_) munmap(cqPtr_, cqSize_);
    if (sqPtr_) munmap(sqPtr_, sqSize_);
    if (fd_ >= 0) close(fd_);
  }

  /** 0, or -errno (ENOSYS: no io_uring; EPERM: disabled by kernel.io_uring_disabled). */
  int Setup() {
    if (fd_ >= 0) return 0;
    if (setupErrno_) return -setupErrno_;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int fd = int(syscall(__NR_io_uring_setup, ENTRIES, &p));
    if (fd < 0) return -(setupErrno_ = errno);
    fd_ = fd;
    sqSize_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    cqSize_ = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    bool single = p.features & IORING_FEAT_SINGLE_MMAP;
    if (single) sqSize_ = cqSize_ = sqSize_ > cqSize_ ? sqSize_ : cqSize_;
    sqPtr_ = mmap(nullptr, sqSize_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (sqPtr_ == MAP_FAILED) { sqPtr_ = nullptr; return Fail(); }
    cqPtr_ = single ? sqPtr_
                    : mmap(nullptr, cqSize_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                           IORING_OFF_CQ_RING);
    if (cqPtr_ == MAP_FAILED) { cqPtr_ = nullptr; return Fail(); }
    sqesSize_ = p.sq_entries * sizeof(struct io_uring_sqe);
    void* sqes = mmap(nullptr, sqesSize_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) return Fail();
    sqes_ = static_cast<struct io_uring_sqe*>(sqes);
    auto* sq = static_cast<uint8_t*>(sqPtr_);
    auto* cq = static_cast<uint8_t*>(cqPtr_);
    sqTail_ = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
    sqMask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
    sqArray_ = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
    cqHead_ = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
    cqTail_ = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
    cqMask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<struct io_uring_cqe*>(cq + p.cq_off.cqes);
    entries_ = (p.sq_entries < ENTRIES ? p.sq_entries : ENTRIES) - 1;
    return 0;
  }

  static constexpr uint64_t CANCEL_TAG = ~uint64_t(0);

  /** Queues a cancel of every request in flight; they complete with -ECANCELED. */
  void PrepCancelAll() {
    unsigned tail = *sqTail_, i = tail & sqMask_;
    struct io_uring_sqe* e = &sqes_[i];
    memset(e, 0, sizeof *e);
    e->opcode = IORING_OP_ASYNC_CANCEL;
    e->fd = -1;
    e->cancel_flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL;
    e->user_data = CANCEL_TAG;
    sqArray_[i] = i;
    __atomic_store_n(sqTail_, tail + 1, __ATOMIC_RELEASE);
  }

  /** Requests one SubmitAndWait may carry (one SQ entry stays free for a cancel). */
  unsigned Entries() const { return entries_; }

  /** Queues op on fd for [buf, buf+len); the completion reports index. */
  void Prep(uint8_t op, int fd, void* buf, uint32_t len, uint64_t index) {
    unsigned tail = *sqTail_, i = tail & sqMask_;
    struct io_uring_sqe* e = &sqes_[i];
    memset(e, 0, sizeof *e);
    e->opcode = op;
    e->fd = fd;
    e->addr = reinterpret_cast<uint64_t>(buf);
    e->len = len;
    e->off = uint64_t(-1);  // "current position", as read()/write(): a TUN or socket has none
    e->rw_flags = RWF_NOWAIT;
    e->user_data = index;
    sqArray_[i] = i;
    __atomic_store_n(sqTail_, tail + 1, __ATOMIC_RELEASE);
  }

  /** Submits the k queued requests, waits for all k, stores each result at res[index]. */
  int SubmitAndWait(unsigned k, int* res) {
    unsigned done = 0, toSubmit = k, expect = k;
    bool cancelled = false;
    while (done < expect) {
      // Bounded wait: should a request still end up waiting for data (a kernel that ignores
      // RWF_NOWAIT here), cancel everything rather than freeze the event loop.
      struct __kernel_timespec ts = {0, 200 * 1000 * 1000};
      struct io_uring_getevents_arg arg;
      memset(&arg, 0, sizeof arg);
      arg.ts = reinterpret_cast<uint64_t>(&ts);
      int r = int(syscall(__NR_io_uring_enter, fd_, toSubmit, expect - done,
                          IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg));
      int e = r < 0 ? errno : 0;
      if (r > 0) toSubmit -= unsigned(r) < toSubmit ? unsigned(r) : toSubmit;
      unsigned head = *cqHead_, tail = __atomic_load_n(cqTail_, __ATOMIC_ACQUIRE);
      for (; head != tail; head++, done++) {
        const struct io_uring_cqe& c = cqes_[head & cqMask_];
        if (c.user_data != CANCEL_TAG) res[c.user_data] = c.res;
      }
      __atomic_store_n(cqHead_, head, __ATOMIC_RELEASE);
      if (r >= 0 || e == EINTR) continue;
      if (e != ETIME || cancelled) return -e;
      PrepCancelAll();
      toSubmit = 1;
      expect++;
      cancelled = true;
    }
    return 0;
  }

 private:
  int Fail() {
    int e = errno;
    close(fd_);
    fd_ = -1;
    return -(setupErrno_ = e);
  }

  int fd_ = -1, setupErrno_ = 0;
  void *sqPtr_ = nullptr, *cqPtr_ = nullptr;
  size_t sqSize_ = 0, cqSize_ = 0, sqesSize_ = 0;
  struct io_uring_sqe* sqes_ = nullptr;
  unsigned *sqTail_ = nullptr, *sqArray_ = nullptr, *cqHead_ = nullptr, *cqTail_ = nullptr;
  unsigned sqMask_ = 0, cqMask_ = 0, entries_ = 0;
  struct io_uring_cqe* cqes_ = nullptr;
};

// Per-env state: worker threads each load their own instance, so no process-wide counters.
// UDP sockets for UDP GSO on the underlay, one per outer (source address, source port): a UDP
// socket's source port is its bound port, and the engine picks the port per inner flow.
struct GsoPool {
  std::unordered_map<uint64_t, int> fds;
  bool disabled = false;  // the kernel refused UDP_SEGMENT: raw sends only
  uint64_t segments = 0;  // sent through UDP GSO (underlayGsoStats)
  uint64_t sends = 0;
};

// Segments of UDP GRO datagrams that did not fit the last recvBatch, delivered first by the next.
struct RecvPending {
  struct Datagram { std::vector<uint8_t> bytes; uint32_t gso, peer; size_t off; };
  std::deque<Datagram> queue;
};

struct State {
  uint32_t writeErrors = 0;
  int writeErrno = 0;
  uint32_t tunnelRefused = 0;  // tunnel TAP writes the kernel refused as malformed (EINVAL)
  Ring ring;
  unsigned readHint = 4;  // reads the next io_uring batch starts with (see ReadRing)
  std::unordered_map<int, GsoPool> gso;  // by the underlay's raw fd
  std::unordered_map<int, RecvPending> pending;  // by the underlay's UDP fd
  std::unordered_set<int> groOff;                // UDP fds whose caller's slots are too small for GRO
  std::unordered_map<int, uint32_t> segsHint;     // by UDP fd: most segments a datagram had last time
  // frame trains made by SplitTunnelGso, one per datagram of a recvmmsg call
  std::vector<std::vector<uint8_t>> split = std::vector<std::vector<uint8_t>>(MMSG_CHUNK);
};

// x86/arm hosts are little-endian like wasm, but memcpy keeps unaligned access defined.
inline uint32_t ld32(const uint8_t* m, uint64_t a) { uint32_t v; memcpy(&v, m + a, 4); return v; }
inline uint16_t ld16(const uint8_t* m, uint64_t a) { uint16_t v; memcpy(&v, m + a, 2); return v; }
inline void st32(uint8_t* m, uint64_t a, uint32_t v) { memcpy(m + a, &v, 4); }
inline void st16(uint8_t* m, uint64_t a, uint16_t v) { memcpy(m + a, &v, 2); }

struct Mem {
  uint8_t* base;
  uint64_t size;
};

bool GetMem(const Napi::CallbackInfo& info, size_t i, Mem* out) {
  if (!info[i].IsArrayBuffer()) {
    Napi::TypeError::New(info.Env(), "memory must be an ArrayBuffer (WebAssembly.Memory.buffer)")
        .ThrowAsJavaScriptException();
    return false;
  }
  auto ab = info[i].As<Napi::ArrayBuffer>();
  out->base = static_cast<uint8_t*>(ab.Data());
  out->size = ab.ByteLength();
  return true;
}

bool GetU32(const Napi::CallbackInfo& info, size_t i, uint32_t* out) {
  if (!info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::Number>().Uint32Value();
  return true;
}

bool GetFd(const Napi::CallbackInfo& info, size_t i, int* out) {
  if (!info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), "fd must be a number").ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::Number>().Int32Value();
  return true;
}

// A device name (required) at argument i; false with a TypeError pending when it is not a string.
bool GetName(const Napi::CallbackInfo& info, size_t i, std::string* out) {
  if (!info[i].IsString()) {
    Napi::TypeError::New(info.Env(), "name must be a string").ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  return true;
}

// An optional string argument (a namespace path): "" when absent.
std::string OptString(const Napi::CallbackInfo& info, size_t i) {
  return info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
}

// The slot table itself must lie inside memory (64-bit sums: no u32 wrap-around).
bool SlotsInside(const Mem& m, uint32_t slotsAddr, uint32_t count) {
  return uint64_t(slotsAddr) + uint64_t(count) * SLOT_SIZE <= m.size;
}

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

// openTun(name, tap, vnetHdr, multiQueue, netns) -> { fd } | { errno, stage }
Napi::Value OpenTun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!GetName(info, 0, &name)) return env.Undefined();
  bool tap = info[1].ToBoolean(), vnet = info[2].ToBoolean(), mq = info[3].ToBoolean();
  std::string ns = OptString(info, 4);
  const char* stage = "";
  int r = InNetns(ns, &stage, [&]() -> int {
    struct ifreq ifr;
    // With these offloads the kernel hands over GSO super-packets (up to 64 KiB) with partial checksums.
    return MakeTun(name, (tap ? IFF_TAP : IFF_TUN) | (vnet ? IFF_VNET_HDR : 0) | (mq ? IFF_MULTI_QUEUE : 0),
                   VNET_HDR_LEN, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, &stage, &ifr);
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
  if (!SlotsInside(m, slots, count)) return Napi::Number::New(env, -EFAULT);
  // Check every slot before the first read: a bad batch writes nothing at all.
  for (uint32_t i = 0; i < count; i++) {
    uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
    uint32_t data = ld32(m.base, s + SLOT_DATA), bs = ld32(m.base, s + SLOT_BUF_START),
             be = ld32(m.base, s + SLOT_BUF_END);
    if (data < hdr || data - hdr < bs || data >= be || be > m.size)
      return Napi::Number::New(env, -EFAULT);
  }
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

inline bool Selected(const uint8_t* m, uint64_t s, uint32_t mask) {
  uint8_t v = m[s + SLOT_VERDICT];
  return v < 32 && ((1u << v) & mask);
}

// The writes of a batch through io_uring; like the write() loop, a refused packet is counted.
int32_t WriteRing(State* st, int fd, const Mem& m, uint32_t slots, uint32_t count, uint32_t mask,
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
      st->writeErrors++;
      st->writeErrno = -res[j];
    }
  }
  return int32_t(n);
}

// writeBatch(fd, memory, slotsAddr, count, verdictMask, vnet, uring) -> packets written, or -errno for
// a broken fd. A refused packet (EAGAIN, ENOBUFS, EINVAL...) is dropped and counted; see
// lastWriteErrors(). -EFAULT: a selected slot points outside memory (nothing written).
Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd; Mem m; uint32_t slots, count, mask;
  if (!GetFd(info, 0, &fd) || !GetMem(info, 1, &m) || !GetU32(info, 2, &slots) ||
      !GetU32(info, 3, &count) || !GetU32(info, 4, &mask))
    return env.Undefined();
  const uint32_t hdr = info[5].ToBoolean() ? VNET_HDR_LEN : 0;
  State* st = env.GetInstanceData<State>();
  st->writeErrors = 0;
  st->writeErrno = 0;
  if (!SlotsInside(m, slots, count)) return Napi::Number::New(env, -EFAULT);
  for (uint32_t i = 0; i < count; i++) {
    uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
    if (!Selected(m.base, s, mask)) continue;
    uint32_t data = ld32(m.base, s + SLOT_DATA), len = ld32(m.base, s + SLOT_LEN);
    if (data < hdr || uint64_t(data) + len > m.size) return Napi::Number::New(env, -EFAULT);
  }
  if (info[6].ToBoolean()) return Napi::Number::New(env, WriteRing(st, fd, m, slots, count, mask, hdr));
  uint32_t n = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
    if (!Selected(m.base, s, mask)) continue;
    uint32_t at = ld32(m.base, s + SLOT_DATA) - hdr, len = ld32(m.base, s + SLOT_LEN) + hdr;
    ssize_t put;
    do put = write(fd, m.base + at, len); while (put < 0 && errno == EINTR);
    if (put < 0) {
      if (errno == EBADF) return Napi::Number::New(env, -EBADF);
      // A TUN write is all or nothing; a full queue or a malformed packet loses this one only.
      st->writeErrors++;
      st->writeErrno = errno;
      continue;
    }
    n++;
  }
  return Napi::Number::New(env, n);
}

// lastWriteErrors() -> [dropped, errno of the last drop, tunnel frames refused as malformed] for the
// previous writeBatch/sendBatch.
Napi::Value LastWriteErrors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State* st = env.GetInstanceData<State>();
  Napi::Array a = Napi::Array::New(env, 3);
  a.Set(uint32_t(0), Napi::Number::New(env, st->writeErrors));
  a.Set(uint32_t(1), Napi::Number::New(env, st->writeErrno));
  a.Set(uint32_t(2), Napi::Number::New(env, st->tunnelRefused));
  return a;
}

// probeUring() -> 0 when this thread's io_uring is set up, else -errno (ENOSYS, EPERM).
Napi::Value ProbeUring(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), info.Env().GetInstanceData<State>()->ring.Setup());
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info, 0, &fd)) return info.Env().Undefined();
  // An underlay's raw fd takes its UDP GSO sockets with it.
  State* st = info.Env().GetInstanceData<State>();
  auto pool = st->gso.find(fd);
  if (pool != st->gso.end()) {
    for (auto& kv : pool->second.fds) close(kv.second);
    st->gso.erase(pool);
  }
  st->pending.erase(fd);
  st->groOff.erase(fd);
  st->segsHint.erase(fd);
  // Linux closes the fd even when close() reports EINTR: never retry.
  return Napi::Number::New(info.Env(), close(fd) < 0 ? -errno : 0);
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

// openUnderlay(bindIp, port, netns) -> { udpFd, rawFd } | { errno, stage }
Napi::Value OpenUnderlay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t port;
  if (!info[0].IsString() || !GetU32(info, 1, &port)) {
    if (!env.IsExceptionPending())
      Napi::TypeError::New(env, "bindIp must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string bindIp = info[0].As<Napi::String>().Utf8Value();
  std::string ns = OptString(info, 2);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(uint16_t(port));
  const char* stage = "";
  int rawFd = -1;
  int r;
  if (port > 65535 || inet_pton(AF_INET, bindIp.c_str(), &sa.sin_addr) != 1) {
    r = -EINVAL;
    stage = "address";
  } else {
    r = InNetns(ns, &stage, [&]() -> int {
      int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (u < 0) { stage = "udp"; return -errno; }
      int one = 1;
      setsockopt(u, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      // Bursts of VXLAN from many peers arrive between two polls: give them room.
      int rcv = 8 << 20;
      if (setsockopt(u, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) < 0)
        setsockopt(u, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
      if (bind(u, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) {
        int e = errno; close(u); stage = "bind"; return -e;
      }
      // UDP GRO (Linux 5.0): a burst of one flow's datagrams (or a peer's UDP GSO send) arrives as
      // one datagram with its segment size; recvBatch cuts it into slots. Optional: without it
      // the kernel delivers the segments one by one, as before.
      if (getenv("WASP_NO_UDP_GRO") == nullptr) setsockopt(u, IPPROTO_UDP, UDP_GRO, &one, sizeof one);
      // IPPROTO_RAW implies IP_HDRINCL: the engine sends the whole outer IPv4 packet.
      int w = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
      if (w < 0) { int e = errno; close(u); stage = "raw"; return -e; }
      int snd = 8 << 20;
      if (setsockopt(w, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) < 0)
        setsockopt(w, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
      rawFd = w;
      return u;
    });
  }
  Napi::Object out = Napi::Object::New(env);
  if (r < 0) {
    out.Set("errno", Napi::Number::New(env, -r));
    out.Set("stage", Napi::String::New(env, stage));
  } else {
    out.Set("udpFd", Napi::Number::New(env, r));
    out.Set("rawFd", Napi::Number::New(env, rawFd));
  }
  return out;
}

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
  if (!SlotsInside(m, slots, count)) return Napi::Number::New(env, -EFAULT);
  for (uint32_t i = 0; i < count; i++) {
    uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
    uint32_t data = ld32(m.base, s + SLOT_DATA), bs = ld32(m.base, s + SLOT_BUF_START),
             be = ld32(m.base, s + SLOT_BUF_END);
    if (data < bs || data >= be || be > m.size) return Napi::Number::New(env, -EFAULT);
  }
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
GsoResult SendGso(State* st, GsoPool& pool, int rawFd, const Mem& m, uint32_t slots, uint32_t i, uint32_t n) {
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
  if (r >= 0) { pool.segments += n; pool.sends++; return GsoResult::Sent; }
  switch (errno) {
    case EAGAIN: case ENOBUFS: case ENETUNREACH: case EHOSTUNREACH: case ECONNREFUSED:
      st->writeErrors += n;  // as the raw socket would have refused them
      st->writeErrno = errno;
      return GsoResult::Dropped;
    case EINVAL: case EMSGSIZE:
      return GsoResult::UseRaw;  // e.g. a segment longer than the route's MTU: the raw path fragments
    default:
      pool.disabled = true;      // ENOPROTOOPT, EOPNOTSUPP, EIO: no UDP GSO here
      return GsoResult::UseRaw;
  }
}

// sendBatch(rawFd, memory, slotsAddr, count, verdictMask, tapFd) -> packets sent, or -errno for a
// broken fd. Each selected slot holds a whole IPv4 packet; it goes to peer (host order). A slot
// noted TUNNEL_GSO holds a tunnel-GSO frame instead, written to tapFd (the tunnel TAP, -1: none).
// Refused packets are dropped and counted (lastWriteErrors()).
Napi::Value SendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd; Mem m; uint32_t slots, count, mask;
  if (!GetFd(info, 0, &fd) || !GetMem(info, 1, &m) || !GetU32(info, 2, &slots) ||
      !GetU32(info, 3, &count) || !GetU32(info, 4, &mask))
    return env.Undefined();
  const int tapFd = info[5].IsNumber() ? info[5].As<Napi::Number>().Int32Value() : -1;
  State* st = env.GetInstanceData<State>();
  st->writeErrors = 0;
  st->writeErrno = 0;
  st->tunnelRefused = 0;
  if (!SlotsInside(m, slots, count)) return Napi::Number::New(env, -EFAULT);
  for (uint32_t i = 0; i < count; i++) {
    uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
    if (!Selected(m.base, s, mask)) continue;
    uint32_t data = ld32(m.base, s + SLOT_DATA), len = ld32(m.base, s + SLOT_LEN);
    if (uint64_t(data) + len > m.size) return Napi::Number::New(env, -EFAULT);
  }
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
        st->writeErrors++;
        st->writeErrno = errno;
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
      if (!flush()) return Napi::Number::New(env, -errno);
      i++;
      ssize_t put = -1;
      errno = EBADF;
      if (tapFd >= 0) {
        do put = write(tapFd, m.base + ld32(m.base, s + SLOT_DATA), ld32(m.base, s + SLOT_LEN));
        while (put < 0 && errno == EINTR);
      }
      if (put >= 0) { sent++; continue; }
      st->writeErrors++;
      st->writeErrno = errno;
      if (errno == EINVAL || errno == EBADF) st->tunnelRefused++;
      continue;
    }
    if (useGso && !pool.disabled) {
      uint32_t n = GsoRun(m, slots, count, mask, i);
      if (n >= 2) {
        // what came before goes first: one flow's packets never overtake each other
        if (!flush()) return Napi::Number::New(env, -errno);
        GsoResult g = SendGso(st, pool, fd, m, slots, i, n);
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
    if (k == MMSG_CHUNK && !flush()) return Napi::Number::New(env, -errno);
  }
  if (!flush()) return Napi::Number::New(env, -errno);
  return Napi::Number::New(env, sent);
}

// Poller(fd, callback): readiness through libuv (epoll), so the event loop stays free while
// the device is idle. Level-triggered: callback(status) runs on every loop turn while data
// waits, so the callback should drain the fd. status < 0 is a libuv error (-errno).
class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {InstanceMethod("start", &Poller::Start), InstanceMethod("stop", &Poller::Stop),
                        InstanceMethod("close", &Poller::Close)});
  }

  Poller(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<Poller>(info), context_(info.Env(), "wasp.Poller") {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "Poller(fd: number, callback: function)").ThrowAsJavaScriptException();
      return;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      Napi::Error::New(env, "no libuv loop").ThrowAsJavaScriptException();
      return;
    }
    handle_ = new uv_poll_t;
    int r = uv_poll_init(loop, handle_, info[0].As<Napi::Number>().Int32Value());
    if (r < 0) {
      delete handle_;
      handle_ = nullptr;
      Napi::Error e = Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(r));
      e.Set("errno", Napi::Number::New(env, -r));
      e.ThrowAsJavaScriptException();
      return;
    }
    handle_->data = this;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
  }

  ~Poller() override { CloseHandle(); }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (!handle_) return Napi::Number::New(info.Env(), -EBADF);
    if (active_) return Napi::Number::New(info.Env(), 0);
    int r = uv_poll_start(handle_, UV_READABLE, OnPoll);
    if (r < 0) return Napi::Number::New(info.Env(), r);
    active_ = true;
    Ref();  // an active poller must outlive its last JS reference: its callback may still fire
    return Napi::Number::New(info.Env(), 0);
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    StopPolling();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    StopPolling();
    CloseHandle();
    return info.Env().Undefined();
  }

  void StopPolling() {
    if (!active_) return;
    uv_poll_stop(handle_);
    active_ = false;
    Unref();
  }

  void CloseHandle() {
    if (!handle_) return;
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    auto* self = static_cast<Poller*>(h->data);
    if (!self || !self->active_) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    // MakeCallback: microtasks (promise continuations) run right after, as for any libuv callback.
    self->callback_.MakeCallback(env.Global(), {Napi::Number::New(env, status)}, self->context_);
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());  // surfaces as process 'uncaughtException'
    }
  }

  uv_poll_t* handle_ = nullptr;
  bool active_ = false;
  Napi::FunctionReference callback_;
  Napi::AsyncContext context_;
};

}  // namespace
}  // namespace wasp

namespace {

using namespace wasp;

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new State());
  exports.Set("openTun", Napi::Function::New(env, OpenTun, "openTun"));
  exports.Set("readBatch", Napi::Function::New(env, ReadBatch, "readBatch"));
  exports.Set("writeBatch", Napi::Function::New(env, WriteBatch, "writeBatch"));
  exports.Set("lastWriteErrors", Napi::Function::New(env, LastWriteErrors, "lastWriteErrors"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("probeUring", Napi::Function::New(env, ProbeUring, "probeUring"));
  exports.Set("openUnderlay", Napi::Function::New(env, OpenUnderlay, "openUnderlay"));
  exports.Set("openTunnelTap", Napi::Function::New(env, OpenTunnelTap, "openTunnelTap"));
  exports.Set("recvBatch", Napi::Function::New(env, RecvBatch, "recvBatch"));
  exports.Set("recvPending", Napi::Function::New(env, RecvPending, "recvPending"));
  exports.Set("sendBatch", Napi::Function::New(env, SendBatch, "sendBatch"));
  exports.Set("Poller", Poller::Init(env));
  RegisterNetlink(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(wasp_native, Init)
