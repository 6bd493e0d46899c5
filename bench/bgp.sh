#!/usr/bin/env bash
# BGP convergence (issue 15): calico-lab in BGP mode (no encapsulation; BIRD 1.6 on every host
# with the configuration the confd inside calico-node writes), release binaries, on the
# embedded store. For each host count (default 3 and 10):
# - a new block: a first task on each host in turn claims the host's first block. The clock
#   starts before `calico-lab app` (so the task's start, CNI ADD and IPAM's block claim are
#   included) and stops when every other host has BIRD's route to the task's address.
# - a host drained: the last host's BGP sessions are closed (`birdc disable all`: a Cease to
#   each peer); the clock stops when no other host has a route to that host's task any more.
# - a host crashed: BIRD of the host before it is killed (SIGKILL, no Cease); the clock stops
#   when h1 no longer routes to that host's task (with graceful restart the peers may keep
#   stale routes up to the restart time, 120 s; the wait allows 300 s).
# Usage: bench/bgp.sh [HOSTS...]. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_PREFIX=bgpb
. bench/common.sh
now_ms() { date +%s%3N; }
has_route() { ip -n "$BENCH_PREFIX-$1" route show match "$2" | grep -q 'proto bird'; }
# Waits (at most 60 s) until `$@` succeeds.
until_ok() {
  local deadline=$(( $(now_ms) + ${UNTIL_MS:-60000} ))
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
    ip=$(lab app "$work/b$i.json" --host "h$i" | tail -1 | awk '{print $NF}')
    ips[$i]=$ip
    for j in $(seq 1 "$n"); do
      [ "$j" = "$i" ] || until_ok has_route "h$j" "$ip"
    done
    new+=($(( $(now_ms) - t0 )))
  done
  bird_pid() {
    for p in $(ip netns pids "$BENCH_PREFIX-$1"); do
      if [ "$(readlink "/proc/$p/exe")" = /usr/sbin/bird ]; then echo "$p"; fi
    done
  }
  gone_from() { ! ip -n "$BENCH_PREFIX-$1" route show match "$2" | grep -q 'proto bird'; }
  # Drained: the last host's BGP sessions closed (`disable all`), then BIRD stopped.
  t0=$(now_ms)
  birdc -s "/run/calico-lab-$BENCH_PREFIX/bird-h$n/bird.ctl" "disable all" >/dev/null
  for j in $(seq 1 $((n - 1))); do until_ok gone_from "h$j" "${ips[$n]}"; done
  gone=$(( $(now_ms) - t0 ))
  kill "$(bird_pid "h$n")"
  # Crashed: BIRD of the host before it killed (SIGKILL, no Cease).
  c=$((n - 1))
  t0=$(now_ms)
  kill -9 "$(bird_pid "h$c")"
  UNTIL_MS=300000 until_ok gone_from h1 "${ips[$c]}"
  crashed=$(( $(now_ms) - t0 ))
  echo "$n hosts: new block -> BIRD's route on every other host: median $(median "${new[@]}") ms, max $(max "${new[@]}") ms ($n blocks, task start included)"
  echo "$n hosts: a host drained (BGP sessions closed) -> its routes gone from every other host: $gone ms"
  echo "$n hosts: a host's BIRD killed (SIGKILL, no Cease) -> its routes gone from h1: $crashed ms"
done
