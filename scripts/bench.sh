#!/usr/bin/env bash
# Reruns every benchmark of the suite and prints each one's ratio table.
#
#   scripts/bench.sh          short mode (~10 minutes on the 2-core machine)
#   scripts/bench.sh --full   every concurrency, longer runs
#
# Needs MariaDB, PostgreSQL and Redis (the database groups and the push cluster): run
# scripts/test.sh once first, which installs and starts them when missing. Figures go to
# docs/benchmarks.md by hand, with the date and the machine.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/longlink/target}"
FULL=0
if [ "${1:-}" = "--full" ]; then FULL=1; fi

if [ "$FULL" -eq 1 ]; then
  CRITERION=()
  RPC=(--full)
else
  CRITERION=(-- --warm-up-time 1 --measurement-time 2)
  RPC=()
fi

echo "== codec"
cargo bench -p longlink-benches --bench codec "${CRITERION[@]}"
echo "== pool"
cargo bench -p longlink-benches --bench pool "${CRITERION[@]}"
echo "== rpc (one process)"
cargo bench -p longlink-benches --bench rpc "${CRITERION[@]}"
echo "== rpc (separate pinned processes, vs tarpc and tonic)"
cargo build --release -p longlink-benches --bin longlink-bench
"$CARGO_TARGET_DIR/release/longlink-bench" rpc "${RPC[@]}" --out "$CARGO_TARGET_DIR/longlink-bench/rpc.json"
echo "== push: unicast end to end, single process vs 2-room cluster per RPC strategy"
cargo build --release -p longlink-push --bin longlink-push
if [ "$FULL" -eq 1 ]; then PUSH=(--seconds 10); else PUSH=(--seconds 3); fi
"$CARGO_TARGET_DIR/release/longlink-bench" push-unicast "${PUSH[@]}" \
  --bin "$CARGO_TARGET_DIR/release/longlink-push" \
  --out "$CARGO_TARGET_DIR/longlink-bench/push-unicast.json"
