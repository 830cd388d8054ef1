#!/usr/bin/env bash
# The main job: installs, builds, and runs `warren serve` on its embedded
# defaults (SQLite and storage under ./warren-data, http://127.0.0.1:8400,
# the offline scripted model). Extra arguments go to `warren serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
./scripts/build.sh
exec "${WARREN_BUILD_DIR:-build}/src/cli/warren" serve --data-dir "${WARREN_DATA_DIR:-warren-data}" "$@"
