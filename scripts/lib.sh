# Shared by .ci/run and scripts/imcloud: install and start what the build and the tests need when it is
# missing (a fresh Debian machine), and reuse it when it is already there.

log() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "cargo not found: install Rust (https://rustup.rs) first" >&2
      exit 1
    fi
  fi
}

# etcd-client's build compiles etcd's .proto files with protoc.
ensure_protoc() {
  command -v protoc >/dev/null 2>&1 || apt_install protobuf-compiler
}

# Redis normally runs on 127.0.0.1:6379 already; start (and if need be install) it when it does not.
ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then return 0; fi
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server redis-tools
  mkdir -p /tmp/imcloud-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/imcloud-redis --logfile /tmp/imcloud-redis/redis.log
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "Redis did not start" >&2
  return 1
}

# A private etcd for the tests, on its own ports and data dir; stopped by stop_etcd.
ETCD_PID=
start_etcd() {
  command -v etcd >/dev/null 2>&1 || apt_install etcd-server etcd-client
  local client_port=${1:-23791} peer_port=${2:-23801}
  ETCD_DIR=$(mktemp -d /tmp/imcloud-etcd.XXXXXX)
  etcd --name imcloud-test --data-dir "$ETCD_DIR/data" \
    --listen-client-urls "http://127.0.0.1:$client_port" --advertise-client-urls "http://127.0.0.1:$client_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "imcloud-test=http://127.0.0.1:$peer_port" >"$ETCD_DIR/etcd.log" 2>&1 &
  ETCD_PID=$!
  for _ in $(seq 1 100); do
    if ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$client_port" endpoint health >/dev/null 2>&1; then
      export IMCLOUD_TEST_ETCD_ENDPOINTS="127.0.0.1:$client_port"
      return 0
    fi
    sleep 0.1
  done
  echo "etcd did not start; its log:" >&2
  cat "$ETCD_DIR/etcd.log" >&2
  return 1
}

stop_etcd() {
  if [ -n "$ETCD_PID" ]; then
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    rm -rf "$ETCD_DIR"
  fi
}

# A Kafka-compatible broker: Tansu (Apache-2.0, Kafka protocol, in Rust). Apache Kafka itself is not
# installable here. Installed once with cargo (about 15 minutes on 2 cores), reused when already on PATH.
ensure_tansu() {
  local bin="${CARGO_HOME:-$HOME/.cargo}/bin"
  if command -v tansu >/dev/null 2>&1; then return 0; fi
  if [ ! -x "$bin/tansu" ]; then
    log "installing Tansu (cargo install tansu; about 15 minutes on 2 cores, once per machine)"
    cargo install tansu --locked --features dynostore
  fi
  export PATH="$bin:$PATH"
  command -v tansu >/dev/null 2>&1 || { echo "tansu is not on PATH after installing it into $bin" >&2; return 1; }
}

# A private in-memory Tansu broker on its own port; stopped by stop_tansu. Sets IMCLOUD_TEST_KAFKA_BROKERS.
TANSU_PID=
start_tansu() {
  ensure_tansu
  local port=${1:-19092}
  TANSU_DIR=$(mktemp -d /tmp/imcloud-tansu.XXXXXX)
  tansu broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$TANSU_DIR/tansu.log" 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export IMCLOUD_TEST_KAFKA_BROKERS="127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "Tansu did not start; its log:" >&2
  cat "$TANSU_DIR/tansu.log" >&2
  return 1
}

stop_tansu() {
  if [ -n "$TANSU_PID" ]; then
    kill "$TANSU_PID" 2>/dev/null || true
    wait "$TANSU_PID" 2>/dev/null || true
    rm -rf "$TANSU_DIR"
  fi
}
