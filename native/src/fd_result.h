// The JS shape of "a new fd, or why not" shared by the open* functions.
#pragma once
#include <napi.h>

namespace wasp {

// { fd } (or { [key] }) when r >= 0, else { errno, stage }: the step that failed, for src/io/ to turn
// into a sentence.
inline Napi::Object FdResult(Napi::Env env, int r, const char* stage, const char* key = "fd") {
  Napi::Object out = Napi::Object::New(env);
  if (r < 0) {
    out.Set("errno", Napi::Number::New(env, -r));
    out.Set("stage", Napi::String::New(env, stage));
  } else {
    out.Set(key, Napi::Number::New(env, r));
  }
  return out;
}

}  // namespace wasp
