#!/usr/bin/env bash
# What the per-packet anti-spoofing check costs: iperf3 across hosts (VXLAN) on a 2-host lab
# with felix's raw prerouting chain in place and with it emptied by hand, in alternating
# rounds (calico-node is stopped first so the table stays as edited). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_RUN:-5}
scripts/setup-debian.sh >/dev/null
cargo build --locked --release -q -p calico-lab -p calico-node -p calico-cni -p calico-ipam-plugin -p calicoctl
bin=${CARGO_TARGET_DIR:-target}/release
lab() { "$bin/calico-lab" --prefix spoof "$@"; }
work=$(mktemp -d)
trap 'lab down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export CALICO_DATASTORE_PATH=/run/calico-lab-spoof/calico.db
unset DATASTORE_TYPE

echo "machine: $(nproc) vCPU $(lscpu | sed -n 's/^Model name: *//p'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
lab down >/dev/null 2>&1 || true
lab up --hosts 2 >/dev/null
printf '{"id":"/srv","instances":1,"networks":[{"mode":"container","name":"calico","labels":{"app":"srv"}}]}' > "$work/srv.json"
printf '{"id":"/cli","instances":1,"networks":[{"mode":"container","name":"calico","labels":{"app":"cli"}}]}' > "$work/cli.json"
lab app "$work/srv.json" --host h1 >/dev/null
lab app "$work/cli.json" --host h2 >/dev/null
srv_ip=$(lab status | awk '/task srv/ {print $6}')
lab exec srv -- iperf3 -s -D >/dev/null
sleep 0.5
for h in h1 h2; do
  for p in $(ip netns pids "spoof-$h"); do
    [ "$(basename "$(readlink "/proc/$p/exe")")" = calico-node ] && kill "$p"
  done
  ip netns exec "spoof-$h" nft list chain inet calico prerouting > "$work/pre-$h.nft"
done
sleep 0.5
gbps() { lab exec cli -- iperf3 -c "$srv_ip" -t "$SECS" -f g | awk '/receiver/ {print $(NF-2)}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
with=(); without=()
for _ in $(seq "$ROUNDS"); do
  with+=("$(gbps)")
  for h in h1 h2; do ip netns exec "spoof-$h" nft flush chain inet calico prerouting; done
  without+=("$(gbps)")
  for h in h1 h2; do ip netns exec "spoof-$h" nft -f "$work/pre-$h.nft"; done
done
printf '%-34s %s Gbit/s (runs: %s)\n' "anti-spoofing chain in place" "$(median "${with[@]}")" "${with[*]}"
printf '%-34s %s Gbit/s (runs: %s)\n' "anti-spoofing chain emptied" "$(median "${without[@]}")" "${without[*]}"
