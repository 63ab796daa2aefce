// What writeBatch and sendBatch report beside the packets they sent: the drops, written into an
// Int32Array the caller made once and passes to every call, so a batch's drops cost no second
// N-API call and no allocation.
#pragma once
#include <cstdint>

namespace wasp {

// The array's fields, as DropField in src/io/native.ts (test/unit/io/native.test.ts compares).
enum class DropField : uint32_t {
  Dropped = 0,        // packets the kernel refused (full queue, no route, malformed)
  LastErrno = 1,      // the errno of the last of them, 0 when none
  TunnelRefused = 2,  // tunnel-GSO frames the tunnel TAP refused as malformed (sendBatch)
};
constexpr uint32_t DROP_FIELDS = 3;

// The caller's array, zeroed for this batch.
class Drops {
 public:
  explicit Drops(int32_t* fields) : f_(fields) {
    for (uint32_t i = 0; i < DROP_FIELDS; i++) f_[i] = 0;
  }
  // n packets refused with errno e
  void Add(int e, uint32_t n = 1) {
    f_[uint32_t(DropField::Dropped)] += int32_t(n);
    f_[uint32_t(DropField::LastErrno)] = e;
  }
  void TunnelRefused() { f_[uint32_t(DropField::TunnelRefused)]++; }

 private:
  int32_t* f_;
};

}  // namespace wasp
