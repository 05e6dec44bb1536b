#!/usr/bin/env bash
# Benchmark a 3-replica kmb cluster on loopback (fsync on, group commit) with redis-benchmark:
# SET and GET of 100-byte values at 16 and 64 clients; prints throughput and p50/p99 latency.
#
#   scripts/bench-cluster.sh             # REQUESTS=20000 by default
#
# Needs redis-benchmark (Debian: redis-tools). Starts its own cluster in a temporary directory
# on ports 3201-3203 (peers) and 6401-6403 (clients), and stops it on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${REQUESTS:-20000}
unset RUSTFLAGS
cargo build --release --locked -p kmb-node --bin kmb-node >&2
bin=target/release/kmb-node
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for i in 0 1 2; do
  key_from=()
  [ "$i" -gt 0 ] && key_from=(--key-from "$dir/r0.kmb.key")
  "$bin" format --cluster 7 --replica "$i" --replica-count 3 "${key_from[@]}" "$dir/r$i.kmb" >/dev/null
  "$bin" start --addresses 3201,3202,3203 --client-addresses 6401,6402,6403 "$dir/r$i.kmb" \
    2>"$dir/r$i.log" &
  pids+=($!)
done
# The primary is the replica that answers instead of redirecting.
port=""
for _ in $(seq 1 100); do
  for p in 6401 6402 6403; do
    out=$(redis-cli -p "$p" SET probe 1 2>/dev/null || true)
    case "$out" in OK) port=$p ;; esac
    [ -n "$port" ] && break
  done
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "error: no primary answered" >&2; exit 1; }
printf '%-5s %-8s %12s %10s %10s\n' test clients "requests/s" "p50 ms" "p99 ms"
for clients in 16 64; do
  for t in set get; do
    out=$(redis-benchmark -p "$port" -t "$t" -n "$requests" -c "$clients" -d 100 -r 10000 --csv 2>/dev/null)
    # CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    echo "$out" | tail -n 1 | tr -d '"' | awk -F, -v c="$clients" -v t="$t" \
      '{ printf "%-5s %-8s %12.0f %10.2f %10.2f\n", t, c, $2, $5, $7 }'
  done
done
