#!/usr/bin/env bash
# README command 1: install and build what the demo needs (only what is missing or stale), then build
# a demo node on this machine in network namespaces of its own (wasp daemon on the embedded default
# config, pods attached by the wasp CNI plugin, servers and client loops) with a live summary; see
# src/demo/main.ts. Run it as root (as root, no sudo is needed: bash scripts/demo.sh).
#   scripts/demo.sh [--seconds N]   stop after N seconds (default: run until Ctrl-C or SIGTERM)
#   scripts/demo.sh --offline       only the wasm core in-process on synthetic packets (no root needed)
# Whichever way it ends, it removes every namespace, process and file it made.
set -euo pipefail
cd "$(dirname "$0")/.."
offline=0
for a in "$@"; do [ "$a" = --offline ] && offline=1; done
if [ "$(id -u)" != 0 ] && [ "$offline" = 0 ]; then
  echo "demo: the demo makes network namespaces and a TUN device, which takes root: run it as root (bash scripts/demo.sh; from another user: sudo bash scripts/demo.sh), or add --offline to see the core alone" >&2
  exit 1
fi
bash scripts/install-deps.sh --demo
# node itself, not npx or the tsx CLI: Ctrl-C and SIGTERM reach the demo directly, which then ends
# what it started in order and removes its namespaces.
exec node --import "file://$PWD/node_modules/tsx/dist/loader.mjs" src/demo/main.ts "$@"
