#!/usr/bin/env bash
# Offline checks of deploy/k8s/vopr-sweep-job.yaml (the Indexed Job that spreads a VOPR sweep
# over a Kubernetes cluster): strict validation against the Kubernetes schema with
# kubernetes-validate (PyPI; installed here when missing), a broken copy that must be refused
# (so the validator is not a no-op), and the manifest's own consistency (completions equal to
# VOPR_SHARDS, each pod running shard $JOB_COMPLETION_INDEX/$VOPR_SHARDS).
#
# Usage: scripts/tests/test-k8s-manifest.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
manifest="$repo/deploy/k8s/vopr-sweep-job.yaml"
fails=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }

# Run as a module: a freshly pip-installed console script may not be on PATH yet (pyenv shims).
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  python3 -m pip install -q kubernetes-validate 2>/dev/null ||
    python3 -m pip install -q --break-system-packages kubernetes-validate
fi
validate() { python3 -m kubernetes_validate "$@"; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

validate --strict --quiet "$manifest" >"$work/ok.txt" 2>&1 &&
  pass "vopr-sweep-job.yaml is a valid batch/v1 Job (strict)" ||
  fail "vopr-sweep-job.yaml refused: $(cat "$work/ok.txt")"

sed -e 's/completionMode: Indexed/completionMode: Sideways/' \
    -e 's/^  parallelism: 16$/  parallelism: "sixteen"\n  shardz: 3/' "$manifest" >"$work/broken.yaml"
if validate --strict --quiet "$work/broken.yaml" >"$work/bad.txt" 2>&1; then
  fail "a broken copy (bad enum, bad type, unknown field) passed validation"
else
  pass "a broken copy is refused by the validator"
fi

python3 - "$manifest" <<'PY' && pass "completions == VOPR_SHARDS and each pod runs shard \$JOB_COMPLETION_INDEX/\$VOPR_SHARDS" || fail "manifest inconsistent"
import sys, yaml
job = yaml.safe_load(open(sys.argv[1]))
spec = job["spec"]
c = spec["template"]["spec"]["containers"][0]
env = {e["name"]: e["value"] for e in c["env"]}
args = " ".join(c["args"])
assert spec["completionMode"] == "Indexed"
assert spec["completions"] == int(env["VOPR_SHARDS"]), (spec["completions"], env["VOPR_SHARDS"])
assert spec["parallelism"] <= spec["completions"]
assert '--shard "$JOB_COMPLETION_INDEX/$VOPR_SHARDS"' in args, args
assert "shard-$JOB_COMPLETION_INDEX.ndjson" in args, args
PY

if [ "$fails" -gt 0 ]; then
  echo "$fails k8s-manifest test(s) failed"
  exit 1
fi
echo "all k8s-manifest tests passed"
