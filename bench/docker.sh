#!/usr/bin/env bash
# Docker on Calico vs Docker's own bridge (issue 14), on one lab host with its own dockerd and
# the Calico Docker plugin (release binaries), in the same run:
# - `docker run` to first packet: the clock starts before `docker run -d`; from the new
#   container's network namespace a TCP connection to a server container on the same network
#   is tried every millisecond until one succeeds. On Calico that includes reading the
#   container's labels from Docker and felix programming its endpoint (it carries no traffic
#   before). SAMPLES containers per network, alternating.
# - 20 concurrent `docker run -d` on each network: distinct addresses, and the time until all
#   returned and until all had a first connection.
# Usage: bench/docker.sh. Needs root and Debian's docker.io.
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${SAMPLES:-50}
CONCURRENT=${CONCURRENT:-20}
BENCH_PREFIX=dkb
. bench/common.sh
echo "machine: $(nproc) vCPU $(lscpu | sed -n 's/^Model name: *//p'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
lab down >/dev/null 2>&1 || true
lab up --hosts 1 --docker >/dev/null
sock=/run/calico-lab-$BENCH_PREFIX/docker/h1/docker.sock
d() { docker -H "unix://$sock" "$@"; }
img=calico-lab/busybox:1
for _ in $(seq 150); do d network inspect calico >/dev/null 2>&1 && break; sleep 0.2; done
d network create -d bridge --subnet 10.99.0.0/24 brnet >/dev/null
serve='mkdir -p /www && echo srv > /www/id && exec httpd -f -p 80 -h /www'
d run -d --name srv-calico --network calico --label org.projectcalico.label.app=srv "$img" sh -c "$serve" >/dev/null
d run -d --name srv-bridge --network brnet "$img" sh -c "$serve" >/dev/null
ip_of() { d inspect -f "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"; }
srv_calico=$(ip_of srv-calico calico)
srv_bridge=$(ip_of srv-bridge brnet)
# The Calico server answers once felix has programmed it.
ip netns exec "${BENCH_PREFIX}-h1" python3 bench/first_packet.py "$srv_calico" 80 "$(date +%s%N)" 30 >/dev/null

# One container: docker run -> first packet, in ms.
first() { # NETWORK SERVER_IP NAME
  local t0 cid pid
  t0=$(date +%s%N)
  cid=$(d run -d --name "$3" --network "$1" --label org.projectcalico.label.app=bench "$img" sleep 120)
  pid=$(d inspect -f '{{.State.Pid}}' "$cid")
  nsenter --net=/proc/$pid/ns/net python3 bench/first_packet.py "$2" 80 "$t0" 20
}
stats() { # values...
  printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {p=int((NR*99+99)/100); if (p>NR) p=NR; printf "median %.1f ms, p99 %.1f ms, max %.1f ms (%d containers)", a[int((NR+1)/2)], a[p], a[NR], NR}'
}
echo "== docker run -> first packet (TCP connect to a server on the same network) =="
cal=() br=()
for i in $(seq "$SAMPLES"); do
  cal+=("$(first calico "$srv_calico" "c$i")")
  br+=("$(first brnet "$srv_bridge" "b$i")")
  d rm -f "c$i" "b$i" >/dev/null
done
echo "calico (Calico Docker plugin): $(stats "${cal[@]}")"
echo "bridge (Docker's own):         $(stats "${br[@]}")"

echo "== $CONCURRENT concurrent docker run -d =="
concurrent() { # NETWORK SERVER_IP PREFIX
  local t0 t_run t_all ips
  t0=$(date +%s%N)
  for i in $(seq "$CONCURRENT"); do
    d run -d --name "$3$i" --network "$1" "$img" sleep 120 >/dev/null &
  done
  wait
  t_run=$(( ($(date +%s%N) - t0) / 1000000 ))
  for i in $(seq "$CONCURRENT"); do
    pid=$(d inspect -f '{{.State.Pid}}' "$3$i")
    nsenter --net=/proc/$pid/ns/net python3 bench/first_packet.py "$2" 80 "$t0" 30 >/dev/null &
  done
  wait
  t_all=$(( ($(date +%s%N) - t0) / 1000000 ))
  ips=$(for i in $(seq "$CONCURRENT"); do ip_of "$3$i" "$1"; done | sort -u | grep -c .)
  echo "$1: $ips distinct addresses for $CONCURRENT containers; all docker run returned after $t_run ms, all had a first connection after $t_all ms"
  for i in $(seq "$CONCURRENT"); do d rm -f "$3$i" >/dev/null & done
  wait
}
concurrent calico "$srv_calico" cc
concurrent brnet "$srv_bridge" bc
