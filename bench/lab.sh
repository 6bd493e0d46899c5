#!/usr/bin/env bash
# Figures for issue 7, on a 2-host lab (network namespaces, the embedded datastore, release
# binaries), all in one run:
#  1. iperf3 throughput across hosts (VXLAN) with no policy vs POLICIES (default 1,000)
#     policies selecting the server (the client's allow comes last, after the others), in
#     alternating rounds;
#  2. time from `calicoctl apply` (process start) to the change being in the kernel of the
#     server's host, with 1,000 endpoints in the datastore (median and p99 of SAMPLES changes);
#  3. kernel programming time of a ~10,000-rule table (dataplane example, real nft).
# Needs root. Set SECONDS_PER_RUN, RUNS, SAMPLES to change the effort.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECONDS_PER_RUN:-5}
SAMPLES=${SAMPLES:-50}
POLICIES=${POLICIES:-1000}
BENCH_PREFIX=bench
. bench/common.sh
cargo build --locked --release -q -p calico-dataplane --example program_rules
bench_lab_up
lab exec srv -- iperf3 -s -D >/dev/null
sleep 0.5

gbps() { lab exec cli -- iperf3 -c "$srv_ip" -t "$SECS" -f g | awk '/receiver/ {print $(NF-2)}'; }

awk -v n="$POLICIES" 'BEGIN {
  for (i = 0; i < n - 1; i++) {
    printf "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: bench-%04d\n", i
    printf "spec:\n  order: %d\n  selector: app == \"srv\"\n  types: [Ingress]\n  ingress:\n", i
    printf "  - action: Allow\n    protocol: TCP\n    source:\n      selector: svc == \"s%d\"\n    destination:\n      ports: [%d]\n---\n", i, 1000 + i
  }
  printf "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: bench-allow-cli\n"
  printf "spec:\n  order: 5000\n  selector: app == \"srv\"\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    source:\n      selector: app == \"cli\"\n"
}' > "$work/policies.yaml"
h1_rules() { ip netns exec bench-h1 nft list table inet calico | grep -c 'jump pi-' || true; }

# Rounds alternate between no policy and 1,000 policies, so a drift of the machine's speed
# (other tenants of the VM host) hits both sides alike.
echo "== iperf3 across hosts (TCP, ${SECS}s, $RUNS alternating rounds, median) =="
none=(); many=()
for _ in $(seq "$RUNS"); do
  none+=("$(gbps)")
  "$bin/calicoctl" apply -f "$work/policies.yaml" >/dev/null
  for _ in $(seq 1200); do [ "$(h1_rules)" -ge "$POLICIES" ] && break; sleep 0.1; done
  jumps=$(h1_rules)
  many+=("$(gbps)")
  "$bin/calicoctl" delete -f "$work/policies.yaml" >/dev/null
  for _ in $(seq 1200); do [ "$(h1_rules)" -eq 0 ] && break; sleep 0.1; done
done
printf '%-34s %s Gbit/s (runs: %s)\n' "no policy" "$(median "${none[@]}")" "${none[*]}"
printf '%-34s %s Gbit/s (runs: %s)\n' "$POLICIES policies in force" "$(median "${many[@]}")" "${many[*]}"
echo "(server host: $jumps policy jumps in its chains; ratio $(awk -v a="$(median "${many[@]}")" -v b="$(median "${none[@]}")" 'BEGIN {printf "%.2f", a / b}'))"
"$bin/calicoctl" apply -f "$work/policies.yaml" >/dev/null
lab exec srv -- sh -c 'kill $(pidof iperf3)' >/dev/null 2>&1 || true

echo "== calicoctl apply -> in the kernel, 1,000 endpoints in the datastore =="
awk 'BEGIN {
  for (i = 0; i < 1000; i++) {
    printf "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: far-mesos-w%d-eth0\n  namespace: default\n  labels: {svc: s%d}\n", i, i % 999
    printf "spec:\n  node: far\n  orchestrator: mesos\n  workload: w%d\n  endpoint: eth0\n  interfaceName: calif%d\n  ipNetworks: [\"10.250.%d.%d/32\"]\n---\n", i, i, int(i / 250), i % 250 + 1
  }
}' > "$work/endpoints.yaml"
"$bin/calicoctl" apply -f "$work/endpoints.yaml" >/dev/null
sleep 2
times=()
for i in $(seq "$SAMPLES"); do
  port=$((20000 + i))
  printf 'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: bench-toggle\nspec:\n  order: 1\n  selector: app == "srv"\n  types: [Ingress]\n  ingress:\n  - action: Deny\n    protocol: TCP\n    destination:\n      ports: [%d]\n' "$port" > "$work/toggle.yaml"
  t0=$(date +%s%N)
  "$bin/calicoctl" apply -f "$work/toggle.yaml" >/dev/null
  # grep without -q reads all of nft's output: an early exit would SIGPIPE nft and, under
  # pipefail, fail the pipeline forever.
  until ip netns exec bench-h1 nft list chain inet calico pi-default/bench-toggle 2>/dev/null | grep "dport $port " >/dev/null; do :; done
  t1=$(date +%s%N)
  times+=($(( (t1 - t0) / 1000000 )))
done
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$SAMPLES" '{a[NR]=$1} END {
  printf "apply -> kernel over %d changes: median %d ms, p99 %d ms, max %d ms (calicoctl process start included)\n", n, a[int((n+1)/2)], a[int(n*0.99+0.999)], a[n] }'
lab down >/dev/null

echo "== kernel programming time (real nft, fresh netns) =="
"$bin/examples/program_rules" 250
"$bin/examples/program_rules" 500
