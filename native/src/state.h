// What the addon keeps between calls, per env (env.GetInstanceData<State>(), made by Init in
// addon.cc): the io_uring ring (tun.cc), and per underlay fd the receive (underlay_recv.cc) and
// send (underlay_send.cc) state that close() (underlay.cc) drops with the fd.
#pragma once
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ring.h"

namespace wasp {

constexpr unsigned MMSG_CHUNK = 64;    // messages per recvmmsg/sendmmsg call

// UDP sockets for UDP GSO on the underlay, one per outer (source address, source port): a UDP
// socket's source port is its bound port, and the engine picks the port per inner flow.
struct GsoPool {
  std::unordered_map<uint64_t, int> fds;
  bool disabled = false;  // the kernel refused UDP_SEGMENT: raw sends only
};

// Segments of UDP GRO datagrams that did not fit the last recvBatch, delivered first by the next.
struct PendingDatagrams {
  struct Datagram { std::vector<uint8_t> bytes; uint32_t gso, peer; size_t off; };
  std::deque<Datagram> queue;
};

// Per-env state: worker threads each load their own instance, so no process-wide counters.
struct State {
  Ring ring;
  unsigned readHint = 4;  // reads the next io_uring batch starts with (see ReadRing)
  std::unordered_map<int, GsoPool> gso;  // by the underlay's raw fd
  std::unordered_map<int, PendingDatagrams> pending;  // by the underlay's UDP fd
  std::unordered_set<int> groOff;                // UDP fds whose caller's slots are too small for GRO
  std::unordered_map<int, uint32_t> segsHint;     // by UDP fd: most segments a datagram had last time
  // frame trains made by SplitTunnelGso, one per datagram of a recvmmsg call
  std::vector<std::vector<uint8_t>> split = std::vector<std::vector<uint8_t>>(MMSG_CHUNK);
};

}  // namespace wasp
