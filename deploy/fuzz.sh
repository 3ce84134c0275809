#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/) and runs each for
# SECONDS (default 20) — bounded, so it can run in CI. A crash fails the run
# and leaves the reproducer under build-fuzz/findings/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH=${1:-${TXC_FUZZ_SECONDS:-20}}
BUILD=${TXC_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
bash "$ROOT/deploy/install-deps.sh"
CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTXC_FUZZ=ON "-DTXC_LAYERS=util;proto;journal;participants" >/dev/null
cmake --build "$BUILD" -j "${TXC_JOBS:-2}" --target config_fuzzer xid_fuzzer journal_record_fuzzer decision_log_fuzzer
mkdir -p "$BUILD/findings"
for f in config_fuzzer xid_fuzzer journal_record_fuzzer decision_log_fuzzer; do
  corpus="$BUILD/corpus/$f"
  mkdir -p "$corpus"
  seeds="$ROOT/tests/fuzz/seeds/$f"
  [ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $f for ${SECONDS_EACH}s"
  "$BUILD/tests/fuzz/$f" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$BUILD/findings/$f-" "$corpus" 2>"$BUILD/$f.log" \
    || { echo "fuzz: $f FAILED"; tail -40 "$BUILD/$f.log"; exit 1; }
  grep -E "^#[0-9]+.*DONE" "$BUILD/$f.log" | tail -1 || tail -2 "$BUILD/$f.log"
done
echo "fuzz: 4 passed, 0 failed"
