#!/usr/bin/env bash
# The main job: the seed's demo on a 3-host lab (network namespaces on one machine, the embedded
# datastore): calico-node on every host, the seed's three Marathon apps attached through the real
# calico CNI plugin, requests from both frontends to bookstore-server before and after
# `calicoctl apply` of the seed's policy, printed as a matrix. Exit code 0 only if it all held.
# Needs root (network namespaces, nftables).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
cargo build --locked --release -q -p calico-lab -p calico-node -p calico-cni -p calico-ipam-plugin -p calicoctl
bin=${CARGO_TARGET_DIR:-target}/release
exec "$bin/calico-lab" --prefix demo demo --seed examples/seed
