#!/usr/bin/env bash
# Benchmark a 3-replica kmb cluster on loopback (fsync on, group commit) with redis-benchmark:
# SET and GET of 100-byte values at 16 and 64 clients; prints throughput and p50/p99 latency.
#
#   scripts/bench-cluster.sh             # REQUESTS=20000 by default
#   PIPELINE=16 REQUESTS=200000 scripts/bench-cluster.sh
#                                        # one pipelined run instead: redis-benchmark -P 16
#                                        # -t $TESTS (default set) -n $REQUESTS -q, its defaults
#                                        # otherwise (3-byte values; CLIENTS=n for -c n, default 50)
#
# KMB_BIN=path uses that kmb-node binary instead of building target/release/kmb-node (to compare
# two builds); PORT_BASE=n moves the ports (peers n+1..n+3, clients n+101..n+103).
# Needs redis-benchmark (Debian: redis-tools). Starts its own cluster in a temporary directory
# on ports 3201-3203 (peers) and 6401-6403 (clients) by default, and stops it on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${REQUESTS:-20000}
unset RUSTFLAGS
if [ -n "${KMB_BIN:-}" ]; then
  bin=$KMB_BIN
else
  cargo build --release --locked -p kmb-node --bin kmb-node >&2
  bin=target/release/kmb-node
fi
if [ -n "${PORT_BASE:-}" ]; then
  peers=($((PORT_BASE + 1)) $((PORT_BASE + 2)) $((PORT_BASE + 3)))
  client_ports=($((PORT_BASE + 101)) $((PORT_BASE + 102)) $((PORT_BASE + 103)))
else
  peers=(3201 3202 3203)
  client_ports=(6401 6402 6403)
fi
list() { local IFS=,; echo "$*"; }
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
  "$bin" start --addresses "$(list "${peers[@]}")" --client-addresses "$(list "${client_ports[@]}")" \
    "$dir/r$i.kmb" 2>"$dir/r$i.log" &
  pids+=($!)
done
# The primary is the replica that answers instead of redirecting.
port=""
for _ in $(seq 1 100); do
  for p in "${client_ports[@]}"; do
    out=$(redis-cli -p "$p" SET probe 1 2>/dev/null || true)
    case "$out" in OK) port=$p ;; esac
    [ -n "$port" ] && break
  done
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "error: no primary answered" >&2; exit 1; }
if [ -n "${PIPELINE:-}" ]; then
  # -q prints progress lines ending in \r, then the result line.
  redis-benchmark -p "$port" -P "$PIPELINE" -c "${CLIENTS:-50}" -t "${TESTS:-set}" -n "$requests" -q 2>&1 |
    tr '\r' '\n' | grep 'requests per second'
  exit 0
fi
printf '%-5s %-8s %12s %10s %10s\n' test clients "requests/s" "p50 ms" "p99 ms"
for clients in 16 64; do
  for t in set get; do
    out=$(redis-benchmark -p "$port" -t "$t" -n "$requests" -c "$clients" -d 100 -r 10000 --csv 2>/dev/null)
    # CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    echo "$out" | tail -n 1 | tr -d '"' | awk -F, -v c="$clients" -v t="$t" \
      '{ printf "%-5s %-8s %12.0f %10.2f %10.2f\n", t, c, $2, $5, $7 }'
  done
done
