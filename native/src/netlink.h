// rtnetlink sockets for the CNI plugin (netlink.cc).
#pragma once
#include <napi.h>

namespace wasp {
void RegisterNetlink(Napi::Env env, Napi::Object exports);
}
