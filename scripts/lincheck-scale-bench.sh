#!/usr/bin/env bash
# lincheck at real-history scale (issue 16 item 5).
# Generates three 1M-operation kmb-like histories with fixed seeds (lincheck-gen):
#   lin      16 clients, 20 keys, contended counters, 0.2% unknown outcomes
#   unknowns the same with 2% unknown outcomes (many unknown increments)
#   violate  0.2% unknown outcomes and one planted stale counter read
# then runs lincheck (release) RUNS times on each and prints the median wall time,
# the median CPU time (user+sys) and the peak RSS (/usr/bin/time -v), and the verdict.
# BIN=path checks with another lincheck binary (e.g. main's, for a before/after).
# Run from the repository root; OUT (default target/scale-bench) holds the histories.
set -euo pipefail

RUNS="${RUNS:-3}"
OPS="${OPS:-1000000}"
OUT="${OUT:-${CARGO_TARGET_DIR:-target}/scale-bench}"
TIME=/usr/bin/time
if [[ ! -x "$TIME" ]]; then
    echo "lincheck-scale-bench: $TIME missing (Debian: apt-get install time)" >&2
    exit 1
fi

nice -n 10 cargo build --release -p lincheck
REL="${CARGO_TARGET_DIR:-target}/release"
BIN="${BIN:-$REL/lincheck}"
mkdir -p "$OUT"

gen() { # name args...
    local name="$1"; shift
    local file="$OUT/$name-$OPS.ndjson"
    [[ -f "$file" ]] || "$REL/lincheck-gen" --ops "$OPS" --clients 16 --keys 20 "$@" --out "$file"
    echo "$file"
}

median() { sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"; }

printf '%-10s %10s %10s %10s  %s\n' history wall_s cpu_s peak_MB verdict
for spec in "lin --seed 11 --unknown-rate 0.002" \
            "unknowns --seed 12 --unknown-rate 0.02" \
            "violate --seed 13 --unknown-rate 0.002 --violate"; do
    # shellcheck disable=SC2086
    set -- $spec
    name="$1"; shift
    file="$(gen "$name" "$@")"
    walls=(); cpus=(); rss=(); verdict=""
    for _ in $(seq 1 "$RUNS"); do
        log="$(mktemp)"
        out="$(nice -n 10 "$TIME" -v "$BIN" "$file" 2>"$log" || true)"
        verdict="$(printf '%s\n' "$out" | sed -n "s|^$file: \([a-z ]*\) (.*|\1|p")"
        walls+=("$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$log")")
        cpus+=("$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u+s}' "$log")")
        rss+=("$(awk -F': ' '/Maximum resident/ {printf "%.0f", $2/1024}' "$log")")
        rm -f "$log"
    done
    printf '%-10s %10s %10s %10s  %s\n' "$name" \
        "$(printf '%s\n' "${walls[@]}" | median)" \
        "$(printf '%s\n' "${cpus[@]}" | median)" \
        "$(printf '%s\n' "${rss[@]}" | median)" "${verdict:-error}"
done
