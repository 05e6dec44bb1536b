#!/usr/bin/env bash
# Benchmark a 3-replica kmb cluster on loopback (fsync on, group commit) with redis-benchmark:
# SET and GET of 100-byte values at 16 and 64 clients; prints throughput and p50/p99 latency.
#
#   scripts/bench-cluster.sh             # REQUESTS=20000 by default
#   PIPELINE=16 REQUESTS=200000 scripts/bench-cluster.sh
#                                        # one pipelined run instead: redis-benchmark -P 16
#                                        # -t $TESTS (default set) -n $REQUESTS -q, its defaults
#                                        # otherwise (3-byte values; CLIENTS=n for -c n, default 50)
#   scripts/bench-cluster.sh --vs-etcd   # (or ETCD=1) kmb-node and a 3-member etcd side by side
#
# KMB_BIN=path uses that kmb-node binary instead of building $CARGO_TARGET_DIR/release/kmb-node
# (default target/; to compare two builds); PORT_BASE=n moves the ports (peers n+1..n+3, clients
# n+101..n+103, etcd clients n+201..n+203 and etcd peers n+211..n+213).
# Needs redis-benchmark (Debian: redis-tools). Starts its own cluster in a temporary directory
# on ports 3201-3203 (peers) and 6401-6403 (clients) by default, and stops it on exit.
#
# --vs-etcd: kmb-node and etcd (Debian's etcd-server, 3 members on loopback, clients 2479, 22479,
# 32479; fsync on in both: etcd's default, kmb-node always), both loaded by the same generator,
# kvbench (../shared/tools/kvbench, KVBENCH_DIR=path; built into target/kvbench, or KVBENCH_BIN=
# path) with --ops 20000 --warmup-ops 2000 --value-size 100 --keys 10000, SET and GET at 16 and 64
# clients. Both clusters are started once, side by side, in the same temporary directory (same
# disk), and serve every round: neither starts cold, both carry the same idle cost (heartbeats)
# while the other is measured, and both logs/DBs grow alike. For each round r in 1..ROUNDS
# (default 3) and each workload, both systems run back to back, kmb first in odd rounds and etcd
# first in even ones. kmb-node's clients all go to its primary (a backup would only redirect),
# found again before each kmb run; etcd's clients are spread over its 3 endpoints (client i on
# endpoint i mod 3, so two thirds go to a follower). Prints each run, then
# per workload the median ops/s and median p99 of each system over the rounds and kmb/etcd.
# Installs etcd-server, etcd-client, and protobuf-compiler and libprotobuf-dev (kvbench's build
# needs them) from Debian when missing (as root with apt-get); otherwise stops with the command
# that installs them.
# KVBENCH_ARGS='...' adds kvbench flags (e.g. --threads 2); OPS=n changes --ops.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${REQUESTS:-20000}
vs_etcd=${ETCD:-}
[ "${1:-}" = --vs-etcd ] && vs_etcd=1
[ "${vs_etcd}" = 0 ] && vs_etcd=
unset RUSTFLAGS
if [ -n "$vs_etcd" ]; then
  # Debian packages, installed the way scripts/test.sh installs its own.
  need=()
  command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
  if [ -z "${KVBENCH_BIN:-}" ]; then
    # etcd-client's build runs protoc, which needs the well-known .proto files too.
    command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
    [ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -z "${KMB_NO_INSTALL:-}" ]; then
      echo "installing missing Debian packages: ${need[*]}" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
      echo "bench-cluster.sh --vs-etcd needs these Debian packages: ${need[*]}" >&2
      echo "install them with:  sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
      exit 2
    fi
  fi
  if [ -n "${KVBENCH_BIN:-}" ]; then
    kvbench=$KVBENCH_BIN
  else
    kvdir=${KVBENCH_DIR:-../shared/tools/kvbench}
    [ -f "$kvdir/Cargo.toml" ] || { echo "error: no kvbench at $kvdir (set KVBENCH_DIR or KVBENCH_BIN)" >&2; exit 2; }
    cargo build --release --manifest-path "$kvdir/Cargo.toml" --target-dir target/kvbench >&2
    kvbench=target/kvbench/release/kvbench
  fi
fi
if [ -n "${KMB_BIN:-}" ]; then
  bin=$KMB_BIN
else
  cargo build --release --locked -p kmb-node --bin kmb-node >&2
  bin=${CARGO_TARGET_DIR:-target}/release/kmb-node
fi
if [ -n "${PORT_BASE:-}" ]; then
  peers=($((PORT_BASE + 1)) $((PORT_BASE + 2)) $((PORT_BASE + 3)))
  client_ports=($((PORT_BASE + 101)) $((PORT_BASE + 102)) $((PORT_BASE + 103)))
  etcd_clients=($((PORT_BASE + 201)) $((PORT_BASE + 202)) $((PORT_BASE + 203)))
  etcd_peers=($((PORT_BASE + 211)) $((PORT_BASE + 212)) $((PORT_BASE + 213)))
else
  peers=(3201 3202 3203)
  client_ports=(6401 6402 6403)
  etcd_clients=(2479 22479 32479)
  etcd_peers=(2480 22480 32480)
