#!/usr/bin/env bash
# The project's test command: formatting, lints and every test, in both modes.
#   production:  cargo test                     (target/)
#   simulation:  RUSTFLAGS="--cfg madsim" ...   (target/madsim, so switching never rebuilds)
# Usage: scripts/test.sh            # everything
#        KMB_SKIP_LINT=1 scripts/test.sh   # tests only
set -euo pipefail
cd "$(dirname "$0")/.."

# An exported RUSTFLAGS would leak into the production build: start from a clean slate.
unset RUSTFLAGS
sim() { RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim "$@"; }
step() { printf '\n==> %s\n' "$*"; }

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

step "tests (simulation)"
sim cargo test --workspace --locked

step "VOPR sweep: 300 seeds with faults, 20 seeds run twice for determinism (release)"
VOPR_SEEDS=300 VOPR_SEED=0 scripts/vopr-quick.sh --no-trace-on-failure
target/madsim-release/release/vopr --seed 300 -n 20 --jobs "$(nproc)" --check-determinism

step "overnight-sweep script: kill/resume and GNU parallel sharding (fake vopr)"
scripts/tests/test-overnight.sh
