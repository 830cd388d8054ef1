#!/usr/bin/env bash
# Installs everything Warren's build, tests and benchmarks need on Debian bookworm.
# Idempotent: re-running it only checks. Run as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config git clang libclang-rt-14-dev
  # service
  libboost1.81-dev libboost-context1.81-dev nlohmann-json3-dev libcurl4-openssl-dev
  libsqlite3-dev sqlite3 libpq-dev postgresql libssl-dev
  libcli11-dev libfmt-dev libexpected-dev libre2-dev libarchive-dev
  # web_fetch: HTML through a real parser, PDFs to text
  libgumbo-dev libpoppler-cpp-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # terminal tests of the CLI (tests/conformance/cli_live.test.mjs runs warren in a tmux pty)
  tmux
  # sandbox runtime
  libseccomp-dev libcap-dev libnl-route-3-dev libnftables-dev btrfs-progs iproute2 nftables
  busybox-static bash-static
  bubblewrap debootstrap util-linux procps psmisc kmod
  criu  # feature-detected at Open() with `criu check`; optional
  # runner tools and conformance
  ripgrep nodejs unzip tar xz-utils ca-certificates curl jq
  # orchestrator preparation tests: a dumb-protocol git server and hostile tarballs
  python3
  # package snapshot test: `gem build` + `gem generate_index` make its local gem source
  ruby
  # web console browser tests (playwright-core drives Debian's chromium)
  chromium
)

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -t bookworm --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm: Debian's nodejs may come without npm on some images; the conformance
# suite needs npm to install its locked packages.
if ! command -v npm >/dev/null 2>&1; then
  apt-get install -y -qq -t bookworm npm >/dev/null
fi

# Node packages (locked): the official SDK for conformance, and Node 22 for the
# SDK's worker and toolset (spec section 9: Debian's node 20 lacks fs.glob).
if [ -f tests/conformance/package-lock.json ]; then
  (cd tests/conformance && { [ -d node_modules ] && npm ls --silent >/dev/null 2>&1 || npm ci --no-audit --no-fund --loglevel=error; })
fi
# The web console (console/): Vite and its packages (locked), built and
# embedded into the binary by the CMake build (src/console/embed.cmake).
if [ -f console/package-lock.json ]; then
  (cd console && { [ -d node_modules ] && npm ls --silent >/dev/null 2>&1 || npm ci --no-audit --no-fund --loglevel=error; })
fi
echo "install.sh: ok" >&2
