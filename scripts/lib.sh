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

# PostgreSQL normally runs on 127.0.0.1:5432 already (trust auth, user postgres); start (and if need be
# install) it when it does not. The IM tests create and drop their own databases in it.
ensure_postgres() {
  # The client tools (pg_isready, and psql, with which the tests drop their databases) in any case.
  command -v psql >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1 || apt_install postgresql-client
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$version" ]; then
    echo "PostgreSQL is installed but has no cluster under /etc/postgresql" >&2
    return 1
  fi
  # Trust local TCP connections for the postgres user, as on the development machines.
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba" 2>/dev/null; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  as_root pg_ctlcluster "$version" main start || as_root pg_ctlcluster "$version" main restart
  local i
  for i in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 0.5
  done
  echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
  return 1
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

# wait_until NAME LOG COMMAND...: polls COMMAND for up to WAIT_SECS (default 20) seconds; when it never
# succeeds, prints LOG.
wait_until() {
  local name=$1 logfile=$2
  shift 2
  for _ in $(seq 1 $((${WAIT_SECS:-20} * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$name did not start; its log ($logfile):" >&2
  cat "$logfile" >&2
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_etcd [CLIENT_PORT PEER_PORT]: a private etcd for the tests, on its own ports (default 23791, 23801)
# and data dir; stopped by stop_etcd. An etcd that already answers on CLIENT_PORT is reused and left running.
ETCD_PID=
start_etcd() {
  command -v etcd >/dev/null 2>&1 || apt_install etcd-server etcd-client
  local client_port=${1:-23791} peer_port=${2:-23801}
  if env ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$client_port" --dial-timeout 1s endpoint health >/dev/null 2>&1; then
    echo "reusing the etcd that answers on 127.0.0.1:$client_port"
    export IMCLOUD_TEST_ETCD_ENDPOINTS="127.0.0.1:$client_port"
    return 0
  fi
  ETCD_DIR=$(mktemp -d /tmp/imcloud-etcd.XXXXXX)
  etcd --name imcloud-test --data-dir "$ETCD_DIR/data" \
    --listen-client-urls "http://127.0.0.1:$client_port" --advertise-client-urls "http://127.0.0.1:$client_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "imcloud-test=http://127.0.0.1:$peer_port" >"$ETCD_DIR/etcd.log" 2>&1 &
  ETCD_PID=$!
  wait_until "etcd" "$ETCD_DIR/etcd.log" \
    env ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$client_port" endpoint health || return 1
  export IMCLOUD_TEST_ETCD_ENDPOINTS="127.0.0.1:$client_port"
}

stop_etcd() {
  if [ -n "$ETCD_PID" ]; then
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    rm -rf "$ETCD_DIR"
    ETCD_PID=
  fi
}

# Apache Kafka for the tests, the local cluster and the benchmark: the broker's jars come from Maven Central
# through the pom in scripts/kafka (Maven, with Java 17, both on the machine), copied once into the ignored
# folder .cache/kafka-<version>/libs. Maven's own cache (~/.m2) makes later copies local.
KAFKA_VERSION=4.4.0
KAFKA_HOME=
ensure_kafka() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  KAFKA_HOME="$root/.cache/kafka-$KAFKA_VERSION"
  if [ -f "$KAFKA_HOME/libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then return 0; fi
  command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central (once per clone)"
  rm -rf "$KAFKA_HOME.tmp"
  mkdir -p "$KAFKA_HOME.tmp"
  if ! mvn -B -Dstyle.color=never -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_HOME.tmp/libs" >"$KAFKA_HOME.tmp/mvn.log" 2>&1; then
    echo "could not fetch Apache Kafka with Maven; its log:" >&2
    tail -40 "$KAFKA_HOME.tmp/mvn.log" >&2
    return 1
  fi
  rm -rf "$KAFKA_HOME"
  mv "$KAFKA_HOME.tmp" "$KAFKA_HOME"
}

# start_kafka [PORT]: a private single-node KRaft broker (broker and controller in one JVM, 512 MiB heap) on
# 127.0.0.1:PORT (default 19092; its controller on PORT+1), with its own log dir, formatted at start. When a
# broker already answers on PORT it is reused and left running. Exports IMCLOUD_TEST_KAFKA_BROKERS; stopped
# by stop_kafka.
KAFKA_PID=
start_kafka() {
  local port=${1:-19092}
  export IMCLOUD_TEST_KAFKA_BROKERS="127.0.0.1:$port"
  if port_open "$port"; then
    echo "reusing the Kafka broker that answers on 127.0.0.1:$port"
    return 0
  fi
  ensure_kafka || return 1
  KAFKA_DIR=$(mktemp -d /tmp/imcloud-kafka.XXXXXX)
  cat >"$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  local java=(java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    "-Dlog4j2.configurationFile=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka/log4j2.properties"
    -cp "$KAFKA_HOME/libs/*")
  "${java[@]}" kafka.tools.StorageTool format -t "$("${java[@]}" kafka.tools.StorageTool random-uuid)" \
    -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/format.log" 2>&1 ||
    { echo "formatting Kafka's log dir failed:" >&2; cat "$KAFKA_DIR/format.log" >&2; return 1; }
  "${java[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/kafka.log" 2>&1 &
  KAFKA_PID=$!
  # A JVM on two busy cores can take a while.
  WAIT_SECS=90 wait_until "Kafka" "$KAFKA_DIR/kafka.log" grep -q "Kafka Server started" "$KAFKA_DIR/kafka.log" || return 1
}

stop_kafka() {
  if [ -n "$KAFKA_PID" ]; then
    kill "$KAFKA_PID" 2>/dev/null || true
    wait "$KAFKA_PID" 2>/dev/null || true
    rm -rf "$KAFKA_DIR"
    KAFKA_PID=
  fi
}

# nats-server from Debian's packages (the benchmark's comparison target; a NATS service may already run on
# 4222, the benchmark starts its own instance on other ports).
ensure_nats() {
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || apt_install nats-server
  command -v nats-server >/dev/null 2>&1 || export PATH="$PATH:/usr/sbin"
}

# start_cluster BIN LOGDIR: etcd (23791), Kafka (19092), then logic, 2 comets, 2 jobs and 1 api as separate
# processes of BIN, configured only through IMCLOUD_* variables (given to each process, not exported here).
# Ports: api 3111; comet1 ws 3102 / tcp 3101 / grpc 3109 / metrics 9101; comet2 ws 3202 / tcp 3201 /
# grpc 3209 / metrics 9102; logic grpc 3119 / metrics 9103; jobs' metrics 9104, 9105. Sets CLUSTER_PIDS
# (logic, comet1, comet2, job1, job2, api), CLUSTER_SECRET, CLUSTER_API_KEY and CLUSTER_INTERNAL_TOKEN (the
# token every internal gRPC call carries; roles refuse secrets under 32 bytes); stop_cluster stops it all.
CLUSTER_PIDS=()
start_cluster() {
  local bin=$1 logs=$2
  start_etcd 23791 23801
  start_kafka 19092
  mkdir -p "$logs"
  CLUSTER_SECRET=${IMCLOUD_AUTH_SECRET:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  CLUSTER_API_KEY=${IMCLOUD_API_KEY:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  CLUSTER_INTERNAL_TOKEN=${IMCLOUD_INTERNAL_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  CLUSTER_ENV=(IMCLOUD_AUTH_SECRET="$CLUSTER_SECRET" IMCLOUD_API_KEY="$CLUSTER_API_KEY"
    IMCLOUD_INTERNAL_TOKEN="$CLUSTER_INTERNAL_TOKEN"
    IMCLOUD_ETCD_ENDPOINTS="$IMCLOUD_TEST_ETCD_ENDPOINTS" IMCLOUD_KAFKA_BROKERS="$IMCLOUD_TEST_KAFKA_BROKERS"
    IMCLOUD_REDIS_URL="${IMCLOUD_REDIS_URL:-redis://127.0.0.1:6379/}"
    IMCLOUD_REDIS_PREFIX="${IMCLOUD_REDIS_PREFIX:-imcloud-local:}" IMCLOUD_ADVERTISE_HOST=127.0.0.1
    IMCLOUD_DATABASE_URL="${IMCLOUD_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/imcloud_local}")
  cluster_process "$bin" "$logs" logic logic IMCLOUD_LOGIC_GRPC_ADDR=127.0.0.1:3119 IMCLOUD_METRICS_ADDR=127.0.0.1:9103
  wait_until "logic" "$logs/logic.log" curl -fs http://127.0.0.1:9103/healthz || return 1
  cluster_process "$bin" "$logs" comet1 comet IMCLOUD_COMET_WS_ADDR=127.0.0.1:3102 IMCLOUD_COMET_TCP_ADDR=127.0.0.1:3101 \
    IMCLOUD_COMET_GRPC_ADDR=127.0.0.1:3109 IMCLOUD_METRICS_ADDR=127.0.0.1:9101
  cluster_process "$bin" "$logs" comet2 comet IMCLOUD_COMET_WS_ADDR=127.0.0.1:3202 IMCLOUD_COMET_TCP_ADDR=127.0.0.1:3201 \
    IMCLOUD_COMET_GRPC_ADDR=127.0.0.1:3209 IMCLOUD_METRICS_ADDR=127.0.0.1:9102
  cluster_process "$bin" "$logs" job1 job IMCLOUD_METRICS_ADDR=127.0.0.1:9104
  cluster_process "$bin" "$logs" job2 job IMCLOUD_METRICS_ADDR=127.0.0.1:9105
  cluster_process "$bin" "$logs" api api IMCLOUD_API_HTTP_ADDR=127.0.0.1:3111
  local name port
  for name in comet1:9101 comet2:9102 job1:9104 job2:9105 api:3111; do
    port=${name#*:}
    wait_until "${name%:*}" "$logs/${name%:*}.log" curl -fs "http://127.0.0.1:$port/healthz" || return 1
  done
  wait_until comet1 "$logs/comet1.log" port_open 3102 || return 1
  wait_until comet2 "$logs/comet2.log" port_open 3202 || return 1
  # Both jobs in the consumer group, so that no rebalance pauses the first pushes.
  wait_until "job1's partitions" "$logs/job1.log" grep -q "partitions assigned" "$logs/job1.log" || return 1
  wait_until "job2's partitions" "$logs/job2.log" grep -q "partitions assigned" "$logs/job2.log" || return 1
}

cluster_process() {
  local bin=$1 logs=$2 name=$3 role=$4
  shift 4
  env "${CLUSTER_ENV[@]}" IMCLOUD_NODE_ID="$name" "$@" "$bin" "$role" >"$logs/$name.log" 2>&1 &
  CLUSTER_PIDS+=($!)
}

stop_cluster() {
  local pid
  for pid in "${CLUSTER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${CLUSTER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  CLUSTER_PIDS=()
  stop_kafka
  stop_etcd
}
