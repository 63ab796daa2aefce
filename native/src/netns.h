// Running a step inside another network namespace (tun.cc, underlay.cc, netlink.cc).
#pragma once
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>

namespace wasp {

// Runs fn inside the network namespace at path (when given) and always returns to the
// caller's namespace. setns() switches only this thread, which is the JS thread: nothing
// else runs on it meanwhile. Sockets and TUN devices stay in the namespace they were made in.
template <typename Fn>
int InNetns(const std::string& path, const char** stage, Fn fn) {
  if (path.empty()) return fn();
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) { *stage = "netns-self"; return -errno; }
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) { int e = errno; close(self); *stage = "netns"; return -e; }
  if (setns(target, CLONE_NEWNET) < 0) {
    int e = errno; close(target); close(self); *stage = "netns"; return -e;
  }
  close(target);
  int r = fn();
  if (setns(self, CLONE_NEWNET) < 0) {
    // Staying in the wrong namespace would silently put every later device and socket there.
    fprintf(stderr, "wasp_native: cannot return to the original network namespace: %s\n",
            strerror(errno));
    abort();
  }
  close(self);
  return r;
}

}  // namespace wasp
