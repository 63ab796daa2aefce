// ctnetlink for offload mode: a NETLINK_NETFILTER socket, and a batch of requests the engine wrote
// (its NEW and DELETE messages for a batch's new flows) sent in ONE sendmsg. The kernel handles
// netlink requests inside sendmsg, so by its return the entries exist (the batch's packets can be
// written back to the TUN) and every answer is queued: the engine's requests ask for no ack, so a
// batch that went in whole costs one recv that finds nothing. Dumps go through netlinkRequest
// (netlink.cc), off the JS thread.
#include "conntrack.h"

#include <errno.h>
#include <linux/netlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "args.h"
#include "fd_result.h"
#include "netns.h"

namespace wasp {
namespace {

// A batch of 256 flows is 512 requests of up to ~300 bytes: 150 KiB out, 512 acks of 36 bytes in.
constexpr int SOCKET_BUFFER = 4 << 20;

// ctOpen(netns?) -> { fd } | { errno, stage }
Napi::Value CtOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string ns = OptString(info, 0);
  const char* stage = "";
  int r = InNetns(ns, &stage, [&]() -> int {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0) { stage = "socket"; return -errno; }
    int one = 1, size = SOCKET_BUFFER;
    // cap acks: an error answer carries the request's header only, not the whole request
    setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    // FORCE ignores rmem_max/wmem_max (root); the plain ones are the fallback
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof sa);
    sa.nl_family = AF_NETLINK;
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) { int e = errno; close(fd); stage = "bind"; return -e; }
    return fd;
  });
  return FdResult(env, r, stage);
}

// ctTransact(fd, buffer, offset, length, results: Int32Array) -> answers read, or -errno when the
// send failed. The requests carry seq 1..results.length; results[seq - 1] becomes the errno the kernel
// answered, or stays 0: a request that asked for no ack is answered only when refused, one that did
// (NLM_F_ACK) with 0 too.
Napi::Value CtTransact(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsArrayBuffer() || !info[2].IsNumber() || !info[3].IsNumber() || !info[4].IsTypedArray()) {
    Napi::TypeError::New(env, "ctTransact(fd, ArrayBuffer, offset, length, Int32Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto buf = info[1].As<Napi::ArrayBuffer>();
  uint64_t off = info[2].As<Napi::Number>().Int64Value(), len = info[3].As<Napi::Number>().Int64Value();
  auto results = info[4].As<Napi::Int32Array>();
  if (off + len > buf.ByteLength() || len < sizeof(nlmsghdr)) return Napi::Number::New(env, -EFAULT);
  const size_t n = results.ElementLength();
  for (size_t i = 0; i < n; i++) results[i] = 0;
  const uint8_t* msg = static_cast<const uint8_t*>(buf.Data()) + off;
  ssize_t sent;
  do sent = send(fd, msg, len, 0); while (sent < 0 && errno == EINTR);
  if (sent < 0) return Napi::Number::New(env, -errno);
  // Every answer is queued by now: read until none is left (the first recv usually finds none).
  static thread_local uint8_t in[1 << 16];
  size_t answered = 0;
  for (;;) {
    ssize_t got;
    do got = recv(fd, in, sizeof in, MSG_DONTWAIT); while (got < 0 && errno == EINTR);
    if (got <= 0) break;
    size_t left = size_t(got);
    for (auto* h = reinterpret_cast<nlmsghdr*>(in); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq == 0 || h->nlmsg_seq > n) continue;
      results[h->nlmsg_seq - 1] = -static_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
      answered++;
    }
  }
  return Napi::Number::New(env, double(answered));
}

}  // namespace

void RegisterConntrack(Napi::Env env, Napi::Object exports) {
  ExportAll(env, exports, {{"ctOpen", CtOpen}, {"ctTransact", CtTransact}});
}

}  // namespace wasp
