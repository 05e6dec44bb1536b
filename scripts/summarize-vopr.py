#!/usr/bin/env python3
"""Helpers for vopr sweeps over NDJSON records (one JSON object per seed, as `vopr --json`).

  summarize-vopr.py summary RECORDS [--elapsed-s S] [--extra-args "..."]   human summary
  summarize-vopr.py failures BATCH [--extra-args "..."]       one line per failed seed
  summarize-vopr.py check BATCH --start S --count N [--shard i/n]
        prints the seeds of the range missing from BATCH (one per line); exit 2 if BATCH has
        seeds outside the range or duplicates
  summarize-vopr.py crash-record SEED RC      a `fail` record for a seed whose vopr died
  summarize-vopr.py seeds RECORDS             sorted seeds, one per line (for comparisons)
  summarize-vopr.py merge SHARD... [--start S --count N] [--out MERGED] [--extra-args "..."]
        merge the NDJSON records of shards run anywhere (other machines, `--shard i/n`,
        overnight run directories) into one summary: counts, failures deduplicated by
        signature, fault coverage. A seed recorded twice must agree (same outcome and event
        hash: the simulation is deterministic, so a difference means two binaries or two
        machines disagree); with --start/--count every seed of the range must be present.
        Exit 0: complete and all passed; 1: some seed failed; 2: missing seeds, or records
        that disagree.

Only the standard library; python3 >= 3.8.
"""
import argparse
import json
import shlex
import sys
from collections import Counter, OrderedDict


