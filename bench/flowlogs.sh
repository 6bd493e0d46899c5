#!/usr/bin/env bash
# What flow logs cost (issue 18): iperf3 across hosts (VXLAN) on two 2-host labs up at the
# same time, one with flow logs (the default) and one with FELIX_FLOWLOGSENABLED=false, in
# alternating rounds so a drift of the VM's speed hits both alike. Then the same while a
# third task floods the server with denied UDP datagrams, each a new flow (every one is
# logged to nflog where flow logs are on). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_PER_RUN:-5}
BENCH_PREFIX=flowon
. bench/common.sh
off() { "$bin/calico-lab" --prefix flowoff "$@"; }
trap 'lab down >/dev/null 2>&1 || true; off down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bench_lab_up
off down >/dev/null 2>&1 || true
FELIX_FLOWLOGSENABLED=false off up --hosts 2 >/dev/null
off app "$work/srv.json" --host h1 >/dev/null
off app "$work/cli.json" --host h2 >/dev/null
off_ip=$(off status | awk '/task srv/ {print $6}')
printf '{"id":"/flood","instances":1,"networks":[{"mode":"container","name":"calico","labels":{"app":"flood"}}]}' > "$work/flood.json"
policy="$work/deny-udp.yaml"
cat > "$policy" <<YAML
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: srv-tcp-only}
spec:
  selector: app == 'srv'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
  - action: Deny
    protocol: UDP
YAML
for l in lab off; do
  $l app "$work/flood.json" --host h2 >/dev/null
  $l exec srv -- iperf3 -s -D >/dev/null
done
CALICO_DATASTORE_PATH=/run/calico-lab-flowon/calico.db "$bin/calicoctl" apply -f "$policy" >/dev/null
CALICO_DATASTORE_PATH=/run/calico-lab-flowoff/calico.db "$bin/calicoctl" apply -f "$policy" >/dev/null
sleep 1
gbps() { "$@" -t "$SECS" -f g | awk '/receiver/ {print $(NF-2)}'; }
flood() { # LAB IP: 200k denied datagrams, each to another port, in the background
  "$1" exec flood -- python3 crates/lab/tests/packets.py udp-flood "$2" 200000 >/dev/null 2>&1 &
}
on=(); offs=(); on_f=(); off_f=()
for _ in $(seq "$ROUNDS"); do
  on+=("$(gbps lab exec cli -- iperf3 -c "$srv_ip")")
  offs+=("$(gbps off exec cli -- iperf3 -c "$off_ip")")
done
for _ in $(seq "$ROUNDS"); do
  flood lab "$srv_ip"; on_f+=("$(gbps lab exec cli -- iperf3 -c "$srv_ip")"); wait
  flood off "$off_ip"; off_f+=("$(gbps off exec cli -- iperf3 -c "$off_ip")"); wait
done
row() { printf '%-44s %s Gbit/s (runs: %s)\n' "$1" "$(median "${@:2}")" "${*:2}"; }
echo "== iperf3 across hosts (TCP, ${SECS}s, $ROUNDS alternating rounds, median) =="
row "flow logs on" "${on[@]}"
row "flow logs off" "${offs[@]}"
row "flow logs on, denied UDP flood alongside" "${on_f[@]}"
row "flow logs off, denied UDP flood alongside" "${off_f[@]}"
awk -v a="$(median "${on[@]}")" -v b="$(median "${offs[@]}")" -v c="$(median "${on_f[@]}")" -v d="$(median "${off_f[@]}")" \
  'BEGIN { printf "ratio on/off: %.2f; with the flood: %.2f\n", a / b, c / d }'
lost=$(ip netns exec flowon-ul timeout 10 busybox wget -q -O - "http://172.30.0.1:9091/flows?since=900" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lost"])')
echo "server host's flow log after the floods: lost $lost"
