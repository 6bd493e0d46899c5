#!/usr/bin/env bash
# What the per-packet anti-spoofing check costs: iperf3 across hosts (VXLAN) on a 2-host lab
# with felix's raw prerouting chain in place and with it emptied by hand, in alternating
# rounds (calico-node is stopped first so the table stays as edited). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_RUN:-5}
BENCH_PREFIX=spoof
. bench/common.sh
bench_lab_up
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
with=(); without=()
for _ in $(seq "$ROUNDS"); do
  with+=("$(gbps)")
  for h in h1 h2; do ip netns exec "spoof-$h" nft flush chain inet calico prerouting; done
  without+=("$(gbps)")
  for h in h1 h2; do ip netns exec "spoof-$h" nft -f "$work/pre-$h.nft"; done
done
printf '%-34s %s Gbit/s (runs: %s)\n' "anti-spoofing chain in place" "$(median "${with[@]}")" "${with[*]}"
printf '%-34s %s Gbit/s (runs: %s)\n' "anti-spoofing chain emptied" "$(median "${without[@]}")" "${without[*]}"
