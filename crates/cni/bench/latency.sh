#!/bin/bash
# ADD/DEL latency of the calico CNI plugin (+ calico-ipam, embedded datastore) side by side
# with the reference ptp + host-local plugins (Debian containernetworking-plugins) doing the
# same job, interleaved in the same run; then a burst of concurrent ADDs for each.
#
# Usage: crates/cni/bench/latency.sh [RUNS=200] [BURST=50]
# Needs root, python3, /usr/lib/cni/{ptp,host-local} (apt-get install containernetworking-plugins)
# and release builds of calico, calico-ipam and calicoctl:
#   cargo build --release -p calico-cni -p calico-ipam-plugin -p calicoctl
# BIN_DIR (default: $CARGO_TARGET_DIR/release or target/release) says where they are.
# Everything runs inside a private network namespace (unshare -n); container namespaces are
# named clb-* under /run/netns and removed at the end.
set -euo pipefail
RUNS=${1:-200}
BURST=${2:-50}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
REF_DIR=${REF_DIR:-/usr/lib/cni}
CALICOCTL=${CALICOCTL:-$BIN_DIR/calicoctl}   # only used to create the pool
for b in "$BIN_DIR/calico" "$BIN_DIR/calico-ipam" "$CALICOCTL" "$REF_DIR/ptp" "$REF_DIR/host-local"; do
  [ -x "$b" ] || { echo "missing $b (see the header of $0)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }

if [ -z "${CLB_INSIDE:-}" ]; then
  exec env CLB_INSIDE=1 unshare -n "$0" "$@"
fi

WORK=$(mktemp -d /tmp/clb.XXXXXX)
cleanup() {
  for ns in $(ip netns list | awk '{print $1}' | grep '^clb-' || true); do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

ip link set lo up
# Proxy ARP answers only when the host has a route out another interface.
ip link add clb-up0 type veth peer name clb-up1
ip link set clb-up0 up; ip link set clb-up1 up
ip addr add 192.0.2.1/24 dev clb-up0
ip route add default via 192.0.2.254 dev clb-up0 onlink

mkdir -p "$WORK/cni-bin"
ln -s "$BIN_DIR/calico" "$WORK/cni-bin/calico"
ln -s "$BIN_DIR/calico-ipam" "$WORK/cni-bin/calico-ipam"
ln -s "$REF_DIR/ptp" "$WORK/cni-bin/ptp"
ln -s "$REF_DIR/host-local" "$WORK/cni-bin/host-local"
cat > "$WORK/pool.yaml" <<EOF
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: bench
spec:
  cidr: 10.70.0.0/16
  blockSize: 26
EOF
DATASTORE_TYPE=embedded CALICO_DATASTORE_PATH="$WORK/calico.db" "$CALICOCTL" create -f "$WORK/pool.yaml" >/dev/null

cat > "$WORK/calico.json" <<EOF
{"cniVersion": "1.0.0", "name": "calico", "type": "calico", "mtu": 1500, "nodename": "bench",
 "datastore_type": "embedded", "datastore_path": "$WORK/calico.db", "ipam": {"type": "calico-ipam"}}
EOF
cat > "$WORK/ptp.json" <<EOF
{"cniVersion": "1.0.0", "name": "refptp", "type": "ptp", "ipMasq": false, "mtu": 1500,
 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.71.0.0/16"}]],
          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$WORK/host-local"}}
EOF

python3 - "$WORK" "$RUNS" "$BURST" <<'PY'
import os, subprocess, sys, time, statistics, concurrent.futures as cf
work, runs, burst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
plugins = {"calico": "calico.json", "ptp+host-local": "ptp.json"}
confs = {k: open(os.path.join(work, v), "rb").read() for k, v in plugins.items()}
binary = {"calico": "calico", "ptp+host-local": "ptp"}

def netns(name):
    subprocess.run(["ip", "netns", "add", name], check=True)
    return "/run/netns/" + name

def call(kind, cmd, cid, ns):
    env = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": cid, "CNI_NETNS": ns, "CNI_IFNAME": "eth0",
           "CNI_PATH": os.path.join(work, "cni-bin"), "PATH": os.environ["PATH"]}
    t = time.perf_counter()
    p = subprocess.run([os.path.join(work, "cni-bin", binary[kind])], input=confs[kind],
                       env=env, capture_output=True)
    dt = (time.perf_counter() - t) * 1000
    if p.returncode != 0:
        sys.exit(f"{kind} {cmd} {cid} failed: {p.stdout!r} {p.stderr!r}")
    return dt

def stats(xs):
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]

lat = {k: {"ADD": [], "DEL": []} for k in plugins}
for i in range(runs):
    # Interleave so both see the same machine load.
    order = list(plugins) if i % 2 == 0 else list(reversed(plugins))
    for k in order:
        cid = f"b{i}-{k[:3]}"
        ns = netns(f"clb-{i}-{k[:3]}")
        lat[k]["ADD"].append(call(k, "ADD", cid, ns))
        lat[k]["DEL"].append(call(k, "DEL", cid, ns))
        subprocess.run(["ip", "netns", "del", os.path.basename(ns)], check=True)

print(f"{runs} runs each, interleaved; wall time per exec in ms (fork+exec of plugin and IPAM plugin included)")
print(f"{'plugin':<16} {'ADD median':>10} {'ADD p99':>8} {'DEL median':>10} {'DEL p99':>8}")
for k in plugins:
    am, ap = stats(lat[k]["ADD"]); dm, dp = stats(lat[k]["DEL"])
    print(f"{k:<16} {am:>10.2f} {ap:>8.2f} {dm:>10.2f} {dp:>8.2f}")

print(f"\nburst: {burst} concurrent ADDs")
for k in plugins:
    nss = [netns(f"clb-burst-{k[:3]}-{j}") for j in range(burst)]
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(burst) as ex:
        ds = list(ex.map(lambda j: call(k, "ADD", f"burst{j}-{k[:3]}", nss[j]), range(burst)))
    wall = (time.perf_counter() - t) * 1000
    m, p = stats(ds)
    print(f"{k:<16} wall {wall:8.1f} ms   per-ADD median {m:7.2f} ms  p99 {p:7.2f} ms")
    for j in range(burst):
        call(k, "DEL", f"burst{j}-{k[:3]}", nss[j])
PY
