# wasp_native: TUN/TAP, underlay sockets and io_uring batches into wasm memory (src/addon.cc lists
# the files); rtnetlink sockets in a namespace for the CNI plugin (src/netlink.cc).
# Build: npx node-gyp rebuild --directory native  ->  native/build/Release/wasp_native.node
# Needs only the kernel's UAPI headers (linux/io_uring.h, linux/if_tun.h); no liburing.
{
  "targets": [
    {
      "target_name": "wasp_native",
      "sources": ["src/addon.cc", "src/tun.cc", "src/underlay.cc", "src/underlay_recv.cc",
                  "src/underlay_send.cc", "src/poller.cc", "src/netlink.cc", "src/conntrack.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
