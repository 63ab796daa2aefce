// Readiness of an fd through libuv (poller.cc): the Poller class.
#pragma once
#include <napi.h>

namespace wasp {
void RegisterPoller(Napi::Env env, Napi::Object exports);
}
