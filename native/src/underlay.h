// The VXLAN underlay, a file per job.
#pragma once
#include <napi.h>

namespace wasp {
// underlay.cc: openUnderlay (the UDP and the raw socket), close (any fd; an underlay fd takes its
// receive and send state along)
void RegisterUnderlay(Napi::Env env, Napi::Object exports);
// underlay_recv.cc: recvBatch (recvmmsg, UDP GRO, a peer's whole TSO packet cut into frames), recvPending
void RegisterUnderlayRecv(Napi::Env env, Napi::Object exports);
// underlay_send.cc: sendBatch (sendmmsg, UDP GSO, tunnel-GSO frames to the tunnel TAP)
void RegisterUnderlaySend(Napi::Env env, Napi::Object exports);
}  // namespace wasp
