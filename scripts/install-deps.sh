#!/usr/bin/env bash
# Installs what wasp's tests, demo and benchmarks need on a fresh Debian machine (as root):
# Debian packages (only the missing ones), the npm packages (npm ci also builds the native addon),
# and the wasm core. Safe to run again: it does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  iproute2 iptables nftables ipvsadm iperf3 conntrack tshark tcpdump busybox-static ethtool
  containernetworking-plugins jq socat tmux netcat-openbsd procps psmisc
  containerd runc podman
  python3 make g++
)

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: run as root (network namespaces, TUN devices and apt need it)" >&2
  exit 1
fi

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci when node_modules is missing or older than the lockfile; it also builds native/ (install script).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "install-deps: npm ci"
  npm ci --no-audit --no-fund
fi
[ -f native/build/Release/wasp_native.node ] || npm run --silent build:native
npm run --silent build:wasm
# dist/wasp, the single executable (test/integration/cni-sea.test.ts runs it); its tools are chatty
npm run --silent build:sea > /tmp/wasp-build-sea.log 2>&1 || { cat /tmp/wasp-build-sea.log >&2; exit 1; }
echo "install-deps: ready"
