#!/usr/bin/env bash
# Tests of scripts/vopr-overnight.sh and the GNU parallel sharding recipe, against fake-vopr.
#   1. a run killed twice (SIGKILL, then SIGTERM) and resumed records every seed exactly once,
#      with the same records as an uninterrupted run;
#   2. a vopr that aborts on one seed gets a harness_crash record for that seed only;
#   3. the GNU parallel recipe of scripts/VOPR-TESTING.md over n shards yields the same seeds
#      and outcomes as an unsharded run.
# Usage: scripts/tests/test-overnight.sh     (needs python3; test 3 needs GNU parallel)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
scripts="$(cd "$here/.." && pwd)"
fake="$here/fake-vopr"
overnight="$scripts/vopr-overnight.sh"
summarize="$scripts/summarize-vopr.py"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0

pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
seeds_of() { python3 "$summarize" seeds "$1"; }
# Records without wall time, sorted by seed: what must not depend on batching or sharding.
canonical() {
  python3 -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for r in sorted(recs, key=lambda r: r["seed"]):
    r.pop("wall_time_ms", None)
    print(json.dumps(r, sort_keys=True))' "$1"
}
expect_range() { # expect_range FILE START COUNT
  local file="$1" start="$2" count="$3"
  seq "$start" $((start + count - 1)) >"$work/expected"
  seeds_of "$file" >"$work/got"
  if cmp -s "$work/expected" "$work/got"; then
    pass "$file: seeds $start..$((start + count - 1)) each exactly once"
  else
    fail "$file: seed set differs ($(wc -l <"$work/got") recorded, $(sort "$work/got" | uniq -d | wc -l) duplicated, expected $count)"
  fi
}
wait_for_records() { # wait_for_records RUN_PARENT N: until >= N records committed
  local parent="$1" n="$2" i=0
  while [ "$i" -lt 600 ]; do
    local r
    r="$(cat "$parent"/run-*/records.ndjson 2>/dev/null | wc -l)"
    [ "$r" -ge "$n" ] && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

start=1000
count=3000

# --- reference: one uninterrupted run --------------------------------------------------------
export VOPR_BIN="$fake" VOPR_SEED="$start" VOPR_ITERATIONS="$count" VOPR_JOBS=2 VOPR_BATCH=250
set +e
VOPR_OUTPUT_DIR="$work/ref" FAKE_VOPR_DELAY_S=0 "$overnight" >"$work/ref.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] && pass "uninterrupted run exits 1 (seeds divisible by 97 fail)" || fail "uninterrupted run exit $rc"
ref_dir="$(ls -1d "$work/ref"/run-*)"
expect_range "$ref_dir/records.ndjson" "$start" "$count"
for f in summary.txt failures.log vopr.log records.ndjson checkpoint.json; do
  [ -s "$ref_dir/$f" ] && pass "run dir has $f" || fail "run dir lacks $f"
done
expected_failures=$(python3 -c "print(sum(1 for s in range($start, $start + $count) if s % 97 == 0 or s % 89 == 0))")
[ "$(wc -l <"$ref_dir/failures.log")" -eq "$expected_failures" ] && pass "failures.log has $expected_failures lines" ||
  fail "failures.log has $(wc -l <"$ref_dir/failures.log") lines, expected $expected_failures"
grep -q "^Successes: $((count - expected_failures))$" "$ref_dir/summary.txt" && grep -q "^Failures: $expected_failures$" "$ref_dir/summary.txt" &&
  grep -q "^Unique failure signatures: " "$ref_dir/summary.txt" && grep -q "repro: vopr --seed 1067 -v" "$ref_dir/summary.txt" &&
  pass "summary counts, signatures and repro commands" || { fail "summary content"; cat "$ref_dir/summary.txt"; }
grep -q '"finished": true' "$ref_dir/checkpoint.json" && pass "checkpoint marked finished" || fail "checkpoint not finished"

# --- killed (SIGKILL), resumed, killed (SIGTERM), resumed ------------------------------------
out="$work/killed"
export FAKE_VOPR_DELAY_S=0.002   # 3000 seeds / 2 jobs-worth of batches: ~6 s in all
VOPR_OUTPUT_DIR="$out" "$overnight" >"$work/k1.out" 2>&1 &
pid=$!
wait_for_records "$out" 750 || fail "first run made no progress"
kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
n1="$(wc -l <"$out"/run-*/records.ndjson)"
[ "$n1" -lt "$count" ] && pass "SIGKILL stopped the run after $n1 seeds" || fail "SIGKILL came too late ($n1)"

VOPR_OUTPUT_DIR="$out" "$overnight" >"$work/k2.out" 2>&1 &
pid=$!
wait_for_records "$out" $((n1 + 750)) || fail "second run made no progress"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
grep -q "resuming" "$work/k2.out" && pass "second run resumed ($(grep resuming "$work/k2.out"))" || fail "second run did not resume"
grep -q "interrupted" "$work/k2.out" && pass "SIGTERM handled" || fail "SIGTERM not handled: $(tail -3 "$work/k2.out")"

set +e
VOPR_OUTPUT_DIR="$out" "$overnight" >"$work/k3.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] && pass "resumed run completes (exit 1)" || { fail "resumed run exit $rc"; tail "$work/k3.out"; }
[ "$(ls -1d "$out"/run-* | wc -l)" -eq 1 ] && pass "all three invocations used one run dir" || fail "several run dirs"
kdir="$(ls -1d "$out"/run-*)"
expect_range "$kdir/records.ndjson" "$start" "$count"
if diff <(canonical "$ref_dir/records.ndjson") <(canonical "$kdir/records.ndjson") >/dev/null; then
  pass "interrupted+resumed records equal the uninterrupted run's"
else
  fail "records differ from the uninterrupted run"
fi
cmp -s <(sort "$ref_dir/failures.log") <(sort "$kdir/failures.log") && pass "failures.log equal after resume" || fail "failures.log differs after resume"
unset FAKE_VOPR_DELAY_S

# --- a vopr that aborts on one seed ---------------------------------------------------------
set +e
VOPR_OUTPUT_DIR="$work/crash" VOPR_ITERATIONS=400 VOPR_BATCH=200 FAKE_VOPR_CRASH_SEED=1150 "$overnight" >"$work/crash.out" 2>&1
set -e
cdir="$(ls -1d "$work/crash"/run-*)"
expect_range "$cdir/records.ndjson" "$start" 400
crash_lines="$(grep -c harness_crash "$cdir/records.ndjson" || true)"
[ "$crash_lines" -eq 1 ] && grep -q '"seed": 1150, .*harness_crash' "$cdir/records.ndjson" &&
  pass "aborting seed 1150 recorded as harness_crash, the rest of its batch rerun" || fail "harness crash handling ($crash_lines)"

# --- GNU parallel sharding (the recipe in scripts/VOPR-TESTING.md) --------------------------
if ! command -v parallel >/dev/null; then
  fail "GNU parallel missing: apt-get install parallel"
else
  shards=3
  sdir="$work/shards"
  mkdir -p "$sdir"
  VOPR="$fake"
  # --- recipe start ---
  parallel --will-cite --halt never -j "$shards" \
    "$VOPR" --seed "$start" -n "$count" --shard {}/"$shards" --jobs 1 --json "$sdir/shard-{}.ndjson" \
    '>' "$sdir/shard-{}.log" ::: $(seq 0 $((shards - 1))) || true
  cat "$sdir"/shard-*.ndjson >"$sdir/records.ndjson"
  python3 "$summarize" summary "$sdir/records.ndjson" >"$sdir/summary.txt"
  # --- recipe end ---
  expect_range "$sdir/records.ndjson" "$start" "$count"
  if diff <(canonical "$ref_dir/records.ndjson") <(canonical "$sdir/records.ndjson") >/dev/null; then
    pass "$shards parallel shards give the same seeds and records as the unsharded run"
  else
    fail "sharded records differ from the unsharded run"
  fi
  for i in $(seq 0 $((shards - 1))); do
    if python3 -c "
import json,sys
bad=[r['seed'] for r in map(json.loads, open(sys.argv[1])) if r['seed'] % $shards != $i]
sys.exit(1 if bad else 0)" "$sdir/shard-$i.ndjson"; then
      pass "shard $i/$shards holds only seeds s % $shards == $i"
    else
      fail "shard $i/$shards holds foreign seeds"
    fi
  done
  # Shards from anywhere (other machines) merge into one summary.
  if python3 "$summarize" merge "$sdir"/shard-*.ndjson --start "$start" --count "$count" \
      --out "$sdir/merged.ndjson" >"$sdir/merge.txt" 2>&1 || [ $? -eq 1 ]; then
    if grep -q "0 missing" "$sdir/merge.txt" &&
       diff <(canonical "$ref_dir/records.ndjson") <(canonical "$sdir/merged.ndjson") >/dev/null; then
      pass "merge of $shards shard files: complete, records equal to the unsharded run"
    else
      fail "merge of shard files: $(head -3 "$sdir/merge.txt")"
    fi
  else
    fail "merge of complete shards exited 2: $(head -5 "$sdir/merge.txt")"
  fi
  set +e
  python3 "$summarize" merge "$sdir/shard-0.ndjson" "$sdir/shard-1.ndjson" --start "$start" --count "$count" >"$sdir/merge-missing.txt" 2>&1
  rc=$?
  set -e
  [ "$rc" -eq 2 ] && grep -q "missing (first:" "$sdir/merge-missing.txt" &&
    pass "merge without shard 2 exits 2 naming missing seeds" || fail "merge with a shard missing (rc $rc)"
  head -1 "$sdir/shard-0.ndjson" | python3 -c "
import json,sys
r=json.loads(sys.stdin.read()); r['event_hash']='0'*32; print(json.dumps(r))" >"$sdir/other-binary.ndjson"
  set +e
  python3 "$summarize" merge "$sdir"/shard-*.ndjson "$sdir/other-binary.ndjson" >"$sdir/merge-conflict.txt" 2>&1
  rc=$?
  set -e
  [ "$rc" -eq 2 ] && grep -q "^CONFLICT: seed" "$sdir/merge-conflict.txt" &&
    pass "merge of a seed recorded differently exits 2 (CONFLICT)" || fail "merge conflict detection (rc $rc)"
  # The overnight script over one shard.
  set +e
  VOPR_OUTPUT_DIR="$work/oshard" VOPR_ITERATIONS=600 VOPR_SHARD=1/3 "$overnight" >"$work/oshard.out" 2>&1
  set -e
  odir="$(ls -1d "$work/oshard"/run-*)"
  python3 -c "
import json,sys
seeds=sorted(json.loads(l)['seed'] for l in open(sys.argv[1]))
sys.exit(0 if seeds == [s for s in range($start, $start + 600) if s % 3 == 1] else 1)" "$odir/records.ndjson" &&
    pass "VOPR_SHARD=1/3 overnight run covers exactly its shard" || fail "VOPR_SHARD overnight run"
fi

# 4. The soak script: a plan of random ranges, printed and kept; a second invocation resumes
#    the same plan (finished ranges are not rerun); failures of the fake's seeds are reported.
soak="$scripts/vopr-soak.sh"
set +e
VOPR_BIN="$fake" VOPR_SOAK_DIR="$work/soak" VOPR_SOAK_RANGES=2 VOPR_SOAK_SEEDS=150 VOPR_BATCH=50 \
  "$soak" >"$work/soak1.out" 2>&1
rc1=$?
VOPR_BIN="$fake" VOPR_SOAK_DIR="$work/soak" VOPR_SOAK_RANGES=2 VOPR_SOAK_SEEDS=150 VOPR_BATCH=50 \
  "$soak" >"$work/soak2.out" 2>&1
rc2=$?
set -e
starts=$(grep -v '^#' "$work/soak/plan.txt" | awk '{print $1}')
expected_failed=0
for s in $starts; do
  expected_failed=$((expected_failed + $(python3 -c "import sys; a=int(sys.argv[1]); print(sum(1 for x in range(a, a + 150) if x % 97 == 0 or x % 89 == 0))" "$s")))
done
if [ "$(echo "$starts" | wc -w)" -eq 2 ] && grep -q "total: 300 seeds, $expected_failed failed" "$work/soak1.out" &&
  grep -q "total: 300 seeds, $expected_failed failed" "$work/soak2.out" && grep -q "already finished" "$work/soak2.out" &&
  [ "$rc1" -eq $((expected_failed > 0 ? 1 : 0)) ] && [ "$rc2" -eq "$rc1" ]; then
  pass "vopr-soak: 2 random ranges x 150 seeds, $expected_failed failures reported, resumed plan not rerun"
else
  fail "vopr-soak (rc $rc1/$rc2): $(tail -3 "$work/soak1.out" | tr '\n' ' ')"
fi

echo
if [ "$failures" -eq 0 ]; then echo "all overnight-script tests passed"; else echo "$failures test(s) failed"; exit 1; fi