def read_records(path):
    """Records of an NDJSON file; a torn last line (killed writer) is skipped."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"warning: {path}:{lineno}: unparsable record skipped", file=sys.stderr)
    return out


def repro(seed, extra_args):
    return " ".join(["vopr", "--seed", str(seed), "-v"] + shlex.split(extra_args or ""))


def signature(rec):
    return (rec.get("checker") or "?", rec.get("failure_kind") or "?",
            rec.get("first_bad_event") or "?")


def parse_shard(text):
    if not text:
        return None
    i, _, n = text.partition("/")
    return int(i), int(n)


def in_range(seed, start, count, shard):
    if not start <= seed < start + count:
        return False
    return shard is None or seed % shard[1] == shard[0]


def cmd_summary(args):
    print_summary(read_records(args.records), args)


def cmd_merge(args):
    by_seed = {}
    conflicts = []
    for path in args.shards:
        for r in read_records(path):
            seed = r["seed"]
            if seed in by_seed:
                prev = by_seed[seed]
                if (prev.get("outcome"), prev.get("event_hash")) != (r.get("outcome"), r.get("event_hash")):
                    conflicts.append((seed, prev.get("_from"), path))
                continue
            r["_from"] = path
            by_seed[seed] = r
    recs = [by_seed[s] for s in sorted(by_seed)]
    missing = []
    if args.count:
        missing = [s for s in range(args.start, args.start + args.count) if s not in by_seed]
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for r in recs:
                r = {k: v for k, v in r.items() if k != "_from"}
                f.write(json.dumps(r) + "\n")
    print(f"Merged {len(args.shards)} shard file(s): {len(recs)} distinct seeds")
    if args.count:
        print(f"Range {args.start} .. {args.start + args.count - 1}: {len(missing)} missing"
              + (f" (first: {missing[:10]})" if missing else ""))
    for seed, a, b in conflicts[:20]:
        print(f"CONFLICT: seed {seed} differs between {a} and {b} (outcome or event hash)")
    if conflicts:
        print(f"{len(conflicts)} seed(s) recorded differently: different binaries or a "
              "determinism bug (rerun them with --check-determinism)")
    print()
    print_summary(recs, args)
    if conflicts or missing:
        sys.exit(2)
    if any(r.get("outcome") != "pass" for r in recs):
        sys.exit(1)


def print_summary(recs, args):
    seeds = Counter(r["seed"] for r in recs)
    dups = sorted(s for s, n in seeds.items() if n > 1)
    passed = sum(1 for r in recs if r.get("outcome") == "pass")
    failed = [r for r in recs if r.get("outcome") != "pass"]
    total = len(recs)
    rate = 100.0 * passed / total if total else 100.0
    sigs = OrderedDict()
    for r in sorted(failed, key=lambda r: r["seed"]):
        sigs.setdefault(signature(r), []).append(r)
    faults = Counter()
    for r in recs:
        for k, v in (r.get("fault_counters") or {}).items():
            faults[k] += int(v)
    sim_ms = sum(int(r.get("sim_time_ms") or 0) for r in recs)
    wall_ms = sum(int(r.get("wall_time_ms") or 0) for r in recs)
    ops = sum(int(r.get("committed_ops") or 0) for r in recs)

    lines = []
    lines.append("VOPR sweep summary")
    lines.append("==================")
    if seeds:
        lines.append(f"Seed range:        {min(seeds)} .. {max(seeds)}")
    lines.append(f"Seeds run:         {total} ({len(seeds)} distinct)")
    if dups:
        lines.append(f"WARNING: seeds recorded more than once: {dups[:20]}")
    if getattr(args, "elapsed_s", 0):
        lines.append(f"Elapsed (wall):    {args.elapsed_s:.1f} s")
        lines.append(f"Throughput:        {total / args.elapsed_s:.2f} seeds/s" if args.elapsed_s > 0
                     else "Throughput:        n/a")
    lines.append(f"Sum of seed wall:  {wall_ms / 1000:.1f} s; simulated: {sim_ms / 1000:.1f} s"
                 + (f" ({sim_ms / wall_ms:.0f}x real time)" if wall_ms else ""))
    lines.append(f"Committed ops:     {ops}")
    lines.append("")
    lines.append(f"Unique failure signatures: {len(sigs)}")
    for (checker, kind, first), rs in sigs.items():
        lines.append(f"  [{len(rs)}x] checker={checker} kind={kind} first_bad_event={first}")
        lines.append(f"        seeds: {' '.join(str(r['seed']) for r in rs[:10])}"
                     + (" ..." if len(rs) > 10 else ""))
        lines.append(f"        repro: {repro(rs[0]['seed'], args.extra_args)}")
    lines.append("")
    lines.append("Fault counters (summed over seeds):")
    for k in sorted(faults):
        lines.append(f"  {k:<28} {faults[k]}")
    if not faults:
        lines.append("  (none)")
    lines.append("")
    lines.append("Results:")
    lines.append(f"Successes: {passed}")
    lines.append(f"Failures: {len(failed)}")
    lines.append(f"Success Rate: {rate:.2f}%")
    for r in sorted(failed, key=lambda r: r["seed"])[:50]:
        lines.append(f"  {repro(r['seed'], args.extra_args)}   # {r.get('failure_kind')}")
    if len(failed) > 50:
        lines.append(f"  ... and {len(failed) - 50} more (see failures.log)")
    print("\n".join(lines))


def cmd_failures(args):
    for r in read_records(args.batch):
        if r.get("outcome") == "pass":
            continue
        checker, kind, first = signature(r)
        msg = (r.get("failure_message") or "").replace("\n", " ")
        print(f"seed {r['seed']} kind={kind} checker={checker} first_bad_event={first} "
              f"| {msg} | repro: {repro(r['seed'], args.extra_args)}")


def cmd_check(args):
    shard = parse_shard(args.shard)
    recs = read_records(args.batch)
    seen = Counter(r["seed"] for r in recs)
    bad = [s for s in seen if not in_range(s, args.start, args.count, shard) or seen[s] > 1]
    for seed in range(args.start, args.start + args.count):
        if in_range(seed, args.start, args.count, shard) and seed not in seen:
            print(seed)
    if bad:
        print(f"error: out-of-range or duplicate seeds in {args.batch}: {sorted(bad)[:20]}",
              file=sys.stderr)
        sys.exit(2)


def cmd_crash_record(args):
    print(json.dumps({
        "seed": args.seed, "params": None, "outcome": "fail",
        "failure_kind": "harness_crash", "checker": "vopr",
        "failure_message": f"vopr exited with status {args.rc} before reporting this seed",
        "first_bad_event": f"exit status {args.rc}",
        "sim_time_ms": 0, "wall_time_ms": 0, "event_hash": None, "committed_ops": 0,
        "fault_counters": {},
    }))


def cmd_seeds(args):
    for s in sorted(r["seed"] for r in read_records(args.records)):
        print(s)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary")
    s.add_argument("records")
    s.add_argument("--elapsed-s", type=float, default=0.0)
    s.add_argument("--extra-args", default="")
    s.set_defaults(func=cmd_summary)
    s = sub.add_parser("failures")
    s.add_argument("batch")
    s.add_argument("--extra-args", default="")
    s.set_defaults(func=cmd_failures)
    s = sub.add_parser("check")
    s.add_argument("batch")
    s.add_argument("--start", type=int, required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--shard", default="")
    s.set_defaults(func=cmd_check)
    s = sub.add_parser("crash-record")
    s.add_argument("seed", type=int)
    s.add_argument("rc", type=int)
    s.set_defaults(func=cmd_crash_record)
    s = sub.add_parser("merge")
    s.add_argument("shards", nargs="+")
    s.add_argument("--start", type=int, default=0)
    s.add_argument("--count", type=int, default=0)
    s.add_argument("--out", default="")
    s.add_argument("--extra-args", default="")
    s.set_defaults(func=cmd_merge)
    s = sub.add_parser("seeds")
    s.add_argument("records")
    s.set_defaults(func=cmd_seeds)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
