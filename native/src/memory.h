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

// Every slot's buffer lies inside memory with data, and hdr bytes before it, inside
// [bufStart, bufEnd): checked before the first read, so a bad batch writes nothing at all.
inline bool BuffersInside(const Mem& m, uint32_t slots, uint32_t count, uint32_t hdr) {
  if (!SlotsInside(m, slots, count)) return false;
  for (uint32_t i = 0; i < count; i++) {
    uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
    uint32_t data = ld32(m.base, s + SLOT_DATA), bs = ld32(m.base, s + SLOT_BUF_START),
             be = ld32(m.base, s + SLOT_BUF_END);
    if (data < hdr || data - hdr < bs || data >= be || be > m.size) return false;
  }
  return true;
}

// Every selected slot's packet, and hdr bytes before it, lies inside memory: checked before the
// first write, so a bad batch sends nothing at all.
inline bool PacketsInside(const Mem& m, uint32_t slots, uint32_t count, uint32_t mask, uint32_t hdr) {
  if (!SlotsInside(m, slots, count)) return false;
  for (uint32_t i = 0; i < count; i++) {
    uint64_t s = uint64_t(slots) + uint64_t(i) * SLOT_SIZE;
    if (!Selected(m.base, s, mask)) continue;
    uint32_t data = ld32(m.base, s + SLOT_DATA), len = ld32(m.base, s + SLOT_LEN);
    if (data < hdr || uint64_t(data) + len > m.size) return false;
  }
  return true;
}

}  // namespace wasp
