#!/usr/bin/env bash
# Installs what building and testing calico-rs needs on a fresh Debian 12 machine that has the
# Rust toolchain (cargo 1.85+). Idempotent; skips apt when everything is already present.
set -euo pipefail

# containernetworking-plugins + iptables: the CNI kernel test chains calico with the reference
# portmap plugin; podman + runc: the CNI test under podman (crun fails in this sandbox);
# conntrack: felix flushes the flows of removed endpoints; python3: the attack tests craft raw packets;
# docker.io: the Docker plugin's tests run under a real dockerd; bird: BGP (calicoctl node status);
# systemd: systemd-analyze verifies the units; dpkg-dev: the Debian package is built and read;
# chromium, chromium-driver, python3-selenium: the web view is tested in headless Chromium.
packages=(build-essential pkg-config ca-certificates time iproute2 nftables busybox-static protobuf-compiler libprotobuf-dev etcd-server etcd-client iperf3
  containernetworking-plugins iptables podman runc conntrack python3 docker.io bird systemd dpkg-dev
  chromium chromium-driver python3-selenium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install the Rust toolchain (1.85 or newer) first" >&2; exit 1; }
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

# dockerd for the Docker plugin's tests, unless one runs. Without its iptables rules: they set the
# host's FORWARD policy to DROP, which would cut the other tests' forwarded traffic.
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: starting dockerd (log: /var/log/calico-rs-dockerd.log)"
    nohup dockerd --iptables=false >/var/log/calico-rs-dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /var/log/calico-rs-dockerd.log" >&2; exit 1; }
  else
    echo "setup: dockerd is not running and this is not root: the Docker tests will skip" >&2
  fi
fi
