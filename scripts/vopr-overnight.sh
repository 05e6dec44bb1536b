#!/usr/bin/env bash
# Overnight VOPR sweep: many seeds in batches, resumable, with a summary built from the records.
#
# Env (all optional):
#   VOPR_ITERATIONS  seeds to run                          (default 100000)
#   VOPR_SEED        first seed                            (default: from today's date, YYYYMMDD000000)
#   VOPR_OUTPUT_DIR  where run directories go              (default vopr-results)
#   VOPR_JOBS        parallel seeds per vopr call          (default: nproc)
#   VOPR_BATCH       seeds per vopr call                   (default 200)
#   VOPR_SHARD       i/n: run only seeds s with s % n == i (one machine of n)
#   VOPR_EXTRA_ARGS  more vopr flags, e.g. "--no-faults" or "--mutation skip_sync"
#   VOPR_BIN         the vopr binary (default: build it, release, under --cfg madsim)
#   VOPR_RESUME      auto (default: resume the latest unfinished run in VOPR_OUTPUT_DIR),
#                    no (always start a new run), or a run directory to resume
#
# A run directory VOPR_OUTPUT_DIR/run-<UTC timestamp>/ holds:
#   records.ndjson   one record per seed (vopr --json), each seed exactly once
#   failures.log     one line per failed seed, with its repro command
#   vopr.log         vopr's own output, batch by batch
#   summary.txt      counts, success rate, seeds/s, unique failure signatures, fault counters
#   checkpoint.json  next seed and the committed sizes of records/failures, after every batch
# Kill it at any time (Ctrl-C, SIGTERM, SIGKILL, reboot) and run it again: it resumes at the
# first seed of the batch that was interrupted, and drops that batch's partial output.
# Exit status: 0 if every seed passed, 1 if any failed, 2 on a usage or harness error.
set -euo pipefail

script_dir="$(cd "$(dirname "$0")" && pwd)"
repo_dir="$(cd "$script_dir/.." && pwd)"
summarize="$script_dir/summarize-vopr.py"

iterations="${VOPR_ITERATIONS:-100000}"
start_seed="${VOPR_SEED:-$(date -u +%Y%m%d)000000}"
output_dir="${VOPR_OUTPUT_DIR:-vopr-results}"
jobs="${VOPR_JOBS:-$(nproc)}"
batch_size="${VOPR_BATCH:-200}"
shard="${VOPR_SHARD:-}"
extra_args="${VOPR_EXTRA_ARGS:-}"
resume="${VOPR_RESUME:-auto}"

die() { echo "vopr-overnight: $*" >&2; exit 2; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

is_uint "$iterations" || die "VOPR_ITERATIONS must be a number, got '$iterations'"
is_uint "$start_seed" || die "VOPR_SEED must be a number, got '$start_seed'"
is_uint "$jobs" && [ "$jobs" -ge 1 ] || die "VOPR_JOBS must be >= 1, got '$jobs'"
is_uint "$batch_size" && [ "$batch_size" -ge 1 ] || die "VOPR_BATCH must be >= 1, got '$batch_size'"
if [ -n "$shard" ] && ! [[ "$shard" =~ ^[0-9]+/[1-9][0-9]*$ ]]; then
  die "VOPR_SHARD must look like i/n, got '$shard'"
fi
command -v python3 >/dev/null || die "python3 is required (for $summarize)"

# --- the binary ---------------------------------------------------------------------------
if [ -z "${VOPR_BIN:-}" ]; then
  log "building vopr (release, --cfg madsim, target/madsim-release)"
  (cd "$repo_dir" && RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim-release \
    cargo build --release -p kmb-tests --features vopr --bin vopr)
  VOPR_BIN="$repo_dir/target/madsim-release/release/vopr"
fi
[ -x "$VOPR_BIN" ] || die "VOPR_BIN '$VOPR_BIN' is not executable"

# --- checkpoint helpers -------------------------------------------------------------------
ckpt_get() { # ckpt_get FILE KEY
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print("" if v is None else v)' "$1" "$2"
}
ckpt_write() { # ckpt_write DIR NEXT_SEED FINISHED ELAPSED_S
  local dir="$1"
  python3 - "$dir" "$2" "$3" "$4" <<'PY'
import json, os, sys, datetime
d, next_seed, finished, elapsed = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "true", float(sys.argv[4])
path = os.path.join(d, "checkpoint.json")
ck = json.load(open(path)) if os.path.exists(path) else {}
ck.update({
    "next_seed": next_seed,
    "finished": finished,
    "elapsed_s": elapsed,
    "records_bytes": os.path.getsize(os.path.join(d, "records.ndjson")),
    "failures_bytes": os.path.getsize(os.path.join(d, "failures.log")),
    "updated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
})
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(ck, f, indent=2)
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, path)
PY
}

