// The arguments of the addon's functions: false means a TypeError is pending for JS.
#pragma once
#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "drops.h"
#include "memory.h"

namespace wasp {

inline bool GetMem(const Napi::CallbackInfo& info, size_t i, Mem* out) {
  if (!info[i].IsArrayBuffer()) {
    Napi::TypeError::New(info.Env(), "memory must be an ArrayBuffer (WebAssembly.Memory.buffer)")
        .ThrowAsJavaScriptException();
    return false;
  }
  auto ab = info[i].As<Napi::ArrayBuffer>();
  out->base = static_cast<uint8_t*>(ab.Data());
  out->size = ab.ByteLength();
  return true;
}

inline bool GetU32(const Napi::CallbackInfo& info, size_t i, uint32_t* out) {
  if (!info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::Number>().Uint32Value();
  return true;
}

inline bool GetFd(const Napi::CallbackInfo& info, size_t i, int* out) {
  if (!info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), "fd must be a number").ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::Number>().Int32Value();
  return true;
}

// A device name (required) at argument i; false with a TypeError pending when it is not a string.
inline bool GetName(const Napi::CallbackInfo& info, size_t i, std::string* out) {
  if (!info[i].IsString()) {
    Napi::TypeError::New(info.Env(), "name must be a string").ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  return true;
}

// The Int32Array of DROP_FIELDS that writeBatch/sendBatch report their drops in (drops.h).
inline bool GetDrops(const Napi::CallbackInfo& info, size_t i, int32_t** out) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      info[i].As<Napi::TypedArray>().ElementLength() < DROP_FIELDS) {
    Napi::TypeError::New(info.Env(), "drops must be an Int32Array of " + std::to_string(DROP_FIELDS))
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::Int32Array>().Data();
  return true;
}

// Sets exports[name] to fn for each pair, each function named for stack traces.
inline void ExportAll(Napi::Env env, Napi::Object exports,
                      std::initializer_list<std::pair<const char*, Napi::Function::Callback>> fns) {
  for (const auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
}

// An optional string argument (a namespace path): "" when absent.
inline std::string OptString(const Napi::CallbackInfo& info, size_t i) {
  return info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
}

}  // namespace wasp
