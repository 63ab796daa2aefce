// ctnetlink for offload mode (conntrack.cc).
#pragma once
#include <napi.h>

namespace wasp {
void RegisterConntrack(Napi::Env env, Napi::Object exports);
}
