// The batch slot as native reads and writes it: the C++ copy of assembly/abi.ts, with its names.
// test/unit/abi.test.ts checks every constant here against that file, so only constants that
// abi.ts defines belong here (native's own sizes live beside the code that uses them).
#pragma once
#include <cstdint>

namespace wasp {

// ╒═══ batch slot, 32 bytes, little-endian; offsets in bytes from the slot's address ═══╕
//  0 u32 data      wasm address of the packet; a virtio_net_hdr (VNET) and free headroom lie before it
//  4 u32 len       packet bytes                               ← readBatch, recvBatch
//  8 u16 flags     SlotFlag bits                              ← OR-ed in by readBatch, recvBatch
// 10 u8  verdict   Verdict: writeBatch/sendBatch take the slots whose (1 << verdict) is in the mask
// 11 u8  reason    (core only)
// 12 u32 peer      underlay IPv4, host order: the sender ← recvBatch; the destination → sendBatch
// 16 u32 bufStart  a read writes only inside [bufStart, bufEnd), wasm addresses
// 20 u32 bufEnd
// 24 u32 service   (core only)
// 28 u32 note      Note bits: TUNNEL_GSO sends the slot to the tunnel TAP
constexpr uint32_t SLOT_SIZE = 32;
constexpr uint32_t SLOT_DATA = 0;
constexpr uint32_t SLOT_LEN = 4;
constexpr uint32_t SLOT_FLAGS = 8;
constexpr uint32_t SLOT_VERDICT = 10;
constexpr uint32_t SLOT_REASON = 11;
constexpr uint32_t SLOT_PEER = 12;
constexpr uint32_t SLOT_BUF_START = 16;
constexpr uint32_t SLOT_BUF_END = 20;
constexpr uint32_t SLOT_SERVICE = 24;
constexpr uint32_t SLOT_NOTE = 28;

// Bytes of struct virtio_net_hdr (no num_buffers) before data when VNET is set.
constexpr uint32_t VNET_HDR_LEN = 10;

// The flags and notes native reads or sets (the rest are the core's).
namespace SlotFlag {
constexpr uint16_t FROM_OVERLAY = 1;  // arrived on the underlay socket; peer holds the sender
constexpr uint16_t VNET = 2;          // a virtio_net_hdr lies at data - VNET_HDR_LEN
}  // namespace SlotFlag

namespace Note {
constexpr uint32_t TUNNEL_GSO = 16384;  // a tunnel-GSO frame for the tunnel TAP, not a packet
}  // namespace Note

}  // namespace wasp
