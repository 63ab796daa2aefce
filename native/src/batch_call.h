// The frame of writeBatch and sendBatch: (fd, memory, slotsAddr, count, verdictMask, ..., drops).
#pragma once
#include <napi.h>

#include <cerrno>
#include <cstdint>

#include "args.h"
#include "drops.h"
#include "memory.h"
#include "state.h"

namespace wasp {

struct BatchArgs {
  int fd;
  Mem m;
  uint32_t slots, count, mask;
};

// Reads the common arguments and the drops array at dropsAt, checks that every selected packet
// (with hdr bytes before it) lies inside memory (else -EFAULT, nothing sent), then returns what
// body(state, args, drops) returns: packets sent, or -errno for a broken fd.
template <typename Body>
Napi::Value BatchCall(const Napi::CallbackInfo& info, size_t dropsAt, uint32_t hdr, Body body) {
  Napi::Env env = info.Env();
  BatchArgs a;
  int32_t* dropFields;
  if (!GetFd(info, 0, &a.fd) || !GetMem(info, 1, &a.m) || !GetU32(info, 2, &a.slots) ||
      !GetU32(info, 3, &a.count) || !GetU32(info, 4, &a.mask) || !GetDrops(info, dropsAt, &dropFields))
    return env.Undefined();
  if (!PacketsInside(a.m, a.slots, a.count, a.mask, hdr)) return Napi::Number::New(env, -EFAULT);
  Drops drops(dropFields);
  return Napi::Number::New(env, int32_t(body(env.GetInstanceData<State>(), a, drops)));
}

}  // namespace wasp
