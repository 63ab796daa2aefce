// rtnetlink for the CNI plugin: a NETLINK_ROUTE socket opened inside a network namespace, and one
// request at a time on it, off the JS thread. Messages are built and parsed in TypeScript
// (src/netlink/); this file only owns the socket, the send and the wait for the kernel's answer,
// so a veth deletion that takes the kernel milliseconds never stalls the daemon's packet loop.
#include "netlink.h"

#include <errno.h>
#include <linux/netlink.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "args.h"
#include "fd_result.h"
#include "netns.h"

namespace wasp {
namespace {

constexpr int TIMEOUT_MS = 10000;

// netlinkOpen(netns?) -> { fd } | { errno, stage }
Napi::Value NetlinkOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string ns = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  const char* stage = "";
  int r = InNetns(ns, &stage, [&]() -> int {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) { stage = "socket"; return -errno; }
    int one = 1;
    // Extended acks carry the kernel's own sentence for a refusal ("Invalid prefix for given
    // prefix length"); cap acks keep those error messages short (no copy of our request).
    setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof sa);
    sa.nl_family = AF_NETLINK;
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
      int e = errno; close(fd); stage = "bind"; return -e;
    }
    return fd;
  });
  return FdResult(env, r, stage);
}

// One request: send the message (its header already says NLM_F_ACK and its sequence number),
// then collect every answer with that sequence number until the ack (NLMSG_ERROR) or NLMSG_DONE.
class Request : public Napi::AsyncWorker {
 public:
  Request(Napi::Env env, int fd, const uint8_t* msg, size_t len)
      : Napi::AsyncWorker(env), fd_(fd), msg_(msg, msg + len), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    if (msg_.size() < sizeof(nlmsghdr)) { errno_ = EINVAL; return; }
    uint32_t seq = reinterpret_cast<const nlmsghdr*>(msg_.data())->nlmsg_seq;
    ssize_t n;
    do n = send(fd_, msg_.data(), msg_.size(), 0); while (n < 0 && errno == EINTR);
    if (n < 0) { errno_ = errno; return; }
    std::vector<uint8_t> buf(1 << 16);
    for (;;) {
      struct pollfd p = {fd_, POLLIN, 0};
      int pr;
      do pr = poll(&p, 1, TIMEOUT_MS); while (pr < 0 && errno == EINTR);
      if (pr == 0) { errno_ = ETIMEDOUT; return; }
      if (pr < 0) { errno_ = errno; return; }
      do n = recv(fd_, buf.data(), buf.size(), 0); while (n < 0 && errno == EINTR);
      if (n < 0) { errno_ = errno; return; }
      size_t left = size_t(n);
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
        if (h->nlmsg_seq != seq) continue;  // a late answer to an abandoned request
        if (h->nlmsg_type == NLMSG_DONE) return;
        if (h->nlmsg_type == NLMSG_ERROR) {
          auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
          errno_ = -e->error;
          ReadExtAck(h, e);
          return;
        }
        const uint8_t* b = reinterpret_cast<const uint8_t*>(h);
        replies_.insert(replies_.end(), b, b + h->nlmsg_len);
      }
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("errno", Napi::Number::New(env, errno_));
    if (!extMsg_.empty()) out.Set("message", Napi::String::New(env, extMsg_));
    out.Set("replies", Napi::Buffer<uint8_t>::Copy(env, replies_.data(), replies_.size()));
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  // The NLMSGERR_ATTR_MSG string of an extended ack, when the kernel sent one.
  void ReadExtAck(const nlmsghdr* h, const nlmsgerr* e) {
    if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return;
    size_t off = NLMSG_HDRLEN + sizeof(nlmsgerr);
    if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += e->msg.nlmsg_len - NLMSG_HDRLEN;
    const uint8_t* base = reinterpret_cast<const uint8_t*>(h);
    while (off + sizeof(nlattr) <= h->nlmsg_len) {
      auto* a = reinterpret_cast<const nlattr*>(base + off);
      if (a->nla_len < sizeof(nlattr) || off + a->nla_len > h->nlmsg_len) return;
      if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
        const char* s = reinterpret_cast<const char*>(a) + NLA_HDRLEN;
        extMsg_.assign(s, strnlen(s, a->nla_len - NLA_HDRLEN));
        return;
      }
      off += NLA_ALIGN(a->nla_len);
    }
  }

  int fd_;
  std::vector<uint8_t> msg_;
  Napi::Promise::Deferred deferred_;
  int errno_ = 0;
  std::string extMsg_;
  std::vector<uint8_t> replies_;
};

// netlinkRequest(fd, message) -> Promise<{ errno, message?, replies }>
Napi::Value NetlinkRequest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsBuffer()) {
    Napi::TypeError::New(env, "netlinkRequest(fd, Buffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto msg = info[1].As<Napi::Buffer<uint8_t>>();
  auto* r = new Request(env, info[0].As<Napi::Number>().Int32Value(), msg.Data(), msg.Length());
  Napi::Promise p = r->Promise();
  r->Queue();
  return p;
}

}  // namespace

void RegisterNetlink(Napi::Env env, Napi::Object exports) {
  ExportAll(env, exports, {{"netlinkOpen", NetlinkOpen}, {"netlinkRequest", NetlinkRequest}});
}

}  // namespace wasp
