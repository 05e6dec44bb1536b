#!/usr/bin/env python3
"""Compare two `vopr --json` NDJSON files seed by seed: a speed change must not change any run.

Usage: compare-vopr-runs.py OLD.json NEW.json
  e.g. old/vopr --seed 0 -n 300 -j 2 --json /tmp/old.json
       new/vopr --seed 0 -n 300 -j 2 --json /tmp/new.json
Exit status 0 iff both hold the same seeds and every seed agrees on every field below
(times of the host, such as wall_time_ms and cpu_time_us, are not compared).
"""
import json
import sys

FIELDS = ["outcome", "failure_kind", "event_hash", "committed_ops", "client_ops",
          "unknown_ops", "sim_time_ms", "fault_counters", "marks"]


def load(path):
    records = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                records[r["seed"]] = r
    return records


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    a, b = load(sys.argv[1]), load(sys.argv[2])
    bad = 0
    if set(a) != set(b):
        print(f"seed sets differ: {len(a)} vs {len(b)} seeds")
        bad += 1
    for seed in sorted(set(a) & set(b)):
        for field in FIELDS:
            if a[seed].get(field) != b[seed].get(field):
                bad += 1
                if bad <= 20:
                    print(f"seed {seed}: {field} differs: "
                          f"{str(a[seed].get(field))[:200]} vs {str(b[seed].get(field))[:200]}")
    n = len(set(a) & set(b))
    print(f"compared {n} seeds: " + ("identical" if bad == 0 else f"{bad} differences"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
