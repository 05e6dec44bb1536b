#!/usr/bin/env bash
# Storage append throughput on the real disk (release build): ops/s and MB/s medians for
# 128 B and 4 KiB entries, sync per append vs group commit (64 appends per sync).
# Usage: scripts/storage-bench.sh [dir-on-the-disk-to-measure] (default: ./target/storage-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-target/storage-bench}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
KMB_BENCH_DIR="$dir" KMB_BENCH_RUNS="${KMB_BENCH_RUNS:-5}" \
  cargo bench -p kmb-node --bench storage_append
