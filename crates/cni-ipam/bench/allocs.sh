#!/usr/bin/env bash
# Allocations per second through the real calico-ipam binary, on the embedded store and on a
# real etcd side by side: 1 process, then 8 concurrent processes, each looping N ADDs (one
# plugin process per ADD, as a container runtime runs it), each on a fresh store; plus peak
# RSS of one ADD process on each store.
# Needs etcd (Debian's etcd-server) for the etcd rows; without it they are skipped, saying so.
# Usage: crates/cni-ipam/bench/allocs.sh [N per process, default 200]
set -euo pipefail
N=${1:-200}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build -q --release -p calico-ipam-plugin -p calicoctl --manifest-path "$ROOT/Cargo.toml"
BIN=$CARGO_TARGET_DIR/release/calico-ipam
CTL=$CARGO_TARGET_DIR/release/calicoctl
ETCD=${CALICO_TEST_ETCD:-$(command -v etcd || true)}
# Only the settings this script gives may select the store.
unset DATASTORE_TYPE CALICO_DATASTORE_TYPE ETCD_ENDPOINTS CALICO_ETCD_ENDPOINTS CALICO_DATASTORE_PATH

WORK=$(mktemp -d)
ETCD_PID=
stop_etcd() {
  if [ -n "$ETCD_PID" ]; then
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    ETCD_PID=
  fi
}
trap 'stop_etcd; rm -rf "$WORK"' EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Sets STORE_JSON (the plugin's network configuration fields) and exports calicoctl's
# variables for a fresh store of kind $1.
fresh_store() {
  local kind=$1 dir
  dir=$(mktemp -d -p "$WORK")
  stop_etcd
  case $kind in
    embedded)
      export DATASTORE_TYPE=embedded CALICO_DATASTORE_PATH=$dir/calico.db
      unset ETCD_ENDPOINTS
      STORE_JSON="\"datastore_type\":\"embedded\",\"datastore_path\":\"$dir/calico.db\""
      ;;
    etcd)
      local client peer
      client=$(free_port)
      peer=$(free_port)
      "$ETCD" --data-dir "$dir/etcd" --log-outputs "$dir/etcd.log" --logger zap \
        --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "default=http://127.0.0.1:$peer" >/dev/null 2>&1 &
      ETCD_PID=$!
      for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$client/health" 2>/dev/null | grep -q '"health":"true"' && break
        sleep 0.1
      done
      curl -fs "http://127.0.0.1:$client/health" | grep -q '"health":"true"' \
        || { echo "etcd did not start; log: $dir/etcd.log" >&2; exit 1; }
      export DATASTORE_TYPE=etcdv3 ETCD_ENDPOINTS=http://127.0.0.1:$client
      unset CALICO_DATASTORE_PATH
      STORE_JSON="\"datastore_type\":\"etcdv3\",\"etcd_endpoints\":\"http://127.0.0.1:$client\""
      ;;
  esac
  printf 'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: bench}\nspec: {cidr: 10.0.0.0/12, blockSize: 26}\n' \
    | "$CTL" apply -f - >/dev/null
}

conf() {
  echo "{\"cniVersion\":\"1.0.0\",\"name\":\"bench\",\"type\":\"calico\",\"nodename\":\"bench-node\",$STORE_JSON,\"ipam\":{\"type\":\"calico-ipam\"}}"
}

run() { # store procs
  local store=$1 procs=$2 start end conf used total
  fresh_store "$store"
  conf=$(conf)
  start=$(date +%s.%N)
  for p in $(seq 1 "$procs"); do
    (for i in $(seq 1 "$N"); do
       echo "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID="p$p-$i" CNI_IFNAME=eth0 "$BIN" >/dev/null
     done) &
  done
  wait $(jobs -p | grep -vx "${ETCD_PID:-none}")
  end=$(date +%s.%N)
  total=$((procs * N))
  used=$("$CTL" ipam show | awk -F'|' '/IP Pool/ {print $5}' | awk '{print $1}')
  [ "$used" = "$total" ] || { echo "ipam show says $used in use, expected $total" >&2; exit 1; }
  printf '%-8s  %d process(es) x %d ADDs: %4d allocations in %6.2f s = %5.0f allocations/s (ipam show: %s in use)\n' \
    "$store" "$procs" "$N" "$total" "$(echo "$end - $start" | bc)" "$(echo "$total / ($end - $start)" | bc -l)" "$used"
}

rss() { # store
  fresh_store "$1"
  local kib
  kib=$(conf | CNI_COMMAND=ADD CNI_CONTAINERID=rss CNI_IFNAME=eth0 /usr/bin/time -f %M "$BIN" 2>&1 >/dev/null | tail -1)
  printf '%-8s  peak RSS of one ADD process: %s KiB\n' "$1" "$kib"
}

STORES=(embedded)
if [ -n "$ETCD" ] && [ -x "$ETCD" ]; then
  STORES+=(etcd)
else
  echo "SKIP etcd rows: etcd not found (install Debian's etcd-server or set CALICO_TEST_ETCD)"
fi
echo "load: $(uptime)"
for procs in 1 8; do
  for store in "${STORES[@]}"; do
    run "$store" "$procs"
  done
done
for store in "${STORES[@]}"; do
  rss "$store"
done
