#!/usr/bin/env bash
# Reruns every benchmark of the suite and prints each one's ratio table.
#
#   scripts/bench.sh          short mode (~12 minutes on the 2-core machine)
#   scripts/bench.sh --full   every concurrency, longer runs, push at 100k and 250k
#                             connections (~40 minutes)
#   --push-only               only the push scale runs (with either mode)
#
# The push scale runs start their own cluster (`longlink-push cluster`) on the local Redis
# and MariaDB, write JSON results, and end with `longlink-bench plot` (SVG charts).
#
# Needs MariaDB, PostgreSQL and Redis (the database groups and the push cluster): run
# scripts/test.sh once first, which installs and starts them when missing. Figures go to
# docs/benchmarks.md by hand, with the date and the machine.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/longlink/target}"
FULL=0
PUSH_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --full) FULL=1 ;;
    --push-only) PUSH_ONLY=1 ;;
    *) echo "usage: scripts/bench.sh [--full] [--push-only]" >&2; exit 2 ;;
  esac
done

if [ "$FULL" -eq 1 ]; then
  CRITERION=()
  RPC=(--full)
else
  CRITERION=(-- --warm-up-time 1 --measurement-time 2)
  RPC=()
fi

cargo build --release -p longlink-benches --bin longlink-bench -p longlink-push --bin longlink-push
if [ "$PUSH_ONLY" -eq 0 ]; then
echo "== codec"
cargo bench -p longlink-benches --bench codec "${CRITERION[@]}"
echo "== pool"
cargo bench -p longlink-benches --bench pool "${CRITERION[@]}"
echo "== rpc (one process)"
cargo bench -p longlink-benches --bench rpc "${CRITERION[@]}"
echo "== rpc (separate pinned processes, vs tarpc and tonic; longlink's strategies in plaintext, over TLS and typed; then typed out of the box: unpinned, a worker per core)"
cargo build --release -p longlink-benches --bin longlink-bench
"$CARGO_TARGET_DIR/release/longlink-bench" rpc "${RPC[@]}" --out "$CARGO_TARGET_DIR/longlink-bench/rpc.json" \
  --tls-data-dir "$CARGO_TARGET_DIR/longlink-bench/rpc-tls"
echo "== push: unicast end to end, single process vs 2-room cluster per RPC strategy"
cargo build --release -p longlink-push --bin longlink-push
if [ "$FULL" -eq 1 ]; then PUSH=(--seconds 10); else PUSH=(--seconds 3); fi
"$CARGO_TARGET_DIR/release/longlink-bench" push-unicast "${PUSH[@]}" \
  --bin "$CARGO_TARGET_DIR/release/longlink-push" \
  --out "$CARGO_TARGET_DIR/longlink-bench/push-unicast.json"
fi

