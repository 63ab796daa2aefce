// The wasm memory as native sees it: the ArrayBuffer's bytes, loads and stores at wasm addresses,
// and the checks on a batch's slot table (src/io/memory.ts is the JS side).
#pragma once
#include <string.h>

#include <cstdint>

#include "slot.h"

namespace wasp {

// x86/arm hosts are little-endian like wasm, but memcpy keeps unaligned access defined.
inline uint32_t ld32(const uint8_t* m, uint64_t a) { uint32_t v; memcpy(&v, m + a, 4); return v; }
inline uint16_t ld16(const uint8_t* m, uint64_t a) { uint16_t v; memcpy(&v, m + a, 2); return v; }
inline void st32(uint8_t* m, uint64_t a, uint32_t v) { memcpy(m + a, &v, 4); }
inline void st16(uint8_t* m, uint64_t a, uint16_t v) { memcpy(m + a, &v, 2); }

struct Mem {
  uint8_t* base;
  uint64_t size;
};

// The slot table itself must lie inside memory (64-bit sums: no u32 wrap-around).
inline bool SlotsInside(const Mem& m, uint32_t slotsAddr, uint32_t count) {
  return uint64_t(slotsAddr) + uint64_t(count) * SLOT_SIZE <= m.size;
}

// Whether the slot's verdict is one of mask's bits (the slots writeBatch and sendBatch take).
inline bool Selected(const uint8_t* m, uint64_t s, uint32_t mask) {
  uint8_t v = m[s + SLOT_VERDICT];
  return v < 32 && ((1u << v) & mask);
}

}  // namespace wasp
