#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, builds,
# type-checks, then runs every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pnpm -s typecheck
# Also cross-check the oracles themselves (kernel vs debugfs vs TSK) over every image spec, small tree.
export GAMMARAY_FIXTURES_MATRIX=${GAMMARAY_FIXTURES_MATRIX:-small}
# Timing checks that must not share the 2 cores with other tests (the FUSE `tail -f` latency of a TCG guest) run
# alone after everything else.
ALONE=(test/integration/view-fuse.test.ts)
pnpm -s test --exclude "${ALONE[@]}"
pnpm -s test "${ALONE[@]}"
