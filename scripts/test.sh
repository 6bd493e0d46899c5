#!/usr/bin/env bash
# The project's test command: set-up, lint, the whole test suite, then the conformance
# summaries (one "<corpus>: N passed, M failed" line per corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Tests drive the real binaries of other packages (calico-lab runs calico-node, calico, calicoctl):
# build them all first, nextest only builds the test targets.
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --no-fail-fast
echo "== conformance (vendored corpus, or \$CALICO_CONFORMANCE_DIR) =="
cargo test --locked -q -p calico-selector -p calico-api -p calico-confd --test conformance -- --nocapture 2>&1 \
  | grep -E '^[a-z]+: [0-9]+ passed, [0-9]+ failed' || { echo "conformance summaries missing" >&2; exit 1; }
echo "== upstream validation rules beyond the vendored vectors =="
cargo test --locked -q -p calico-api --test upstream_rules -- --nocapture 2>&1 \
  | grep -E '^upstream rules: [0-9]+ passed' || { echo "upstream rules summary missing" >&2; exit 1; }
