#!/usr/bin/env bash
# Configures and builds Warren into build/ (or $WARREN_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${WARREN_BUILD_DIR:-build}
extra=()
[ "${CI:-}" = "true" ] && extra+=(-DWARREN_WERROR=ON)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "${extra[@]}" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
