# Shared by the lab benchmarks (sourced, not run): release binaries, a 2-host lab named
# $BENCH_PREFIX on the embedded store (or etcd with `bench_lab_up --etcd`), a server task
# `srv` on h1 and a client `cli` on h2, torn down on exit. After bench_lab_up: $bin, $work,
# $srv_ip, $srv_ns, $cli_ns and the functions lab, median.

scripts/setup-debian.sh >/dev/null
cargo build --locked --release -q -p calico-lab -p calico-node -p calico-cni -p calico-ipam-plugin -p calicoctl -p calico-libnetwork
bin=${CARGO_TARGET_DIR:-target}/release
lab() { "$bin/calico-lab" --prefix "$BENCH_PREFIX" "$@"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
work=$(mktemp -d)
trap 'lab down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export CALICO_DATASTORE_PATH=/run/calico-lab-$BENCH_PREFIX/calico.db
unset DATASTORE_TYPE

bench_lab_up() { # [--etcd]
  echo "machine: $(nproc) vCPU $(lscpu | sed -n 's/^Model name: *//p'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
  lab down >/dev/null 2>&1 || true
  lab up --hosts 2 "$@" >/dev/null
  printf '{"id":"/srv","instances":1,"networks":[{"mode":"container","name":"calico","labels":{"app":"srv"}}]}' > "$work/srv.json"
  printf '{"id":"/cli","instances":1,"networks":[{"mode":"container","name":"calico","labels":{"app":"cli"}}]}' > "$work/cli.json"
  lab app "$work/srv.json" --host h1 >/dev/null
  lab app "$work/cli.json" --host h2 >/dev/null
  srv_ip=$(lab status | awk '/task srv/ {print $6}')
  srv_ns=$(lab status | awk '/task srv/ {print $8}')
  cli_ns=$(lab status | awk '/task cli/ {print $8}')
}
