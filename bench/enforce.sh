#!/usr/bin/env bash
# Datastore write -> enforced for real traffic (issue 12): on a 2-host lab (release binaries,
# network namespaces), a probe sends a UDP datagram every millisecond from a client on one
# host to a server on the other. SAMPLES times: a Deny policy for that traffic is written
# with calicoctl (the clock starts before calicoctl starts) and the enforcement time is when
# the last datagram that still got through was sent; then the Deny is deleted and the time
# until datagrams arrive again is measured the same way. With POLICIES other policies in force
# (RULES ingress rules each, default 1) selecting the server and LOCAL_ENDPOINTS - 1 more tasks
# beside it (default 1 endpoint): issue 12's load is POLICIES=250 RULES=20 LOCAL_ENDPOINTS=10.
# Usage: bench/enforce.sh [--etcd]. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${SAMPLES:-20}
POLICIES=${POLICIES:-0}
RULES=${RULES:-1}
LOCAL_ENDPOINTS=${LOCAL_ENDPOINTS:-1}
etcd=()
[ "${1:-}" = "--etcd" ] && etcd=(--etcd)
BENCH_PREFIX=enf
. bench/common.sh
if [ ${#etcd[@]} -gt 0 ]; then
  export DATASTORE_TYPE=etcdv3 ETCD_ENDPOINTS=http://172.30.0.254:2379
  ctl() { ip netns exec enf-ul "$bin/calicoctl" "$@"; }
else
  ctl() { "$bin/calicoctl" "$@"; }
fi
bench_lab_up "${etcd[@]}"
if [ "$LOCAL_ENDPOINTS" -gt 1 ]; then
  printf '{"id":"/pad","instances":%d,"networks":[{"mode":"container","name":"calico","labels":{"app":"srv"}}]}' \
    "$((LOCAL_ENDPOINTS - 1))" > "$work/pad.json"
  lab app "$work/pad.json" --host h1 >/dev/null
fi
if [ "$POLICIES" -gt 0 ]; then
  # TCP rules (the UDP probe matches none of them): ports, source nets or selectors.
  awk -v n="$POLICIES" -v r="$RULES" 'BEGIN { for (i = 0; i < n; i++) {
    printf "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: other-%04d\n", i
    printf "spec:\n  order: %d\n  selector: app == \"srv\"\n  types: [Ingress]\n  ingress:\n", 100 + i
    for (k = 0; k < r; k++) {
      printf "  - action: %s\n    protocol: TCP\n", (k % 2 == 0) ? "Allow" : "Deny"
      if (k % 3 == 0) printf "    source:\n      nets: [10.%d.%d.0/24]\n", i % 250, k
      if (k % 3 == 1) printf "    source:\n      selector: svc == \"s%d\"\n", (i + k) % 50
      printf "    destination:\n      ports: [%d]\n", 1000 + (i * r + k) % 60000
    }
    printf "---\n"
  }
  # The probe itself is allowed last, after every other policy was looked at.
  printf "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: other-allow-probe\n"
  printf "spec:\n  order: 5000\n  selector: app == \"srv\"\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    protocol: UDP\n    destination:\n      ports: [9000]\n"
  }' > "$work/others.yaml"
  # In files of 100: one etcd transaction takes at most 128 keys (--max-txn-ops), and
  # calicoctl refuses to split a file into non-atomic pieces.
  awk -v dir="$work" '/^apiVersion/ { if (n++ % 100 == 0) f = sprintf("%s/others-%04d.yaml", dir, n) } { print > f }' "$work/others.yaml"
  for f in "$work"/others-*.yaml; do ctl apply -f "$f" >/dev/null; done
  sleep $((3 + POLICIES / 1000 * 3))
fi
duration=$((SAMPLES * 2 + 10))
ip netns exec "$srv_ns" python3 bench/probe.py recv 9000 "$work/arrivals" "$duration" &
sleep 0.5
ip netns exec "$cli_ns" python3 bench/probe.py send "$srv_ip" 9000 "$duration" &
sleep 1
printf 'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: probe-deny\nspec:\n  order: 1\n  selector: app == "srv"\n  types: [Ingress]\n  ingress:\n  - action: Deny\n    protocol: UDP\n    destination:\n      ports: [9000]\n' > "$work/deny.yaml"
: > "$work/marks"
for _ in $(seq "$SAMPLES"); do
  echo "deny $(date +%s%N)" >> "$work/marks"
  ctl apply -f "$work/deny.yaml" >/dev/null
  sleep 0.8
  echo "allow $(date +%s%N)" >> "$work/marks"
  ctl delete globalnetworkpolicy probe-deny >/dev/null
  sleep 0.8
done
sleep 0.5
python3 - "$work/marks" "$work/arrivals" "$POLICIES other policies x $RULES rules, $LOCAL_ENDPOINTS local endpoints, $(ip netns exec "$(lab status | awk '/^host h1 / {print $4}')" nft list table inet calico | grep -c '^		') nft rules" "${etcd[@]:-embedded}" <<'PY'
import sys
marks = [l.split() for l in open(sys.argv[1])]
sent = sorted(int(l.split()[0]) for l in open(sys.argv[2]) if l.strip())
def stats(xs):
    xs = sorted(xs)
    p = lambda q: xs[min(len(xs) - 1, int(q * len(xs) + 0.999) - 1)]
    return f"median {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {xs[-1]:.1f} ms ({len(xs)} changes)"
import bisect
deny, allow = [], []
for i, (kind, t) in enumerate(marks):
    t = int(t)
    end = int(marks[i + 1][1]) if i + 1 < len(marks) else t + 800_000_000
    window = sent[bisect.bisect_left(sent, t):bisect.bisect_left(sent, end)]
    if kind == "deny":
        # The last datagram that got through after the write was sent when the Deny took hold.
        deny.append(((window[-1] - t) if window else 0) / 1e6)
    else:
        # The first datagram through after the delete.
        allow.append(((window[0] - t) if window else float("inf")) / 1e6)
store = sys.argv[4] if len(sys.argv) > 4 else "embedded"
store = "etcd" if store == "--etcd" else "embedded"
print(f"{store}, {sys.argv[3]}: write -> Deny enforced for real traffic: {stats(deny)}")
print(f"{store}, {sys.argv[3]}: delete -> traffic flows again: {stats(allow)}")
PY
