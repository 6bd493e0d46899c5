#!/usr/bin/env bash
# Builds the calico-rs Debian package with dpkg-deb from built binaries:
#   packaging/build-deb.sh [TARGET_DIR] [OUT_DIR]
# TARGET_DIR holds the binaries (default target/release; `cargo build --release --workspace
# --bins` first). Prints the .deb's path. Install it with `apt install ./calico-rs_*.deb`.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=${1:-target/release}
out=${2:-target/debian}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
mkdir -p "$out"
# Staged beside the output, not in /tmp: a small /tmp cannot hold a workspace's binaries.
root=$(mktemp -d -p "$out" .staging.XXXXXX)
trap 'rm -rf "$root"' EXIT
# The package's root becomes the host's /: it must not be 0700 like mktemp's.
chmod 755 "$root"

install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/calico" \
  "$root/opt/mesosphere/active/cni" "$root/opt/mesosphere/etc/dcos/network/cni" \
  "$root/usr/share/doc/calico-rs"
# Installed binaries are stripped, as Debian ships them (debug builds are 100-200 MB each).
for b in calico-node calicoctl dcos-calico calico-confd calico-libnetwork-plugin; do
  install -s -m 755 "$bins/$b" "$root/usr/bin/$b"
done
# Where Mesos looks for CNI plugins and network configurations on DC/OS.
install -s -m 755 "$bins/calico" "$root/opt/mesosphere/active/cni/calico"
install -s -m 755 "$bins/calico-ipam" "$root/opt/mesosphere/active/cni/calico-ipam"
install -m 644 packaging/cni/calico.conf "$root/opt/mesosphere/etc/dcos/network/cni/calico.conf"
install -m 644 packaging/systemd/*.service "$root/lib/systemd/system/"
install -m 644 packaging/etc/calico.env packaging/etc/dcos-calico.yaml packaging/etc/calicoctl.cfg \
  "$root/etc/calico/"
install -m 644 README.md "$root/usr/share/doc/calico-rs/README.md"
# What `dcos node diagnostic create` should run: merge into dcos-diagnostics-config.json.
install -d "$root/usr/share/calico-rs/dcos-diagnostics"
install -m 644 packaging/dcos-diagnostics/calico.json "$root/usr/share/calico-rs/dcos-diagnostics/calico.json"
install -m 755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
cat > "$root/DEBIAN/conffiles" <<CONF
/etc/calico/calico.env
/etc/calico/dcos-calico.yaml
/etc/calico/calicoctl.cfg
/opt/mesosphere/etc/dcos/network/cni/calico.conf
CONF
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CTRL
Package: calico-rs
Version: $version
Architecture: $arch
Maintainer: calico-rs developers <calico-rs@localhost>
Installed-Size: $size
Depends: libc6, nftables, conntrack, iproute2
Recommends: libnftables1, bird
Suggests: docker.io, etcd-server
Section: net
Priority: optional
Homepage: https://github.com/projectcalico/calico
Description: Calico container networking and network policy for DC/OS (Rust)
 calico-node (felix: nftables policy, routes, VXLAN), calico-confd and BIRD units for BGP,
 the calico and calico-ipam CNI plugins where Mesos looks for them, the Docker network
 plugin, and calicoctl (also as the dcos-calico CLI plugin). Compatible with Project Calico's
 projectcalico.org/v3 API.
CTRL
deb="$out/calico-rs_${version}_${arch}.deb"
# DEB_FAST=1 (tests): quick gzip instead of xz.
compress=()
if [ "${DEB_FAST:-}" = 1 ]; then compress=(-Zgzip -z1); fi
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"
