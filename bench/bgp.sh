#!/usr/bin/env bash
# BGP convergence (issue 15): calico-lab in BGP mode (no encapsulation; BIRD 1.6 on every host
# with the configuration the confd inside calico-node writes), release binaries, on the
# embedded store. For each host count (default 3 and 10):
# - a new block: a first task on each host in turn claims the host's first block. The clock
#   starts before `calico-lab app` (so the task's start, CNI ADD and IPAM's block claim are
#   included) and stops when every other host has BIRD's route to the task's address.
# - a host stopped: BIRD on the last host is stopped (SIGTERM: it closes its sessions); the
#   clock stops when no other host has a route to that host's task any more.
# Usage: bench/bgp.sh [HOSTS...]. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_PREFIX=bgpb
. bench/common.sh
now_ms() { date +%s%3N; }
has_route() { ip -n "$BENCH_PREFIX-$1" route show match "$2" | grep -q 'proto bird'; }
# Waits (at most 60 s) until `$@` succeeds.
until_ok() {
  local deadline=$(( $(now_ms) + 60000 ))
  until "$@"; do
    [ "$(now_ms)" -lt "$deadline" ] || { echo "timed out: $*" >&2; exit 1; }
    sleep 0.002
  done
}
max() { printf '%s\n' "$@" | sort -n | tail -1; }
echo "machine: $(nproc) vCPU $(lscpu | sed -n 's/^Model name: *//p'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in ${@:-3 10}; do
  lab down >/dev/null 2>&1 || true
  lab up --hosts "$n" --bgp >/dev/null
  new=()
  ips=()
  for i in $(seq 1 "$n"); do
    printf '{"id":"/b%d","instances":1,"networks":[{"mode":"container","name":"calico"}]}' "$i" > "$work/b$i.json"
    t0=$(now_ms)
    ip=$(lab app "$work/b$i.json" --host "h$i" | awk '{print $5}')
    ips[$i]=$ip
    for j in $(seq 1 "$n"); do
      [ "$j" = "$i" ] || until_ok has_route "h$j" "$ip"
    done
    new+=($(( $(now_ms) - t0 )))
  done
  pid=$(for p in $(ip netns pids "$BENCH_PREFIX-h$n"); do
    [ "$(readlink "/proc/$p/exe")" = /usr/sbin/bird ] && echo "$p"; done)
  t0=$(now_ms)
  kill "$pid"
  for j in $(seq 1 $((n - 1))); do
    until_ok bash -c "! ip -n $BENCH_PREFIX-h$j route show match ${ips[$n]} | grep -q 'proto bird'"
  done
  gone=$(( $(now_ms) - t0 ))
  echo "$n hosts: new block -> BIRD's route on every other host: median $(median "${new[@]}") ms, max $(max "${new[@]}") ms ($n blocks, task start included)"
  echo "$n hosts: a host's BIRD stopped -> its routes gone from every other host: $gone ms"
done
