// The underlay's sockets: a UDP socket that receives VXLAN (UDP GRO on) and a raw IPv4 socket
// that sends the outer packets the engine built; and close(), which forgets an fd's state.
#include "underlay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sock_diag.h>
#include <linux/udp.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "args.h"
#include "fd_result.h"
#include "netns.h"
#include "state.h"

namespace wasp {
namespace {

// socketDrops(fd) -> datagrams the kernel dropped at this socket since it was made (its receive
// buffer full: SO_MEMINFO's SK_MEMINFO_DROPS, what ss -m shows as d), or -errno.
Napi::Value SocketDrops(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info, 0, &fd)) return info.Env().Undefined();
  uint32_t mem[SK_MEMINFO_VARS] = {};
  socklen_t len = sizeof mem;
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0) return Napi::Number::New(info.Env(), -errno);
  if (len <= SK_MEMINFO_DROPS * sizeof(uint32_t)) return Napi::Number::New(info.Env(), -EINVAL);
  return Napi::Number::New(info.Env(), mem[SK_MEMINFO_DROPS]);
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
  Napi::Object out = FdResult(env, r, stage, "udpFd");
  if (r >= 0) out.Set("rawFd", Napi::Number::New(env, rawFd));
  return out;
}

}  // namespace

void RegisterUnderlay(Napi::Env env, Napi::Object exports) {
  ExportAll(env, exports, {{"openUnderlay", OpenUnderlay}, {"close", Close}, {"socketDrops", SocketDrops}});
}

}  // namespace wasp