# ---- push at scale: many connections against a running cluster (and the single process)
BENCH="$CARGO_TARGET_DIR/release/longlink-bench"
PUSH_BIN="$CARGO_TARGET_DIR/release/longlink-push"
RESULTS="$CARGO_TARGET_DIR/longlink-bench/push-results"
SCALE_DIR="$(mktemp -d)"
mkdir -p "$RESULTS"
cat > "$SCALE_DIR/config.toml" <<TOML
dev_page = false
[room]
max_conns_per_ip = 20000
[cluster]
redis_prefix = "llbench:"
room_capacity = 19900
TOML
mysql -uroot -h127.0.0.1 -e "CREATE DATABASE IF NOT EXISTS longlink_bench" 2>/dev/null || true
LAUNCHER=""
stop_cluster() {
  if [ -n "$LAUNCHER" ]; then
    kill -INT "$LAUNCHER" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$LAUNCHER" 2>/dev/null || break; sleep 1; done
    kill -KILL "$LAUNCHER" 2>/dev/null || true
    LAUNCHER=""
  fi
  redis-cli --scan --pattern 'llbench:*' | xargs -r redis-cli del >/dev/null || true
}
trap 'stop_cluster; rm -rf "$SCALE_DIR"' EXIT
start_cluster() { # rooms [--tls-self-signed]
  stop_cluster
  rm -rf "$SCALE_DIR/data"
  "$PUSH_BIN" cluster --rooms "$1" --base-port 27000 --data-dir "$SCALE_DIR/data" \
    --database mysql://root@127.0.0.1:3306/longlink_bench --config "$SCALE_DIR/config.toml" \
    ${2:-} > "$SCALE_DIR/cluster.log" 2>&1 &
  LAUNCHER=$!
  for _ in $(seq 1 60); do [ -s "$SCALE_DIR/data/demo-api-key" ] && break; sleep 1; done
  sleep 3
}
push() { # scenario out-name [options...]
  local scenario=$1 name=$2; shift 2
  echo "-- push $scenario $*"
  "$BENCH" push "$scenario" --center http://127.0.0.1:27000 --data-dir "$SCALE_DIR/data" \
    --out "$RESULTS/$name.json" "$@" > /dev/null
}
push_tls() { # scenario out-name [options...]: through the TLS listeners and HTTPS
  local scenario=$1 name=$2; shift 2
  echo "-- push $scenario (TLS) $*"
  "$BENCH" push "$scenario" --center https://127.0.0.1:27000 --data-dir "$SCALE_DIR/data" \
    --ca "$SCALE_DIR/data/tls/ca.pem" --out "$RESULTS/$name.json" "$@" > /dev/null
}
# Plaintext and TLS side by side, each on a fresh cluster (memory per connection is the
# growth of fresh rooms).
tls_pairs() { # rooms conns [options...]
  local rooms=$1 n=$2; shift 2
  start_cluster "$rooms"
  push connect tls-pair-tcp -n "$n" --hold-secs 5 "$@"
  start_cluster "$rooms" --tls-self-signed
  push_tls connect tls-pair-tcp-tls -n "$n" --hold-secs 5 "$@"
  start_cluster "$rooms"
  push connect tls-pair-ws -n "$n" --hold-secs 5 --ws "$@"
  start_cluster "$rooms" --tls-self-signed
  push_tls connect tls-pair-wss -n "$n" --hold-secs 5 --ws "$@"
}

if [ "$FULL" -eq 1 ]; then
  echo "== push at scale (full): 100k and 250k connections"
  start_cluster 6
  push connect connect-ws -n 100000 --ws --parallel 128
  push connect connect-tcp -n 100000 --parallel 128
  push broadcast broadcast-ws -n 100000 --ws --messages 10 --parallel 128
  push broadcast broadcast-tcp -n 100000 --messages 10 --parallel 128
  push broadcast broadcast-burst -n 100000 --messages 20 --burst --parallel 128
  push idle idle-tcp -n 100000 --hold-secs 60 --parallel 128
  push unicast unicast-cluster-10k -n 20000 --per-worker 10000 --rate 10000
  push churn churn-ws -n 20000 --per-worker 10000 --ws --messages 2000
  start_cluster 13
  push connect connect-ws-250k -n 250000 --ws --parallel 48 --hold-secs 20
  echo "== plaintext and TLS, 100k each"
  tls_pairs 6 100000 --parallel 128
else
  echo "== push at scale (short): 20k connections on 2 rooms"
  start_cluster 2
  push connect connect-ws -n 20000 --per-worker 10000 --ws
  push broadcast broadcast-burst -n 20000 --per-worker 10000 --messages 20 --burst
  push unicast unicast-cluster-5k -n 5000 --per-worker 5000 --rate 5000 --hold-secs 5
  push churn churn-tcp -n 10000 --per-worker 5000 --messages 500
  echo "== plaintext and TLS, 20k each"
  tls_pairs 2 20000 --per-worker 10000
fi
stop_cluster
"$BENCH" plot --results "$RESULTS" --out "$CARGO_TARGET_DIR/longlink-bench/push-plots"
echo "results: $RESULTS; plots: $CARGO_TARGET_DIR/longlink-bench/push-plots"
