// Readiness of a device or socket through libuv, for src/io/readiness.ts.
#include "poller.h"

#include <errno.h>
#include <uv.h>

#include <string>

namespace wasp {
namespace {

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

void RegisterPoller(Napi::Env env, Napi::Object exports) { exports.Set("Poller", Poller::Init(env)); }

}  // namespace wasp
