// io_uring without liburing, for the batched TUN reads and writes (tun.cc).
#pragma once
#include <errno.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace wasp {

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

}  // namespace wasp
