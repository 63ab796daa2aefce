// wasp_native: TUN/TAP and underlay sockets for the batch loop, reading and writing packets
// straight into slots of the wasm linear memory (one JS->native call per batch, no copies).
// Failures come back as -errno (openTun/openUnderlay also say which step failed); src/io/
// turns them into sentences. Only argument misuse throws here.
//
//   slot.h            the batch slot, assembly/abi.ts's layout; memory.h, args.h read it
//   tun.cc            TUN/TAP and the tunnel TAP: open, readBatch, writeBatch (io_uring: ring.h)
//   underlay.cc       the underlay's sockets; underlay_recv.cc: recvBatch; underlay_send.cc: sendBatch
//   poller.cc         readiness through libuv
//   netlink.cc        rtnetlink for the CNI plugin (and any one request off the JS thread)
//   conntrack.cc      ctnetlink batches for offload mode
//   state.h           what an env keeps between calls
#include <napi.h>

#include "conntrack.h"
#include "netlink.h"
#include "poller.h"
#include "state.h"
#include "tun.h"
#include "underlay.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new wasp::State());
  wasp::RegisterTun(env, exports);
  wasp::RegisterUnderlay(env, exports);
  wasp::RegisterUnderlayRecv(env, exports);
  wasp::RegisterUnderlaySend(env, exports);
  wasp::RegisterPoller(env, exports);
  wasp::RegisterNetlink(env, exports);
  wasp::RegisterConntrack(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(wasp_native, Init)
