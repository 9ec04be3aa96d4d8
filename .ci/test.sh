#!/usr/bin/env bash
# The test command of the README: `bash .ci/test.sh`, from any directory.
# Installs the build dependencies that are missing (when run as root, on a
# Debian-like system), builds everything in build/ci (RelWithDebInfo) and runs
# every test with ctest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(build-essential cmake libgtest-dev libbenchmark-dev libboost-context-dev
          libboost-math-dev libspdlog-dev liblua5.4-dev nlohmann-json3-dev clang valgrind
          pkg-config golang-go zlib1g-dev libdw-dev libpython3.11-testsuite python3.11
          libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev)
if command -v dpkg >/dev/null; then
  missing=()
  for package in "${packages[@]}"; do
    dpkg -s "$package" 2>/dev/null | grep -q '^Status: install ok installed' ||
      missing+=("$package")
  done
  if ((${#missing[@]} > 0)); then
    if [[ $(id -u) -eq 0 ]]; then
      echo "== installing ${missing[*]}"
      apt-get update
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
      echo "warning: missing packages (install them as root): ${missing[*]}" >&2
    fi
  fi
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build/ci -j"$jobs"
ctest --test-dir build/ci --output-on-failure -j2
