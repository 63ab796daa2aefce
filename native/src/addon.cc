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

#include <cstdint>
#include <string>

#include "netlink.h"
#include "netns.h"

namespace {

using wasp::InNetns;

// ╒═══ batch slot, 32 bytes, little-endian (assembly/abi.ts) ═══╕
//  0 u32 data | 4 u32 len | 8 u16 flags | 10 u8 verdict | 11 u8 reason | 12 u32 peer
// 16 u32 bufStart | 20 u32 bufEnd | 24 u32 service | 28 u32 note
constexpr uint32_t SLOT_SIZE = 32;
constexpr uint32_t SLOT_DATA = 0, SLOT_LEN = 4, SLOT_FLAGS = 8, SLOT_VERDICT = 10, SLOT_PEER = 12,
                   SLOT_BUF_START = 16, SLOT_BUF_END = 20;
constexpr uint16_t FLAG_FROM_OVERLAY = 1, FLAG_VNET = 2;
constexpr uint32_t VNET_HDR_LEN = 10;  // struct virtio_net_hdr without num_buffers
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
struct State {
  uint32_t writeErrors = 0;
  int writeErrno = 0;
  Ring ring;
  unsigned readHint = 4;  // reads the next io_uring batch starts with (see ReadRing)
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

// The slot table itself must lie inside memory (64-bit sums: no u32 wrap-around).
bool SlotsInside(const Mem& m, uint32_t slotsAddr, uint32_t count) {
  return uint64_t(slotsAddr) + uint64_t(count) * SLOT_SIZE <= m.size;
}

// openTun(name, tap, vnetHdr, multiQueue, netns) -> { fd } | { errno, stage }
Napi::Value OpenTun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    Napi::TypeError::New(env, "name must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  bool tap = info[1].ToBoolean(), vnet = info[2].ToBoolean(), mq = info[3].ToBoolean();
  std::string ns = info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "";
  const char* stage = "";
  int r = InNetns(ns, &stage, [&]() -> int {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) { stage = "open"; return -errno; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = short((tap ? IFF_TAP : IFF_TUN) | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0) |
                          (mq ? IFF_MULTI_QUEUE : 0));
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name.c_str());
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) { int e = errno; close(fd); stage = "setiff"; return -e; }
    if (vnet) {
      int hlen = VNET_HDR_LEN;
      if (ioctl(fd, TUNSETVNETHDRSZ, &hlen) < 0) {
        int e = errno; close(fd); stage = "vnethdr"; return -e;
      }
      // With these the kernel hands over GSO super-packets (up to 64 KiB) with partial checksums.
      unsigned off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
      if (ioctl(fd, TUNSETOFFLOAD, off) < 0) { int e = errno; close(fd); stage = "offload"; return -e; }
    }
    return fd;
  });
  Napi::Object out = Napi::Object::New(env);
  if (r < 0) {
    out.Set("errno", Napi::Number::New(env, -r));
    out.Set("stage", Napi::String::New(env, stage));
  } else {
    out.Set("fd", Napi::Number::New(env, r));
  }
  return out;
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
                                            : (hdr ? FLAG_VNET : 0);
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

// lastWriteErrors() -> [dropped, errno of the last drop] for the previous writeBatch/sendBatch.
Napi::Value LastWriteErrors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State* st = env.GetInstanceData<State>();
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(uint32_t(0), Napi::Number::New(env, st->writeErrors));
  a.Set(uint32_t(1), Napi::Number::New(env, st->writeErrno));
  return a;
}

// probeUring() -> 0 when this thread's io_uring is set up, else -errno (ENOSYS, EPERM).
Napi::Value ProbeUring(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), info.Env().GetInstanceData<State>()->ring.Setup());
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info, 0, &fd)) return info.Env().Undefined();
  // Linux closes the fd even when close() reports EINTR: never retry.
  return Napi::Number::New(info.Env(), close(fd) < 0 ? -errno : 0);
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
  std::string ns = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
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

