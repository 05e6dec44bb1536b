#!/usr/bin/env bash
# Benchmark the lincheck binary on the 102 Jepsen etcd histories.
# Builds in release, runs 7 times with --expected, prints the median total time (ms).
# Run from the repository root. DATA overrides the history directory.
set -euo pipefail

DATA="${DATA:-../shared/data/jepsen-etcd}"
RUNS=7

if [[ ! -f "$DATA/expected.txt" ]]; then
    echo "lincheck-bench: no histories at $DATA (set DATA=...)" >&2
    exit 1
fi

cargo build --release -p lincheck
BIN="${CARGO_TARGET_DIR:-target}/release/lincheck"

times=()
for i in $(seq 1 "$RUNS"); do
    out="$("$BIN" --expected "$DATA/expected.txt" "$DATA")" || {
        printf '%s\n' "$out" | grep -E 'MISMATCH|error' >&2 || true
        echo "lincheck-bench: run $i failed (verdict mismatch or error)" >&2
        exit 1
    }
    total="$(printf '%s\n' "$out" | sed -n 's/^total: .*, \([0-9.]*\) ms$/\1/p')"
    summary="$(printf '%s\n' "$out" | grep '^expected: ')"
    echo "run $i: ${total} ms (${summary})"
    times+=("$total")
done

median="$(printf '%s\n' "${times[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p")"
echo "median total: ${median} ms over ${RUNS} runs"