now_s() { date +%s.%N; }
elapsed_add() { python3 -c "import sys; print(f'{float(sys.argv[1]) + float(sys.argv[3]) - float(sys.argv[2]):.3f}')" "$@"; }

# --- new run or resume --------------------------------------------------------------------
mkdir -p "$output_dir"
run_dir=""
case "$resume" in
  no) ;;
  auto)
    for d in $(ls -1d "$output_dir"/run-* 2>/dev/null | sort -r); do
      if [ -f "$d/checkpoint.json" ] && [ "$(ckpt_get "$d/checkpoint.json" finished)" = "False" ]; then
        run_dir="$d"
        break
      fi
    done
    ;;
  *)
    [ -f "$resume/checkpoint.json" ] || die "VOPR_RESUME='$resume' has no checkpoint.json"
    run_dir="$resume"
    ;;
esac

if [ -n "$run_dir" ]; then
  ck="$run_dir/checkpoint.json"
  if [ "$(ckpt_get "$ck" finished)" = "True" ]; then
    log "run $run_dir already finished"
    cat "$run_dir/summary.txt"
    exit 0
  fi
  # Another overnight still running on this directory?
  if [ -f "$run_dir/overnight.pid" ] && kill -0 "$(cat "$run_dir/overnight.pid")" 2>/dev/null; then
    die "run $run_dir is still being driven by pid $(cat "$run_dir/overnight.pid")"
  fi
  # A vopr orphaned by a SIGKILL of the previous driver: stop it so it cannot keep writing.
  if [ -f "$run_dir/vopr.pid" ]; then
    old="$(cat "$run_dir/vopr.pid")"
    if kill -0 "$old" 2>/dev/null && grep -q "$(basename "$(ckpt_get "$ck" vopr_bin)")" "/proc/$old/cmdline" 2>/dev/null; then
      log "stopping orphaned vopr pid $old"
      kill "$old" 2>/dev/null || true
    fi
  fi
  start_seed="$(ckpt_get "$ck" start_seed)"
  iterations="$(ckpt_get "$ck" iterations)"
  batch_size="$(ckpt_get "$ck" batch_size)"
  shard="$(ckpt_get "$ck" shard)"
  extra_args="$(ckpt_get "$ck" extra_args)"
  next_seed="$(ckpt_get "$ck" next_seed)"
  elapsed_s="$(ckpt_get "$ck" elapsed_s)"
  # Drop whatever the interrupted batch appended after the last checkpoint.
  truncate -s "$(ckpt_get "$ck" records_bytes)" "$run_dir/records.ndjson"
  truncate -s "$(ckpt_get "$ck" failures_bytes)" "$run_dir/failures.log"
  rm -f "$run_dir"/batch-*.ndjson
  log "resuming $run_dir at seed $next_seed (range $start_seed..$((start_seed + iterations - 1)))"
  echo "=== resumed at seed $next_seed ($(date -u +%FT%TZ)) ===" >>"$run_dir/vopr.log"
else
  stamp="$(date -u +%Y%m%d-%H%M%S)"
  run_dir="$output_dir/run-$stamp"
  n=1
  while [ -e "$run_dir" ]; do run_dir="$output_dir/run-$stamp-$n"; n=$((n + 1)); done
  mkdir -p "$run_dir"
  : >"$run_dir/records.ndjson"
  : >"$run_dir/failures.log"
  : >"$run_dir/vopr.log"
  python3 - "$run_dir/checkpoint.json" "$start_seed" "$iterations" "$batch_size" "$jobs" "$shard" "$extra_args" "$VOPR_BIN" <<'PY'
