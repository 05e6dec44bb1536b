#!/usr/bin/env bash
# The fast path: build `vopr` in release (in its own target dir) and sweep a few hundred seeds.
#
#   scripts/vopr-quick.sh                 # 200 random-start seeds on every core
#   VOPR_SEEDS=1000 VOPR_SEED=42 scripts/vopr-quick.sh -v    # extra flags go to vopr
#
# Exit code 0 only if every seed passed. Failing seeds are listed with their repro command;
# traces, reports and HTML timelines of failing seeds go to vopr-traces/.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${VOPR_SEEDS:-200}
jobs=${VOPR_JOBS:-$(nproc)}
seed_args=()
if [ -n "${VOPR_SEED:-}" ]; then
  seed_args=(--seed "$VOPR_SEED")
fi

# An exported RUSTFLAGS would replace the simulator flag: set it explicitly.
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim-release \
  cargo build --release --locked -p kmb-tests --features vopr --bin vopr
exec target/madsim-release/release/vopr "${seed_args[@]}" -n "$seeds" --jobs "$jobs" "$@"
