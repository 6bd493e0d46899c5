#!/usr/bin/env bash
# Allocations per second through the real calico-ipam binary on a fresh embedded store:
# 1 process, then 8 concurrent processes, each looping N ADDs (one process per ADD, as a
# container runtime runs the plugin); plus peak RSS of one ADD process.
# Usage: crates/cni-ipam/bench/allocs.sh [N per process, default 200]
set -euo pipefail
N=${1:-200}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build -q --release -p calico-ipam-plugin -p calicoctl --manifest-path "$ROOT/Cargo.toml"
BIN=$CARGO_TARGET_DIR/release/calico-ipam
CTL=$CARGO_TARGET_DIR/release/calicoctl

run() { # procs
  local procs=$1 dir start end
  dir=$(mktemp -d)
  export CALICO_DATASTORE_PATH=$dir/calico.db
  printf 'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: bench}\nspec: {cidr: 10.0.0.0/12, blockSize: 26}\n' \
    | "$CTL" apply -f - >/dev/null
  local conf='{"cniVersion":"1.0.0","name":"bench","type":"calico","nodename":"bench-node","ipam":{"type":"calico-ipam"}}'
  start=$(date +%s.%N)
  for p in $(seq 1 "$procs"); do
    (for i in $(seq 1 "$N"); do
       echo "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID="p$p-$i" CNI_IFNAME=eth0 "$BIN" >/dev/null
     done) &
  done
  wait
  end=$(date +%s.%N)
  local total=$((procs * N))
  local used
  used=$("$CTL" ipam show | awk -F'|' '/IP Pool/ {print $5}' | awk '{print $1}')
  printf '%d process(es) x %d ADDs: %d allocations in %.2f s = %.0f allocations/s (ipam show: %s in use)\n' \
    "$procs" "$N" "$total" "$(echo "$end - $start" | bc)" "$(echo "$total / ($end - $start)" | bc -l)" "$used"
  rss=$(echo "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID=rss CNI_IFNAME=eth0 /usr/bin/time -f %M "$BIN" 2>&1 >/dev/null | tail -1)
  echo "peak RSS of one ADD process: ${rss} KiB"
  rm -rf "$dir"
}

run 1
run 8
