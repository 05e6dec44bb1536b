#!/usr/bin/env bash
# Start a 3-replica kmb cluster on loopback (formatting data files on first use).
#
#   scripts/cluster.sh [data-dir]        # default: ./cluster-data; Ctrl-C stops all three
#
# Replicas talk on 127.0.0.1:3001-3003; clients (any Redis client) on 127.0.0.1:6381-6383,
# e.g. `redis-cli -p 6381 SET k v`. A backup answers with `-REDIRECT <replica> <address>`.
# Environment: KMB_NODE (binary; default: built in release), KMB_CLUSTER (cluster id, default 1),
# RUST_LOG (default info).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-cluster-data}
cluster=${KMB_CLUSTER:-1}
if [ -z "${KMB_NODE:-}" ]; then
  unset RUSTFLAGS
  cargo build --release --locked -p kmb-node --bin kmb-node >&2
  KMB_NODE=target/release/kmb-node
fi
mkdir -p "$dir"
peers=3001,3002,3003
clients=6381,6382,6383
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM
for i in 0 1 2; do
  data="$dir/replica-$i.kmb"
  if [ ! -e "$data" ]; then
    # Replica 0 generates the cluster key; the others are formatted with a copy of it.
    key_from=()
    [ "$i" -gt 0 ] && key_from=(--key-from "$dir/replica-0.kmb.key")
    "$KMB_NODE" format --cluster "$cluster" --replica "$i" --replica-count 3 "${key_from[@]}" "$data"
  fi
  "$KMB_NODE" start --addresses "$peers" --client-addresses "$clients" "$data" \
    2>>"$dir/replica-$i.log" &
  pids+=($!)
done
echo "kmb cluster $cluster running: clients on 127.0.0.1:6381-6383, logs in $dir/replica-*.log"
echo "press Ctrl-C to stop"
wait
