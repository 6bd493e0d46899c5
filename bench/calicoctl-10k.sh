#!/usr/bin/env bash
# Figures for issue 2: `calicoctl apply` of 10,000 NetworkPolicies from one file, then
# `calicoctl get networkpolicy -o yaml` of all of them, on the embedded datastore.
# Prints wall time and peak RSS per run (GNU time), best and median of RUNS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
RUNS=${RUNS:-5}
cargo build --locked --release -q -p calicoctl
bin=${CARGO_TARGET_DIR:-target}/release/calicoctl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Each policy: a selector, two ingress rules (selector + ports, nets) and one egress rule.
awk -v n="$N" 'BEGIN {
  for (i = 0; i < n; i++) {
    printf "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: policy-%05d\n  namespace: default\n", i
    printf "spec:\n  order: %d\n  selector: app == \"app-%d\" && tier == \"backend\"\n", i % 1000, i
    printf "  ingress:\n  - action: Allow\n    protocol: TCP\n    source:\n      selector: role == \"frontend-%d\"\n    destination:\n      ports: [80, \"8000:8080\"]\n", i
    printf "  - action: Deny\n    source:\n      nets: [\"10.%d.%d.0/24\"]\n", (i / 256) % 256, i % 256
    printf "  egress:\n  - action: Allow\n    protocol: UDP\n    destination:\n      ports: [53]\n---\n"
  }
}' > "$work/policies.yaml"
echo "input: $N NetworkPolicies, $(du -h "$work/policies.yaml" | cut -f1) of YAML; $RUNS runs each"

measure() { # label, command...
  local label=$1; shift
  local results=()
  for _ in $(seq "$RUNS"); do
    rm -f "$work"/calico.db*
    if [ "$label" = get ]; then CALICO_DATASTORE_PATH="$work/calico.db" $bin apply -f "$work/policies.yaml" >/dev/null; fi
    CALICO_DATASTORE_PATH="$work/calico.db" /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out"
    results+=("$(cat "$work/time")")
  done
  printf '%s\n' "${results[@]}" | sort -n | awk -v label="$label" -v runs="$RUNS" '
    { t[NR] = $1; m[NR] = $2 }
    END { printf "%-34s best %.2f s   median %.2f s   peak RSS (median) %.1f MiB\n", label, t[1], t[int((runs + 1) / 2)], m[int((runs + 1) / 2)] / 1024 }'
}

measure "apply -f (10k policies, one file)" $bin apply -f "$work/policies.yaml"
grep -q "Successfully applied $N 'NetworkPolicy' resource(s)" "$work/out"
measure get $bin get networkpolicy -o yaml
test "$(grep -c '^  kind: NetworkPolicy$' "$work/out")" = "$N"
echo "(get: 'get networkpolicy -o yaml' of all $N)"
