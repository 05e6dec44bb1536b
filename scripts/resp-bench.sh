#!/usr/bin/env bash
# RESP parse cost of a 16 MiB and a 64 MiB command fed in 16 KiB reads (release build),
# median seconds. KMB_BENCH_BASELINE=1 also times the pre-issue-13 (quadratic) reader.
# Usage: scripts/resp-bench.sh            KMB_BENCH_RUNS=3 KMB_BENCH_BASELINE=1 scripts/resp-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KMB_BENCH_RUNS="${KMB_BENCH_RUNS:-5}" cargo bench -p kmb-node --bench resp_parse
