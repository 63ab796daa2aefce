#!/usr/bin/env bash
# README command 2: install what is needed, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm run --silent typecheck
npm test
