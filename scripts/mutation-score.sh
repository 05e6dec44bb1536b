#!/usr/bin/env bash
# Mutation score of the VOPR: run every planted bug (`vopr --list-mutations`) over up to N seeds
# and report the first seed whose checkers caught it.
#
#   scripts/mutation-score.sh                     # up to 1000 seeds per mutation, from seed 0
#   MUTATION_SEEDS=200 MUTATION_JOBS=2 scripts/mutation-score.sh
#   MUTATION_START=5000 scripts/mutation-score.sh commit-before-quorum read-from-backup
#
# Seeds run in batches of MUTATION_BATCH (50) with --json; a mutation stops at the first batch
# holding a seed that fails (or is unknown) with the mutation, where the mutation point
# actually changed behaviour, and that passes without the mutation. Prints: mutation, first catching seed, the checker and
# failure kind that fired, seeds run. Exit code 1 if some mutation was never caught.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${MUTATION_SEEDS:-1000}
jobs=${MUTATION_JOBS:-$(nproc)}
batch=${MUTATION_BATCH:-50}
start=${MUTATION_START:-0}
target_dir=${CARGO_TARGET_DIR_MADSIM_RELEASE:-target/madsim-release}

# An exported RUSTFLAGS would replace the simulator flag: set it explicitly.
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$target_dir" \
  cargo build --release -p kmb-tests --features vopr --bin vopr >&2
vopr="$target_dir/release/vopr"

if [ "$#" -gt 0 ]; then
  mutations=("$@")
else
  mapfile -t mutations < <("$vopr" --list-mutations | awk '{print $1}')
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

results="$work/results.tsv"
: >"$results"
for m in "${mutations[@]}"; do
  json="$work/$m.ndjson"
  : >"$json"
  ran=0
  caught=""
  while [ "$ran" -lt "$seeds" ]; do
    n=$((seeds - ran < batch ? seeds - ran : batch))
    first=$((start + ran))
    rc=0
    "$vopr" --mutation "$m" --seed "$first" -n "$n" --jobs "$jobs" \
      --no-trace-on-failure --no-failure-diagnosis --json "$json" >/dev/null 2>"$work/stderr" || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
      echo "error: vopr --mutation $m failed (exit $rc):" >&2
      cat "$work/stderr" >&2
      exit 2
    fi
    ran=$((ran + n))
    # The first seed of everything run so far (seeds finish out of order with --jobs) that
    # fails with the mutation, where the mutation actually bit, and that passes without it
    # (a seed that also fails on the correct node is not a catch).
    caught=""
    while IFS=$'\t' read -r seed checker kind; do
      [ -n "$seed" ] || continue
      if grep -qx "$seed" "$work/baseline-fails" 2>/dev/null; then
        continue
      fi
      if "$vopr" --seed "$seed" -n 1 --no-trace-on-failure --no-failure-diagnosis >/dev/null 2>&1; then
        caught=$(printf '%s\t%s\t%s' "$seed" "$checker" "$kind")
        break
      fi
      echo "$seed" >>"$work/baseline-fails"
      echo "note: seed $seed fails without the mutation too; not counted" >&2
    done < <(python3 - "$json" <<'EOF'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
bad = sorted((r for r in records if r["outcome"] != "pass" and r.get("mutation_bites", 0) > 0),
             key=lambda r: r["seed"])
for r in bad:
    print("\t".join([str(r["seed"]), r.get("checker") or "?", r.get("failure_kind") or "?"]))
EOF
)
    if [ -n "$caught" ]; then
      break
    fi
  done
  fired=$(python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(sum(1 for r in rs if r.get("mutation_bites", 0) > 0))' "$json")
  if [ -n "$caught" ]; then
    printf '%s\t%s\t%s\t%s\n' "$m" "$caught" "$ran" "$fired" >>"$results"
  else
    printf '%s\t-\tNOT CAUGHT\t-\t%s\t%s\n' "$m" "$ran" "$fired" >>"$results"
  fi
  echo "$m: done after $ran seeds" >&2
done

echo
printf '%-36s %-12s %-22s %-22s %-10s %s\n' mutation first-seed checker failure-kind seeds-run seeds-where-it-bit
while IFS=$'\t' read -r m seed checker kind ran bit; do
  printf '%-36s %-12s %-22s %-22s %-10s %s\n' "$m" "$seed" "$checker" "$kind" "$ran" "$bit"
done <"$results"
if grep -q 'NOT CAUGHT' "$results"; then
  echo
  echo "some mutations were never caught within $seeds seeds"
  exit 1
fi
