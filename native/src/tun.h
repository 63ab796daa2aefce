// TUN/TAP devices and the tunnel TAP (tun.cc): openTun, readBatch, writeBatch, probeUring,
// openTunnelTap.
#pragma once
#include <napi.h>

namespace wasp {
void RegisterTun(Napi::Env env, Napi::Object exports);
}
