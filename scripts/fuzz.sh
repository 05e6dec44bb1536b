#!/usr/bin/env bash
# Build and run every cargo-fuzz target (fuzz/) for SECONDS each (default 60), one at a time.
# Prints per target the executions and exec/s from libFuzzer's final stats; exits non-zero if
# any target crashed (the crashing input is in fuzz/artifacts/<target>/).
#
# Usage: scripts/fuzz.sh [SECONDS]
#        FUZZ_TARGETS="resp frame" scripts/fuzz.sh 300     # some targets only
#        FUZZ_RUNS=10000000 scripts/fuzz.sh 300            # stop at N executions or SECONDS
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Builds without a
# sanitizer (the code has no `unsafe`; panics, overflow checks and debug assertions are what
# fuzzing catches here), niced, one job at a time. New inputs libFuzzer finds go to
# fuzz/work/<target>/ (ignored by git); fuzz/corpus/<target>/ holds the committed seeds and is
# only read.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
runs="${FUZZ_RUNS:--1}"
targets="${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^kmb-fuzz$')}"
unset RUSTFLAGS
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
fuzz=(nice -n 10 cargo +nightly fuzz)
opts=(--sanitizer none)

echo "==> building fuzz targets"
"${fuzz[@]}" build "${opts[@]}"

mkdir -p fuzz/work fuzz/artifacts
failed=()
printf '\n%-12s %14s %10s %10s  %s\n' target executions seconds exec/s result
for target in $targets; do
  mkdir -p "fuzz/work/$target" "fuzz/corpus/$target"
  log="fuzz/work/$target.log"
  status=0
  "${fuzz[@]}" run "${opts[@]}" "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -runs="$runs" -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  result=ok
  if [ "$status" -ne 0 ]; then
    result="CRASH (exit $status, see $log and fuzz/artifacts/$target/)"
    failed+=("$target")
  fi
  printf '%-12s %14s %10s %10s  %s\n' "$target" "${execs:-?}" "${took:-?}" "${rate:-?}" "$result"
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
