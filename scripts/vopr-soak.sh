#!/usr/bin/env bash
# Soak: sweep the VOPR from random starting points, far from the seeds every other sweep
# runs, in resumable batches (each range is one scripts/vopr-overnight.sh run). Run it before
# every closing note that touches the core.
#
#   scripts/vopr-soak.sh                          # 5 ranges x 20,000 seeds = 100,000 seeds
#   VOPR_SOAK_RANGES=2 VOPR_SOAK_SEEDS=500 scripts/vopr-soak.sh   # a short one
#
# Env (all optional):
#   VOPR_SOAK_RANGES   number of ranges                     (default 5)
#   VOPR_SOAK_SEEDS    seeds per range                      (default 20000)
#   VOPR_SOAK_DIR      where the soak lives                 (default vopr-soak)
#   VOPR_SOAK_STARTS   explicit start seeds, space-separated (default: drawn at random)
#   VOPR_JOBS, VOPR_BATCH, VOPR_EXTRA_ARGS, VOPR_BIN: as for vopr-overnight.sh
#
# The plan (the start of every range) is drawn once, printed, and written to
# VOPR_SOAK_DIR/plan.txt; run the script again after an interruption (Ctrl-C, kill, reboot)
# and it resumes the same plan where it stopped: finished ranges are skipped, the range in
# progress resumes at its interrupted batch. Delete VOPR_SOAK_DIR (or set another) for a new
# plan. Exit status: 0 if every seed of every range passed, 1 if any failed, 2 on a usage or
# harness error. Each range's run directory has records.ndjson, failures.log, summary.txt.
set -euo pipefail

script_dir="$(cd "$(dirname "$0")" && pwd)"
repo_dir="$(cd "$script_dir/.." && pwd)"
overnight="$script_dir/vopr-overnight.sh"

ranges="${VOPR_SOAK_RANGES:-5}"
per_range="${VOPR_SOAK_SEEDS:-20000}"
soak_dir="${VOPR_SOAK_DIR:-vopr-soak}"

die() { echo "vopr-soak: $*" >&2; exit 2; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

is_uint "$ranges" && [ "$ranges" -ge 1 ] || die "VOPR_SOAK_RANGES must be >= 1, got '$ranges'"
is_uint "$per_range" && [ "$per_range" -ge 1 ] || die "VOPR_SOAK_SEEDS must be >= 1, got '$per_range'"

mkdir -p "$soak_dir"
plan="$soak_dir/plan.txt"
if [ -f "$plan" ]; then
  log "resuming the plan in $plan"
else
  starts=()
  if [ -n "${VOPR_SOAK_STARTS:-}" ]; then
    read -r -a starts <<<"$VOPR_SOAK_STARTS"
    for s in "${starts[@]}"; do is_uint "$s" || die "VOPR_SOAK_STARTS: '$s' is not a seed"; done
    ranges=${#starts[@]}
  else
    # Random starts below 2^40, spaced so that no two ranges overlap.
    for _ in $(seq "$ranges"); do
      while :; do
        s=$(( $(od -An -N5 -tu8 /dev/urandom | tr -d ' ') ))
        ok=1
        for t in "${starts[@]:-}"; do
          [ -n "$t" ] || continue
          if [ $((s > t ? s - t : t - s)) -lt "$per_range" ]; then ok=0; fi
        done
        [ "$ok" = 1 ] && break
      done
      starts+=("$s")
    done
  fi
  {
    echo "# vopr-soak plan: $ranges ranges of $per_range seeds, drawn $(date -u +%FT%TZ)"
    echo "# git $(git -C "$repo_dir" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    for s in "${starts[@]}"; do echo "$s $per_range"; done
  } >"$plan"
fi
echo "plan ($plan):"
grep -v '^#' "$plan" | while read -r s n; do echo "  seeds $s..$((s + n - 1))"; done

# Build once for every range.
if [ -z "${VOPR_BIN:-}" ]; then
  log "building vopr (release, --cfg madsim, target/madsim-release)"
  (cd "$repo_dir" && RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim-release \
    cargo build --release -p kmb-tests --features vopr --bin vopr)
  export VOPR_BIN="$repo_dir/target/madsim-release/release/vopr"
fi

status=0
started=$(date +%s)
i=0
while read -r start count; do
  case "$start" in '#'*|'') continue ;; esac
  i=$((i + 1))
  range_dir="$soak_dir/range-$i-$start"
  log "range $i: seeds $start..$((start + count - 1))"
  done_run=""
  for ck in "$range_dir"/run-*/checkpoint.json; do
    [ -f "$ck" ] || continue
    if python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("finished") else 1)' "$ck"; then
      done_run="$(dirname "$ck")"
    fi
  done
  if [ -n "$done_run" ]; then
    log "range $i already finished ($done_run)"
    [ -s "$done_run/failures.log" ] && status=1
    continue
  fi
  rc=0
  VOPR_SEED="$start" VOPR_ITERATIONS="$count" VOPR_OUTPUT_DIR="$range_dir" \
    "$overnight" || rc=$?
  case "$rc" in
    0) ;;
    1) status=1 ;;
    *) die "range $i (start $start) stopped with a harness error ($rc)" ;;
  esac
done <"$plan"

echo
echo "soak summary ($soak_dir, $(( $(date +%s) - started )) s this invocation):"
total=0
failed=0
for r in "$soak_dir"/range-*; do
  [ -d "$r" ] || continue
  d="$(ls -1d "$r"/run-* 2>/dev/null | tail -n 1)"
  [ -n "$d" ] && [ -f "$d/records.ndjson" ] || continue
  n=$(grep -c . "$d/records.ndjson" || true)
  f=$(grep -c . "$d/failures.log" || true)
  total=$((total + n))
  failed=$((failed + f))
  echo "  $d: $n seeds, $f failed"
  [ "$f" -eq 0 ] || sed 's/^/    /' "$d/failures.log"
done
echo "  total: $total seeds, $failed failed"
exit "$status"
