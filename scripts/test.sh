#!/usr/bin/env bash
# The project's test command: formatting, lints and every test, in both modes.
#   production:  cargo test                     (target/)
#   simulation:  RUSTFLAGS="--cfg madsim" ...   (target/madsim, so switching never rebuilds)
# Usage: scripts/test.sh            # everything
#        KMB_SKIP_LINT=1 scripts/test.sh   # tests only
#        KMB_SKIP_CHAOS=1 scripts/test.sh  # without the real-cluster chaos runs (they need root)
set -euo pipefail
cd "$(dirname "$0")/.."

# An exported RUSTFLAGS would leak into the production build: start from a clean slate.
unset RUSTFLAGS
sim() { RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim "$@"; }
step() { printf '\n==> %s\n' "$*"; }

# Set-up: the Debian packages the tests use. Installed here when missing (as root with
# apt-get); otherwise the script stops at once with the command that installs them.
#   chromium    — the VOPR's HTML timeline is rendered headless (kmb-tests/tests/timeline_chromium.rs)
#   parallel    — the sharded-sweep recipe is run with GNU parallel (scripts/tests/test-overnight.sh)
#   redis-tools — redis-cli and redis-benchmark drive the real-process cluster tests
#                 (kmb-node/tests/*_real.rs)
#   python3, python3-pip, nodejs, npm — redis-py (pip), node-redis and ioredis (npm), installed
#                 below, are real clients in kmb-node/tests/clients_real.rs
#   iproute2, nftables — the chaos smoke's network namespaces, partitions and link faults
#                 (docs/chaos.md)
#   openssh-server, openssh-client — the across-machines sweep recipe, run over ssh between
#                 two network-namespace hosts (scripts/tests/test-ssh-sweep.sh; as root)
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v parallel >/dev/null 2>&1 || need+=(parallel)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ -z "${KMB_SKIP_CHAOS:-}" ]; then
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v nft >/dev/null 2>&1 || need+=(nftables)
fi
if [ "$(id -u)" = 0 ]; then
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
  command -v ip >/dev/null 2>&1 || [[ " ${need[*]} " == *" iproute2 "* ]] || need+=(iproute2)
fi
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -z "${KMB_NO_INSTALL:-}" ]; then
    step "installing missing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "scripts/test.sh needs these Debian packages: ${need[*]}" >&2
    echo "install them with:  sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
    exit 2
  fi
fi
# redis-py 8 or later (its defaults: RESP3 via HELLO 3; Debian's python3-redis is older): from PyPI.
if ! python3 -c 'import sys, redis; sys.exit(int(redis.__version__.split(".")[0]) < 8)' 2>/dev/null; then
  if [ -z "${KMB_NO_INSTALL:-}" ]; then
    step "installing redis-py (pip)"
    python3 -m pip install -q 'redis>=8' 2>/dev/null ||
      python3 -m pip install -q --break-system-packages 'redis>=8'
  else
    echo "scripts/test.sh needs redis-py 8 or later" >&2
    echo "install it with:  python3 -m pip install 'redis>=8'" >&2
    exit 2
  fi
fi
# node-redis and ioredis: the versions locked in kmb-node/tests/clients/package-lock.json.
if [ ! -d kmb-node/tests/clients/node_modules/ioredis ] || [ ! -d kmb-node/tests/clients/node_modules/redis ]; then
  if [ -z "${KMB_NO_INSTALL:-}" ]; then
    step "installing node-redis and ioredis (npm ci)"
    (cd kmb-node/tests/clients && npm ci --no-audit --no-fund --loglevel=error)
  else
    echo "scripts/test.sh needs node-redis and ioredis" >&2
    echo "install them with:  (cd kmb-node/tests/clients && npm ci)" >&2
    exit 2
  fi
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

if [ -z "${KMB_SKIP_LINT:-}" ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "clippy (production)"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  step "clippy (simulation)"
  sim cargo clippy --workspace --all-targets --features kmb-tests/vopr --locked -- -D warnings
fi

step "production build does not link madsim"
if cargo tree --workspace -e normal --locked --prefix none | grep -E '^madsim v'; then
  echo "error: the production dependency tree contains madsim" >&2
  exit 1
fi

step "tests (production)"
cargo test --workspace --locked

if [ -z "${KMB_SKIP_CHAOS:-}" ]; then
  step "chaos smoke: 60 s, 3 real replicas in network namespaces, kills and partitions (docs/chaos.md)"
  scripts/chaos.sh 60 16 --nemesis kill-primary,kill-random,partition-primary,partition
  step "chaos: a planted bug (read-from-backup, chaos-mutation build) is caught"
  KMB_CHAOS_PLANTED=read-from-backup scripts/chaos.sh 20 1 --nemesis kill-primary,partition
fi

step "tests (simulation)"
sim cargo test --workspace --locked

step "VOPR sweep: 300 seeds with faults, 20 seeds run twice for determinism (release)"
VOPR_SEEDS=300 VOPR_SEED=0 scripts/vopr-quick.sh --no-trace-on-failure
target/madsim-release/release/vopr --seed 300 -n 20 --jobs "$(nproc)" --check-determinism

step "overnight-sweep script: kill/resume and GNU parallel sharding (fake vopr)"
scripts/tests/test-overnight.sh

step "Kubernetes Indexed Job for sweeps: validated offline against the schema"
scripts/tests/test-k8s-manifest.sh

if [ "$(id -u)" = 0 ]; then
  step "sweep across machines: two ssh hosts in network namespaces, shards merged (fake vopr)"
  scripts/tests/test-ssh-sweep.sh
else
  step "sweep across machines: skipped (needs root for network namespaces)"
fi
