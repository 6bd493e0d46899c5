#!/usr/bin/env bash
# The main job (for now): apply the seed's resources to a fresh embedded datastore and print them
# back with calicoctl, the same way an operator would on DC/OS (`dcos calico ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
cargo build --locked --release -q -p calicoctl
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CALICO_DATASTORE_PATH="$work/calico.db"
run() { echo; echo "\$ $*"; "$@"; }
run $bin/calicoctl apply -f examples/seed/profile-calico.yaml
run $bin/calicoctl apply -f examples/seed/policy-bookstore.yaml
run $bin/dcos-calico calico create -f examples/seed/ippool.yaml
run $bin/dcos-calico calico create -f examples/seed/profile-new.yaml
run $bin/calicoctl get profiles -o wide
run $bin/calicoctl get ippool -o wide
run $bin/calicoctl get networkpolicy -o wide
run $bin/calicoctl get networkpolicy allow-bookstore-cliient-to-server -o yaml
run $bin/dcos-calico calico get profile calico -o yaml
echo
echo "demo: every seed resource applied and read back"