import json, sys, datetime
path, start, iters, batch, jobs, shard, extra, vopr = sys.argv[1:9]
json.dump({
    "version": 1, "start_seed": int(start), "iterations": int(iters), "batch_size": int(batch),
    "jobs": int(jobs), "shard": shard or None, "extra_args": extra, "vopr_bin": vopr,
    "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
}, open(path, "w"), indent=2)
PY
  next_seed="$start_seed"
  elapsed_s=0
  ckpt_write "$run_dir" "$next_seed" false "$elapsed_s"
  log "new run $run_dir: seeds $start_seed..$((start_seed + iterations - 1)), batches of $batch_size, $jobs jobs${shard:+, shard $shard}"
fi

end_seed=$((start_seed + iterations))
echo $$ >"$run_dir/overnight.pid"

write_summary() {
  python3 "$summarize" summary "$run_dir/records.ndjson" --elapsed-s "$elapsed_s" \
    --extra-args "$extra_args" >"$run_dir/summary.txt.tmp" &&
    mv "$run_dir/summary.txt.tmp" "$run_dir/summary.txt"
}

vopr_pid=""
on_signal() {
  log "interrupted: stopping vopr; rerun to resume at seed $next_seed"
  if [ -n "$vopr_pid" ]; then kill "$vopr_pid" 2>/dev/null || true; wait "$vopr_pid" 2>/dev/null || true; fi
  rm -f "$run_dir/overnight.pid" "$run_dir/vopr.pid"
  write_summary || true
  exit 130
}
trap on_signal INT TERM HUP

batches=0
# shellcheck disable=SC2206
extra=($extra_args)
while [ "$next_seed" -lt "$end_seed" ]; do
  count=$((end_seed - next_seed))
  [ "$count" -gt "$batch_size" ] && count="$batch_size"
  batch="$run_dir/batch-$next_seed.ndjson"
  : >"$batch"
  shard_args=()
  [ -n "$shard" ] && shard_args=(--shard "$shard")
  echo "=== batch seeds $next_seed..$((next_seed + count - 1)) ===" >>"$run_dir/vopr.log"
  t0="$(now_s)"
  set +e
  "$VOPR_BIN" --seed "$next_seed" -n "$count" --jobs "$jobs" --json "$batch" \
    "${shard_args[@]}" "${extra[@]}" >>"$run_dir/vopr.log" 2>&1 &
  vopr_pid=$!
  echo "$vopr_pid" >"$run_dir/vopr.pid"
  wait "$vopr_pid"
  rc=$?
  set -e
  vopr_pid=""
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
    # vopr died: rerun the seeds it did not report one at a time, to name the culprit(s).
    log "vopr exited $rc in batch $next_seed+$count; rerunning unreported seeds one by one"
    for seed in $(python3 "$summarize" check "$batch" --start "$next_seed" --count "$count" --shard "$shard"); do
      set +e
      "$VOPR_BIN" --seed "$seed" -n 1 --jobs 1 --json "$batch" "${extra[@]}" >>"$run_dir/vopr.log" 2>&1
      seed_rc=$?
      set -e
      if [ "$seed_rc" -ne 0 ] && [ "$seed_rc" -ne 1 ]; then
        python3 "$summarize" crash-record "$seed" "$seed_rc" >>"$batch"
      fi
    done
  fi
  missing="$(python3 "$summarize" check "$batch" --start "$next_seed" --count "$count" --shard "$shard" | wc -l)" ||
    die "batch $batch holds seeds outside its range"
  [ "$missing" -eq 0 ] || die "batch $batch is missing $missing seeds (see $run_dir/vopr.log)"

  # Commit the batch: append records and failures, then move the checkpoint past it.
  python3 "$summarize" failures "$batch" --extra-args "$extra_args" >>"$run_dir/failures.log"
  cat "$batch" >>"$run_dir/records.ndjson"
  elapsed_s="$(elapsed_add "$elapsed_s" "$t0" "$(now_s)")"
  next_seed=$((next_seed + count))
  ckpt_write "$run_dir" "$next_seed" false "$elapsed_s"
  rm -f "$batch"
  batches=$((batches + 1))
  if [ $((batches % 10)) -eq 0 ]; then write_summary; fi
  log "seeds up to $((next_seed - 1)) done; $(wc -l <"$run_dir/failures.log") failure(s) so far"
done

write_summary
ckpt_write "$run_dir" "$next_seed" true "$elapsed_s"
rm -f "$run_dir/overnight.pid" "$run_dir/vopr.pid"
cat "$run_dir/summary.txt"
log "results in $run_dir"
if [ -s "$run_dir/failures.log" ]; then exit 1; fi
exit 0
