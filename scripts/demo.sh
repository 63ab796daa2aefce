#!/usr/bin/env bash
# README command 1: install what is needed, then run the demo on the embedded default config.
# Until the node daemon lands (issue 4) this runs the wasm core in-process on synthetic pod traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec npx tsx src/demo/offline.ts "$@"
