# Sourced by the benchmark scripts (bench-cluster.sh, bench-node-cpu.sh): a temporary directory
# (`dir`), the processes started in it (`pids`, stopped with TERM and the directory removed on
# exit), and a 3-replica kmb cluster started there.
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# start_kmb_cluster BIN PEERS CLIENTS: format 3 replicas in $dir (replica 0 generates the cluster
# key, the others copy it) and start them (PEERS and CLIENTS: comma-separated addresses), logs in
# $dir/r<i>.log.
start_kmb_cluster() {
  local bin=$1 peers=$2 clients=$3 i
  for i in 0 1 2; do
    local key_from=()
    [ "$i" -gt 0 ] && key_from=(--key-from "$dir/r0.kmb.key")
    "$bin" format --cluster 7 --replica "$i" --replica-count 3 "${key_from[@]}" "$dir/r$i.kmb" >/dev/null
    "$bin" start --addresses "$peers" --client-addresses "$clients" "$dir/r$i.kmb" 2>"$dir/r$i.log" &
    pids+=($!)
  done
}

# find_primary PORT...: set `port` to the client port of the replica that answers a SET (a
# backup redirects), trying for 10 s; exits if none does. Needs redis-cli.
find_primary() {
  local p
  port=""
  for _ in $(seq 1 100); do
    for p in "$@"; do
      [ "$(redis-cli -p "$p" SET probe 1 2>/dev/null || true)" = OK ] && { port=$p; return; }
    done
    sleep 0.1
  done
  echo "error: no primary answered (logs: $dir/r*.log)" >&2
  exit 1
}