fi
list() { local IFS=,; echo "$*"; }
# shellcheck source=scripts/lib/bench-cluster.sh
. scripts/lib/bench-cluster.sh
start_kmb_cluster "$bin" "$(list "${peers[@]}")" "$(list "${client_ports[@]}")"
find_primary "${client_ports[@]}"
if [ -n "${PIPELINE:-}" ]; then
  # -q prints progress lines ending in \r, then the result line.
  redis-benchmark -p "$port" -P "$PIPELINE" -c "${CLIENTS:-50}" -t "${TESTS:-set}" -n "$requests" -q 2>&1 |
    tr '\r' '\n' | grep 'requests per second'
  exit 0
fi
if [ -n "$vs_etcd" ]; then
  cl=""
  for i in 0 1 2; do cl+="${cl:+,}m$i=http://127.0.0.1:${etcd_peers[$i]}"; done
  for i in 0 1 2; do
    etcd --name "m$i" --data-dir "$dir/etcd/m$i" \
      --listen-client-urls "http://127.0.0.1:${etcd_clients[$i]}" \
      --advertise-client-urls "http://127.0.0.1:${etcd_clients[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${etcd_peers[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${etcd_peers[$i]}" \
      --initial-cluster "$cl" --initial-cluster-token kmb-bench-etcd --initial-cluster-state new \
      --logger zap --log-outputs stderr --log-level warn 2>"$dir/etcd$i.log" &
    pids+=($!)
  done
  etcd_eps=""
  for p in "${etcd_clients[@]}"; do etcd_eps+="${etcd_eps:+,}127.0.0.1:$p"; done
  ok=""
  for _ in $(seq 1 100); do
    if ETCDCTL_API=3 etcdctl --endpoints "$etcd_eps" endpoint health >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { echo "error: etcd did not become healthy (logs: $dir/etcd*.log)" >&2; tail -n 5 "$dir"/etcd*.log >&2; exit 1; }
  rounds=${ROUNDS:-3}
  # kvbench's JSON line: one numeric field.
  field() { grep -o "\"$1\":[0-9.]*" | head -n 1 | cut -d: -f2; }
  run() { # system workload clients round
    local sys=$1 w=$2 c=$3 r=$4 target eps out json errs
    if [ "$sys" = kmb ]; then find_primary "${client_ports[@]}"; target=resp; eps=127.0.0.1:$port
    else target=etcd; eps=$etcd_eps; fi
    # shellcheck disable=SC2086
    out=$("$kvbench" --target "$target" --endpoints "$eps" --workload "$w" --clients "$c" \
      --ops "${OPS:-20000}" --warmup-ops 2000 --value-size 100 --keys 10000 \
      --label "round=$r" ${KVBENCH_ARGS:-} 2>"$dir/kvbench.err") ||
      { echo "error: kvbench failed ($sys $w $c):" >&2; cat "$dir/kvbench.err" >&2; exit 1; }
    json=$(echo "$out" | grep '^{')
    errs=$(echo "$json" | field errors)
    echo "$sys $w $c $r $(echo "$json" | field throughput_ops_s) $(echo "$json" | field latency_p99_us) $errs" >>"$dir/results"
    printf 'round %s  %-4s %-3s c=%-3s %9.0f ops/s  p99 %6.1f ms  errors %s\n' "$r" "$sys" "$w" "$c" \
      "$(echo "$json" | field throughput_ops_s)" "$(echo "$json" | field latency_p99_us | awk '{print $1/1000}')" "$errs"
    [ "$errs" = 0 ] || { echo "  kvbench: $(head -c 400 "$dir/kvbench.err")"; }
  }
  echo "kmb-node primary 127.0.0.1:$port; etcd $(etcd --version | head -n 1 | cut -d' ' -f3) at $etcd_eps"
  : >"$dir/results"
  for r in $(seq 1 "$rounds"); do
    for c in 16 64; do
      for w in set get; do
        if [ $((r % 2)) = 1 ]; then run kmb "$w" "$c" "$r"; run etcd "$w" "$c" "$r"
        else run etcd "$w" "$c" "$r"; run kmb "$w" "$c" "$r"; fi
      done
    done
  done
  # Median over the rounds of each system's ops/s and p99 (each median taken on its own).
  median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  col() { awk -v s="$1" -v w="$2" -v c="$3" -v f="$4" '$1 == s && $2 == w && $3 == c { print $f }' "$dir/results" | median; }
  echo
  echo "medians of $rounds interleaved rounds (kvbench --ops ${OPS:-20000} --warmup-ops 2000 --value-size 100 --keys 10000)"
  printf '%-5s %-8s %10s %10s %9s %12s %12s %8s\n' test clients "kmb ops/s" "etcd ops/s" kmb/etcd "kmb p99 ms" "etcd p99 ms" errors
  for c in 16 64; do
    for w in set get; do
      kt=$(col kmb "$w" "$c" 5); et=$(col etcd "$w" "$c" 5)
      kp=$(col kmb "$w" "$c" 6); ep=$(col etcd "$w" "$c" 6)
      errs=$(awk -v w="$w" -v c="$c" '$2 == w && $3 == c { n += $7 } END { print n + 0 }' "$dir/results")
      awk -v w="$w" -v c="$c" -v kt="$kt" -v et="$et" -v kp="$kp" -v ep="$ep" -v e="$errs" 'BEGIN {
        printf "%-5s %-8s %10.0f %10.0f %9.2f %12.1f %12.1f %8d\n", w, c, kt, et, (et > 0 ? kt / et : 0), kp / 1000, ep / 1000, e }'
    done
  done
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
