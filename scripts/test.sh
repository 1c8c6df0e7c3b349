#!/usr/bin/env bash
# Runs every check and test of the workspace, on a fresh Debian machine or a developer's.
#
# 1. Makes sure what the tests talk to is running on 127.0.0.1: MariaDB (3306, root with an
#    empty password, database `test`), PostgreSQL (5432, trust auth, database `test`) and
#    Redis (6379). Anything missing is installed with apt-get and started directly (no
#    systemd on these machines). Headless Chromium and its WebDriver (Debian `chromium`,
#    `chromium-driver`) for the push web page's browser test and the JavaScript SDK's;
#    Python's protobuf and grpcio-tools for the client generated from proto/push.proto;
#    Node.js 20 or later for the JavaScript SDK; redis-server and redis-cli (the Redis
#    Cluster tests start their own cluster) and iproute2 (the partition tests' namespaces).
# 2. cargo fmt --check, cargo clippy -D warnings, each cargo feature of longlink-pool
#    alone, longlink-rpc without and with its `tls` and `compression` features (clippy and
#    tests), then every test (cargo nextest, or cargo test where nextest is absent) and the
#    doctests.
# 3. The JavaScript SDK (clients/js): npm ci, then npm test — tsc, the committed bundle the
#    center serves checked against a fresh build, unit tests, and the integration tests
#    against the longlink-push binary in Node and headless Chromium.
#
# Idempotent and non-interactive. Exits non-zero on the first failing step.
# CARGO_TARGET_DIR defaults to a cache outside the clone so repeated runs reuse artifacts.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/longlink/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export DEBIAN_FRONTEND=noninteractive

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { printf '\n== %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    if port_open "$port"; then return 0; fi
    sleep 1
  done
  echo "error: $name did not start listening on 127.0.0.1:$port" >&2
  return 1
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    $SUDO apt-get update -q
    APT_UPDATED=1
  fi
  $SUDO apt-get install -y -q --no-install-recommends "$@"
}

ensure_mariadb() {
  if ! port_open 3306; then
    log "starting MariaDB"
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server mariadb-client
    $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
      $SUDO mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_port 3306 MariaDB
  fi
  # Debian's root logs in through the unix socket only; the tests log in over TCP with an
  # empty password.
  if ! mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; then
    $SUDO mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;"
  fi
  mariadb -h 127.0.0.1 -P 3306 -u root -e 'CREATE DATABASE IF NOT EXISTS test'
}

ensure_postgres() {
  if ! port_open 5432; then
    log "starting PostgreSQL"
    command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql postgresql-client
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_port 5432 PostgreSQL
  fi
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
    # Trust local TCP connections (test machines only).
    local version hba
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    sleep 1
  fi
  if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != "1" ]; then
    psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
  fi
}

ensure_redis() {
  if ! port_open 6379; then
    log "starting Redis"
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    $SUDO mkdir -p /var/lib/redis /var/log/redis
    $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_port 6379 Redis
  fi
  # The Redis Cluster tests start their own servers and join them with redis-cli.
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server redis-tools
  fi
}

# The partition tests make network namespaces with `ip` (they skip, saying so, without root).
ensure_iproute() {
  command -v ip >/dev/null 2>&1 || apt_install iproute2
}

ensure_chromium() {
  if ! command -v chromedriver >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then
    log "installing headless Chromium"
    apt_install chromium chromium-driver
  fi
}

ensure_node() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "installing Node.js"
    apt_install nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "error: the JavaScript SDK needs Node.js 20 or later; this machine has $(node --version)" >&2
    return 1
  fi
}

# The Python client generated from proto/push.proto (demo-push/tests/python_client.rs):
# protobuf, and grpcio-tools for protoc. PyPI wheels; Debian's python3-pip where pip is missing.
ensure_python_client() {
  if ! python3 -c 'import google.protobuf, grpc_tools' >/dev/null 2>&1; then
    log "installing the Python client's packages"
    if ! python3 -m pip --version >/dev/null 2>&1; then apt_install python3-pip; fi
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      -r clients/python/requirements.txt 2>/dev/null ||
      python3 -m pip install --quiet --disable-pip-version-check -r clients/python/requirements.txt
  fi
}

log "services"
ensure_node
ensure_mariadb
ensure_postgres
ensure_redis
ensure_iproute
ensure_chromium
ensure_python_client
echo "MariaDB, PostgreSQL and Redis are up on 127.0.0.1; chromium $(chromium --version 2>/dev/null | awk '{print $2}') and chromedriver are installed; node $(node --version)"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Crates with cargo features: each feature alone (and none) must build, not only the
# workspace's union of them.
log "features, one at a time"
cargo check -p longlink-pool --locked --no-default-features
for feature in mysql postgres sqlite bb8 deadpool; do
  cargo check -p longlink-pool --locked --no-default-features --features "$feature"
done
# longlink-rpc alone, without and with each feature (in the workspace build longlink-push
# turns `tls` on and the benches `compression`, so the plain build is checked only here);
# its tests run once plain and once with every feature.
RPC_FEATURES="tls,opentelemetry,compression"
cargo clippy -p longlink-rpc --locked --all-targets -- -D warnings
for feature in ${RPC_FEATURES//,/ }; do
  cargo clippy -p longlink-rpc --locked --all-targets --features "$feature" -- -D warnings
done

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --profile ci
  cargo nextest run -p longlink-rpc --locked --profile ci
  cargo nextest run -p longlink-rpc --locked --profile ci --features "$RPC_FEATURES"
else
  cargo test --workspace --locked --lib --bins --tests
  cargo test -p longlink-rpc --locked --lib --tests
  cargo test -p longlink-rpc --locked --lib --tests --features "$RPC_FEATURES"
fi

log "doctests"
cargo test --workspace --locked --doc
cargo test -p longlink-rpc --locked --doc --features "$RPC_FEATURES"

log "JavaScript SDK (clients/js): npm ci, npm test"
cargo build -p longlink-push --bin longlink-push --locked
(
  cd clients/js
  npm ci --no-audit --no-fund
  LONGLINK_PUSH_BIN="$CARGO_TARGET_DIR/debug/longlink-push" npm test
)

log "rustdoc (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

log "all checks passed"
