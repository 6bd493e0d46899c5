#!/bin/bash
# podman (Debian package, CNI backend) runs a container from a locally imported busybox image
# on a `calico` network served by our plugin: the container gets its address, the host reaches
# it, and `podman rm` cleans up (veth, route, endpoint, address).
#
# Usage: crates/cni/tests/podman.sh   (root; apt-get install -y podman busybox-static)
# BIN_DIR (default $CARGO_TARGET_DIR/debug or target/debug) holds calico, calico-ipam, calicoctl.
# Runs inside a private network namespace (unshare -n); podman state lives in a temp dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
for b in "$BIN_DIR/calico" "$BIN_DIR/calico-ipam" "$BIN_DIR/calicoctl"; do
  [ -x "$b" ] || { echo "missing $b: build the workspace first" >&2; exit 2; }
done
command -v podman >/dev/null || { echo "SKIPPED: podman is not installed (apt-get install -y podman)" >&2; exit 77; }
if [ -z "${CPT_INSIDE:-}" ]; then
  exec env CPT_INSIDE=1 unshare -n "$0" "$@"
fi

W=$(mktemp -d /tmp/cpt.XXXXXX)
P() { CONTAINERS_CONF=$W/containers.conf podman --root "$W/storage" --runroot "$W/runroot" --storage-driver vfs "$@"; }
cleanup() { P rm -af >/dev/null 2>&1 || true; rm -rf "$W" 2>/dev/null || true; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

ip link set lo up
ip link add cpt-up0 type veth peer name cpt-up1
ip link set cpt-up0 up; ip link set cpt-up1 up
ip addr add 192.0.2.1/24 dev cpt-up0
ip route add default via 192.0.2.254 dev cpt-up0 onlink

mkdir -p "$W/cni-bin" "$W/net.d" "$W/rootfs/bin"
ln -s "$BIN_DIR/calico" "$W/cni-bin/calico"
ln -s "$BIN_DIR/calico-ipam" "$W/cni-bin/calico-ipam"
cat > "$W/containers.conf" <<EOF
[containers]
netns = "private"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$W/events.log"
runtime = "runc"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$W/cni-bin"]
network_config_dir = "$W/net.d"
default_network = "calico"
EOF
cat > "$W/net.d/calico.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "calico", "plugins": [
  {"type": "calico", "mtu": 1450, "nodename": "podhost", "datastore_type": "embedded",
   "datastore_path": "$W/calico.db", "ipam": {"type": "calico-ipam"},
   "capabilities": {"portMappings": true}}]}
EOF
cat > "$W/pool.yaml" <<EOF
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: podpool
spec:
  cidr: 10.72.0.0/16
  blockSize: 26
EOF
CTL() { DATASTORE_TYPE=embedded CALICO_DATASTORE_PATH="$W/calico.db" "$BIN_DIR/calicoctl" "$@"; }
CTL create -f "$W/pool.yaml" >/dev/null

cp "$(command -v busybox)" "$W/rootfs/bin/"
for a in sh sleep ip; do ln -sf busybox "$W/rootfs/bin/$a"; done
tar -C "$W/rootfs" -c . | P import - localhost/cptbusybox:1 >/dev/null

P run -d --name cpt1 --network calico localhost/cptbusybox:1 /bin/sleep 300 >/dev/null
ADDR=$(P exec cpt1 /bin/ip -4 -o addr show eth0 | awk '{print $4}')
echo "container address: $ADDR"
case "$ADDR" in 10.72.*/32) ;; *) fail "unexpected address $ADDR";; esac
IP=${ADDR%/32}
ROUTES=$(P exec cpt1 /bin/ip route)
grep -q 'default via 169.254.1.1' <<<"$ROUTES" || fail "no default route via 169.254.1.1"
MTU=$(P exec cpt1 /bin/ip -o link show eth0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
[ "$MTU" = 1450 ] || fail "container MTU $MTU"
busybox ping -c 1 -W 2 "$IP" >/dev/null || fail "host cannot ping $IP"
HOSTROUTES=$(ip route)
grep -q "^$IP dev cali" <<<"$HOSTROUTES" || fail "no host route to $IP"
WEPS=$(CTL get workloadendpoints -A -o yaml)
grep -q "$IP/32" <<<"$WEPS" || fail "no WorkloadEndpoint for $IP: $WEPS"
grep -q "orchestrator: mesos" <<<"$WEPS" || fail "endpoint orchestrator is not mesos: $WEPS"
echo "ping ok, route ok, endpoint ok"

P rm -f -t 0 cpt1 >/dev/null
grep -q "^$IP " <<<"$(ip route)" && fail "route to $IP left behind"
grep -q ' cali' <<<"$(ip -o link)" && fail "veth left behind"
[ -z "$(CTL get workloadendpoints -A 2>/dev/null | tail -n +2)" ] || fail "endpoint left behind"
echo "PASS: podman run/rm on the calico network"
