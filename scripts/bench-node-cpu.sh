#!/usr/bin/env bash
# What a SET costs a 3-replica kmb cluster in CPU: one run of one kmb-node binary on loopback
# (fsync on), for A/B comparisons of two builds.
#
#   scripts/bench-node-cpu.sh BIN                  # one run, one line of figures
#   farm-bench -n 5 --vs 'scripts/bench-node-cpu.sh OLD' -- scripts/bench-node-cpu.sh NEW
#                                                  # two builds in turn (A B A B ...)
#
# Starts 3 replicas of BIN in a temporary directory (peers on PORT_BASE+1..3, clients on
# PORT_BASE+101..103; PORT_BASE default 3300), finds the primary, warms up with 1,000 SETs, then
# runs OPS (default 10,000) SETs of 100-byte values over 10,000 keys at CLIENTS (default 16)
# clients with kvbench (KVBENCH_BIN, default target/kvbench/release/kvbench: build it with
# scripts/bench-cluster.sh --vs-etcd or cargo build --release --manifest-path
# ../shared/tools/kvbench/Cargo.toml --target-dir target/kvbench). Prints the throughput, the p99
# latency and the CPU the three node processes used during the measured SETs (user + system,
# from /proc/PID/stat, in milliseconds per 1,000 SETs), then stops the cluster.
# Needs redis-cli (Debian: redis-tools) to find the primary.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: scripts/bench-node-cpu.sh KMB_NODE_BINARY}
[ -x "$bin" ] || { echo "error: $bin is not an executable" >&2; exit 2; }
kvbench=${KVBENCH_BIN:-target/kvbench/release/kvbench}
[ -x "$kvbench" ] || { echo "error: no kvbench at $kvbench (set KVBENCH_BIN)" >&2; exit 2; }
command -v redis-cli >/dev/null || { echo "error: needs redis-cli (apt-get install redis-tools)" >&2; exit 2; }
base=${PORT_BASE:-3300}
peers="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
clients="127.0.0.1:$((base + 101)),127.0.0.1:$((base + 102)),127.0.0.1:$((base + 103))"
# shellcheck source=scripts/lib/bench-cluster.sh
. scripts/lib/bench-cluster.sh
start_kmb_cluster "$bin" "$peers" "$clients"
find_primary $((base + 101)) $((base + 102)) $((base + 103))
run() { # ops
  "$kvbench" --target resp --endpoints "127.0.0.1:$port" --workload set --clients "${CLIENTS:-16}" \
    --ops "$1" --warmup-ops 0 --value-size 100 --keys 10000 2>&1
}
ticks() { # user + system clock ticks of the three nodes
  local sum=0 pid t
  for pid in "${pids[@]}"; do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sum=$((sum + t))
  done
  echo "$sum"
}
run 1000 >/dev/null
ops=${OPS:-10000}
before=$(ticks)
out=$(run "$ops")
after=$(ticks)
hz=$(getconf CLK_TCK)
json=$(echo "$out" | grep '^{')
field() { echo "$json" | grep -o "\"$1\":[0-9.]*" | head -n 1 | cut -d: -f2; }
cpu_ms=$(((after - before) * 1000 * 1000 / hz / ops))
printf '%s: %s SETs at %s clients: %.0f ops/s, p99 %.1f ms, cluster CPU %d ms per 1,000 SETs\n' \
  "$bin" "$ops" "${CLIENTS:-16}" "$(field throughput_ops_s)" \
  "$(awk -v us="$(field latency_p99_us)" 'BEGIN { print us / 1000 }')" "$cpu_ms"
