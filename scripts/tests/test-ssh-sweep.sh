#!/usr/bin/env bash
# The across-machines sweep recipe of scripts/VOPR-TESTING.md, tested on two "hosts" made on
# this machine: two network namespaces, each running its own sshd, reached over veth links.
# GNU parallel runs one shard of a range on each host over ssh; the shard records are merged
# with `summarize-vopr.py merge`, which must find the range complete and the records equal to
# an unsharded run. Uses scripts/tests/fake-vopr (vopr's flags and record format), so it needs
# no build.
#
# Usage: scripts/tests/test-ssh-sweep.sh     (root; needs ip, sshd, ssh, ssh-keygen, parallel)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
fake="$here/fake-vopr"
summarize="$repo/scripts/summarize-vopr.py"

fails=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }

[ "$(id -u)" = 0 ] || { echo "test-ssh-sweep: needs root (network namespaces)" >&2; exit 2; }
for tool in ip ssh ssh-keygen parallel /usr/sbin/sshd; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "test-ssh-sweep: $tool missing (apt-get install openssh-server openssh-client parallel iproute2)" >&2
    exit 2
  }
done

id="kmbsw$$"
work="$(mktemp -d)"
hosts=(a b)
cleanup() {
  for h in "${hosts[@]}"; do
    if [ -f "$work/sshd-$h.pid" ]; then
      kill "$(cat "$work/sshd-$h.pid")" 2>/dev/null || true
    fi
    ip netns del "$id$h" 2>/dev/null || true
    ip link del "$id$h" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Keys: one host key, one client key authorized for root (in a file of this test only).
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
chmod 600 "$work/authorized_keys"
mkdir -p /run/sshd
: >"$work/ssh_config"
chmod 600 "$work/ssh_config"

net=0
for h in "${hosts[@]}"; do
  net=$((net + 1))
  ns="$id$h"
  ip netns add "$ns"
  ip link add "$ns" type veth peer name eth0 netns "$ns"
  ip addr add "10.211.$net.1/24" dev "$ns"
  ip link set "$ns" up
  ip -n "$ns" addr add "10.211.$net.2/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  cat >"$work/sshd_config-$h" <<EOF
Port 2222
ListenAddress 10.211.$net.2
HostKey $work/host_key
PidFile $work/sshd-$h.pid
AuthorizedKeysFile $work/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
EOF
  ip netns exec "$ns" /usr/sbin/sshd -f "$work/sshd_config-$h" -E "$work/sshd-$h.log"
  cat >>"$work/ssh_config" <<EOF
Host host-$h
  HostName 10.211.$net.2
  Port 2222
  User root
  IdentityFile $work/client_key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
  ConnectTimeout 5
EOF
done
for h in "${hosts[@]}"; do
  for _ in $(seq 50); do
    ssh -F "$work/ssh_config" "host-$h" true 2>/dev/null && break
    sleep 0.1
  done
  ssh -F "$work/ssh_config" "host-$h" true && pass "sshd in namespace $id$h reachable" ||
    fail "sshd in namespace $id$h unreachable: $(cat "$work/sshd-$h.log")"
done

start=5000 count=1200
"$fake" --seed "$start" -n "$count" --jobs 1 --json "$work/ref.ndjson" >/dev/null 2>&1 || true

# --- recipe start (scripts/VOPR-TESTING.md, "Across machines over ssh") ---
VOPR="$fake"            # the same binary on every host (a shared path, or copied there)
out="$work/out"         # a directory every host can write (here: the same filesystem)
mkdir -p "$out"
parallel --will-cite --halt never --ssh "ssh -F $work/ssh_config" \
  -S 1/host-a,1/host-b \
  'echo $SSH_CONNECTION >' "$out/host-{}.txt" ';' \
  "$VOPR" --seed "$start" -n "$count" --shard {}/2 --jobs 1 --json "$out/shard-{}.ndjson" \
  '>' "$out/shard-{}.log" '2>&1' ::: 0 1 || true
python3 "$summarize" merge "$out"/shard-*.ndjson --start "$start" --count "$count" \
  --out "$out/merged.ndjson" >"$out/merge.txt" || [ $? -eq 1 ]   # 1: some seed failed
# --- recipe end ---

servers="$(cat "$out"/host-*.txt 2>/dev/null | awk '{print $3}' | sort -u | tr '\n' ' ')"
[ "$(echo "$servers" | wc -w)" -eq 2 ] && pass "the two shards ran on two ssh hosts ($servers)" ||
  fail "shards did not run on both hosts (servers: '$servers')"
canonical() { python3 -c "
import json,sys
for r in sorted(map(json.loads, open(sys.argv[1])), key=lambda r: r['seed']):
    r.pop('wall_time_ms', None); print(json.dumps(r, sort_keys=True))" "$1"; }
if grep -q "0 missing" "$out/merge.txt" &&
   diff <(canonical "$work/ref.ndjson") <(canonical "$out/merged.ndjson") >/dev/null; then
  pass "merged shards from two hosts: complete, equal to the unsharded run"
else
  fail "merged shards differ or are incomplete: $(head -3 "$out/merge.txt")"
fi

if [ "$fails" -gt 0 ]; then
  echo "$fails ssh-sweep test(s) failed"
  exit 1
fi
echo "all ssh-sweep tests passed"
