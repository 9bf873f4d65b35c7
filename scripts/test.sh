#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, builds,
# type-checks, then runs every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pnpm -s typecheck
pnpm -s test
