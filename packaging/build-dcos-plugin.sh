#!/usr/bin/env bash
# Builds the DC/OS CLI plugin package (plugin.toml and bin/dcos-calico in a zip, the layout
# `dcos plugin add` installs):
#   packaging/build-dcos-plugin.sh [TARGET_DIR] [OUT_DIR]
# Prints the zip's path. The plugin reaches the cluster's etcd with the datastore
# configuration in ~/.dcos/calico/calicoctl.cfg (etcdEndpoints and the TLS files).
set -euo pipefail
cd "$(dirname "$0")/.."
bins=${1:-target/release}
out=${2:-target/dcos-cli}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$out"
sed "s/@VERSION@/$version/" packaging/dcos-cli/plugin.toml > "$stage/plugin.toml"
install -m 755 "$bins/dcos-calico" "$stage/bin/dcos-calico"
zip="$(cd "$out" && pwd)/dcos-calico-$version.zip"
rm -f "$zip"
# python3's zipfile keeps the executable bit the CLI needs.
(cd "$stage" && python3 - "$zip" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for path in ["plugin.toml", "bin/dcos-calico"]:
        info = zipfile.ZipInfo.from_file(path, path)
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as f:
            z.writestr(info, f.read())
PY
)
echo "$zip"
