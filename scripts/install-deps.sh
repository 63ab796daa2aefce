#!/usr/bin/env bash
# Installs and builds what wasp's tests, demo and benchmarks need on a fresh Debian machine, and only
# what is missing or stale, so running it again costs a second: Debian packages that are not
# installed (apt needs root), the npm packages when package-lock.json is newer than node_modules
# (npm ci also builds the native addon), the wasm core when assembly/ changed since build/wasp.wasm,
# the addon when native/src changed since it was built, and dist/ (the single executable) when its
# sources changed. Tools' own output (apt, npm, node-gyp's "gyp info" pages, esbuild, postject) goes
# to a log file, shown only when a step fails.
#   scripts/install-deps.sh          everything (README command 2 runs this)
#   scripts/install-deps.sh --demo   what the demo needs: no test tools, no dist/ (README command 1)
set -euo pipefail
cd "$(dirname "$0")/.."

demo=0
for a in "$@"; do
  case "$a" in
    --demo) demo=1 ;;
    *) echo "install-deps: unknown option $a (usage: scripts/install-deps.sh [--demo])" >&2; exit 2 ;;
  esac
done

# the demo: ip for its namespaces, nft for the daemon's offload mode, a compiler for the addon
DEMO_PACKAGES=(iproute2 nftables conntrack python3 make g++)
TEST_PACKAGES=(
  iptables ipvsadm iperf3 tshark tcpdump busybox-static ethtool
  containernetworking-plugins jq socat tmux netcat-openbsd procps psmisc
  containerd runc podman
)
packages=("${DEMO_PACKAGES[@]}")
[ "$demo" = 1 ] || packages+=("${TEST_PACKAGES[@]}")

LOG="${TMPDIR:-/tmp}/wasp-install-deps.log"
: > "$LOG"

# quietly WHAT CMD...: one line on the screen; the command's output to $LOG, printed if it fails
quietly() {
  local what=$1; shift
  echo "install-deps: $what"
  if ! "$@" >> "$LOG" 2>&1; then
    echo "install-deps: $what failed; the last lines of its output (all of it: $LOG):" >&2
    tail -n 60 "$LOG" >&2
    exit 1
  fi
}

# stale OUT IN...: OUT is missing, or a file under one of the INs is newer than it
stale() {
  local out=$1; shift
  [ -e "$out" ] || return 0
  [ -n "$(find "$@" -type f -newer "$out" -print -quit 2>/dev/null)" ]
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: these Debian packages are missing: ${missing[*]}; installing them takes root: run this as root (sudo bash scripts/install-deps.sh where sudo is installed)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  quietly "apt-get update" apt-get update -q
  quietly "installing Debian packages: ${missing[*]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v node > /dev/null || ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "install-deps: wasp needs Node.js 20.19 or newer (found: $(node --version 2>/dev/null || echo none)); install it from https://nodejs.org or NodeSource's Debian packages" >&2
  exit 1
fi

# npm ci when node_modules is missing or older than the lockfile; it also builds native/ (install script).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  quietly "npm ci (the npm packages and the native addon)" npm ci --no-audit --no-fund
fi
ADDON=native/build/Release/wasp_native.node
if stale "$ADDON" native/src native/binding.gyp; then
  quietly "building the native addon (native/)" npm run --silent build:native
fi
if stale build/wasp.wasm assembly asconfig.json package-lock.json; then
  quietly "building the wasm core (assembly/ -> build/wasp.wasm)" npm run --silent build:wasm
fi
if [ "$demo" = 0 ]; then
  # dist/wasp, the single executable (test/integration/cni-sea.test.ts runs it)
  for out in dist/wasp dist/wasp-node dist/wasp_native.node; do
    if stale "$out" src native/front build/wasp.wasm "$ADDON" scripts/build-sea.mjs sea-config.json package-lock.json; then
      quietly "building dist/ (the single executable: dist/wasp, dist/wasp-node, dist/wasp_native.node)" npm run --silent build:sea
      break
    fi
  done
fi
echo "install-deps: ready"