// recvBatch(udpFd, memory, slotsAddr, count) -> datagrams received, or -errno (first call only).
// Payload (the VXLAN header on) lands at data; peer = sender IPv4 in host order.
Napi::Value RecvBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd; Mem m; uint32_t slots, count;
  if (!GetFd(info, 0, &fd) || !GetMem(info, 1, &m) || !GetU32(info, 2, &slots) ||
      !GetU32(info, 3, &count))
    return env.Undefined();
  if (!SlotsInside(m, slots, count)) return Napi::Number::New(env, -EFAULT);
  for (uint32_t i = 0; i < count; i++) {
    uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
    uint32_t data = ld32(m.base, s + SLOT_DATA), bs = ld32(m.base, s + SLOT_BUF_START),
             be = ld32(m.base, s + SLOT_BUF_END);
    if (data < bs || data >= be || be > m.size) return Napi::Number::New(env, -EFAULT);
  }
  struct mmsghdr msgs[MMSG_CHUNK];
  struct iovec iov[MMSG_CHUNK];
  struct sockaddr_in from[MMSG_CHUNK];
  uint32_t n = 0;
  while (n < count) {
    unsigned k = count - n < MMSG_CHUNK ? count - n : MMSG_CHUNK;
    for (unsigned j = 0; j < k; j++) {
      uint64_t s = uint64_t(slots) + uint64_t(n + j) * SLOT_SIZE;
      uint32_t data = ld32(m.base, s + SLOT_DATA), be = ld32(m.base, s + SLOT_BUF_END);
      iov[j].iov_base = m.base + data;
      iov[j].iov_len = be - data;
      memset(&msgs[j].msg_hdr, 0, sizeof msgs[j].msg_hdr);
      msgs[j].msg_hdr.msg_iov = &iov[j];
      msgs[j].msg_hdr.msg_iovlen = 1;
      msgs[j].msg_hdr.msg_name = &from[j];
      msgs[j].msg_hdr.msg_namelen = sizeof from[j];
    }
    int got = recvmmsg(fd, msgs, k, MSG_DONTWAIT, nullptr);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || n > 0) break;
      return Napi::Number::New(env, -errno);
    }
    for (int j = 0; j < got; j++) {
      uint64_t s = uint64_t(slots) + uint64_t(n + j) * SLOT_SIZE;
      st32(m.base, s + SLOT_LEN, msgs[j].msg_len);
      st32(m.base, s + SLOT_PEER, ntohl(from[j].sin_addr.s_addr));
      st16(m.base, s + SLOT_FLAGS, ld16(m.base, s + SLOT_FLAGS) | FLAG_FROM_OVERLAY);
    }
    n += got;
    if (unsigned(got) < k) break;  // the queue is empty
  }
  return Napi::Number::New(env, n);
}

// sendBatch(rawFd, memory, slotsAddr, count, verdictMask) -> packets sent, or -errno for a
// broken fd. Each selected slot holds a whole IPv4 packet; it goes to peer (host order).
// Refused packets are dropped and counted (lastWriteErrors()).
Napi::Value SendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd; Mem m; uint32_t slots, count, mask;
  if (!GetFd(info, 0, &fd) || !GetMem(info, 1, &m) || !GetU32(info, 2, &slots) ||
      !GetU32(info, 3, &count) || !GetU32(info, 4, &mask))
    return env.Undefined();
  State* st = env.GetInstanceData<State>();
  st->writeErrors = 0;
  st->writeErrno = 0;
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
  while (i < count) {
    unsigned k = 0;
    for (; i < count && k < MMSG_CHUNK; i++) {
      uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
      if (!Selected(m.base, s, mask)) continue;
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
    }
    unsigned off = 0;
    while (off < k) {
      int r = sendmmsg(fd, msgs + off, k - off, MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EBADF || errno == ENOTSOCK) return Napi::Number::New(env, -errno);
        // sendmmsg reports only the first failure: drop that packet, go on with the rest.
        st->writeErrors++;
        st->writeErrno = errno;
        off++;
        continue;
      }
      sent += r;
      off += r;
    }
  }
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new State());
  exports.Set("openTun", Napi::Function::New(env, OpenTun, "openTun"));
  exports.Set("readBatch", Napi::Function::New(env, ReadBatch, "readBatch"));
  exports.Set("writeBatch", Napi::Function::New(env, WriteBatch, "writeBatch"));
  exports.Set("lastWriteErrors", Napi::Function::New(env, LastWriteErrors, "lastWriteErrors"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("probeUring", Napi::Function::New(env, ProbeUring, "probeUring"));
  exports.Set("openUnderlay", Napi::Function::New(env, OpenUnderlay, "openUnderlay"));
  exports.Set("recvBatch", Napi::Function::New(env, RecvBatch, "recvBatch"));
  exports.Set("sendBatch", Napi::Function::New(env, SendBatch, "sendBatch"));
  exports.Set("Poller", Poller::Init(env));
  wasp::RegisterNetlink(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(wasp_native, Init)
