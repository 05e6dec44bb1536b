#!/usr/bin/env bash
# Real-cluster chaos (docs/chaos.md): builds kmb-node and kmb-chaos (production mode, debug
# profile) and runs kmb-chaos: real kmb-node processes in their own network namespaces, a
# seeded nemesis, concurrent clients, checks after the heal. Needs root, iproute2 and nftables
# (installed here with apt-get when missing, as scripts/test.sh does).
#
# Usage:
#   scripts/chaos.sh [SECONDS] [SEED] [kmb-chaos options...]    # default 300 s, random seed
#   scripts/chaos.sh 60 16 --nemesis kill-primary,partition      # the CI smoke's shape
#   scripts/chaos.sh 1800 7 --replicas 5 --clients 16            # a long run
#   KMB_CHAOS_PLANTED=read-from-backup scripts/chaos.sh 20 1     # planted bug: must be caught
#
# With KMB_CHAOS_PLANTED=<mutation> the nodes are built with the `chaos-mutation` feature and
# started with KMB_MUTATION=<mutation>; the script then succeeds only if kmb-chaos's checks
# FAIL (exit 1), i.e. the planted bug was caught.
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUSTFLAGS

seconds=${1:-300}
seed=${2:-$(date +%s)}
shift $(( $# < 2 ? $# : 2 ))

if [ "$(id -u)" != 0 ]; then
  echo "scripts/chaos.sh: needs root (network namespaces, nft, tc)" >&2
  exit 2
fi
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v tc >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ -z "${KMB_NO_INSTALL:-}" ]; then
    echo "==> installing missing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "scripts/chaos.sh needs: apt-get install -y --no-install-recommends ${need[*]}" >&2
    exit 2
  fi
fi

target=${CARGO_TARGET_DIR:-target}
bin="$target/debug"
node="$bin/kmb-node"
env_args=()
if [ -n "${KMB_CHAOS_PLANTED:-}" ]; then
  echo "==> building kmb-node with the chaos-mutation feature (planted bug: $KMB_CHAOS_PLANTED)"
  cargo build --locked -q -p kmb-node --bin kmb-node --features chaos-mutation
  cp "$bin/kmb-node" "$bin/kmb-node-planted"
  node="$bin/kmb-node-planted"
  env_args=(--node-env "KMB_MUTATION=$KMB_CHAOS_PLANTED")
fi
echo "==> building kmb-node and kmb-chaos"
cargo build --locked -q -p kmb-node --bin kmb-node -p kmb-tests --bin kmb-chaos

# Leftovers of earlier runs that died without cleaning up (their pid is gone).
"$bin/kmb-chaos" --cleanup >/dev/null || true

set +e
"$bin/kmb-chaos" --seconds "$seconds" --seed "$seed" --node-bin "$node" "${env_args[@]}" "$@"
rc=$?
set -e
if [ -n "${KMB_CHAOS_PLANTED:-}" ]; then
  if [ "$rc" = 1 ]; then
    echo "planted bug $KMB_CHAOS_PLANTED: CAUGHT (the checks failed, as they must)"
    exit 0
  fi
  echo "planted bug $KMB_CHAOS_PLANTED: NOT caught (kmb-chaos exit $rc)" >&2
  exit 1
fi
exit "$rc"
