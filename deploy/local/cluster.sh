#!/usr/bin/env bash
# A three-broker Kafka cluster (KRaft; each node broker and controller) on this machine, as production runs Kafka:
# replication factor 3, min.insync.replicas=2, unclean leader election off. Used by the replication test
# (`make cluster-test`); the same jars as the local stack (deploy/local/stack.sh fetches them).
#
#   deploy/local/cluster.sh COMMAND
#
#   start          format (once) and start the three nodes; wait until all have started
#   stop           stop the three nodes (SIGTERM, SIGKILL after 30 s)
#   kill N         SIGKILL node N (1-3), as a crash would
#   start-node N   start node N again and wait until it has started
#   status         which nodes run (exit 0 only if all three do)
#   env            export lines: KAFKA_BOOTSTRAP (all three brokers) and KAFKA_REPLICATION=3
#   clean          stop, then delete .local/cluster
#
# Node N: broker 127.0.0.1:3209N, controller 127.0.0.1:3219N (below the ephemeral port range); data, logs and pid
# files under .local/cluster/node-N.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KAFKA_LIBS=$ROOT/.local/cache/kafka-libs
LOG4J_CONFIG=$HERE/log4j2.properties
DIR=$ROOT/.local/cluster
NODES=(1 2 3)
BOOTSTRAP=127.0.0.1:32091,127.0.0.1:32092,127.0.0.1:32093
VOTERS=1@127.0.0.1:32191,2@127.0.0.1:32192,3@127.0.0.1:32193
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
# On every java command line we start, so a pid file is trusted only while the pid is still our node.
marker() { echo "-Dlocal.cluster.node=$DIR/node-$1"; }

log() { printf '[cluster] %s\n' "$*"; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }
alive() { [[ -e /proc/$1 ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

pid_of() {
  local file=$DIR/node-$1/kafka.pid pid
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(marker "$1") " || return 1
  echo "$pid"
}

write_config() {
  local n=$1 node=$DIR/node-$1
  cat >"$node/server.properties" <<EOF
# Written by deploy/local/cluster.sh at each start; edits are lost.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$VOTERS
listeners=PLAINTEXT://127.0.0.1:3209$n,CONTROLLER://127.0.0.1:3219$n
advertised.listeners=PLAINTEXT://127.0.0.1:3209$n,CONTROLLER://127.0.0.1:3219$n
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$node/log-dirs

# What production runs: an acknowledged write (acks=all) is on at least two brokers, and a replica that missed
# writes never becomes leader.
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2

auto.create.topics.enable=false
offsets.topic.num.partitions=6
group.initial.rebalance.delay.ms=0
# A killed broker's session expires sooner than the default 9 s, so leadership moves on sooner.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
EOF
}

format_once() {
  local n=$1 node=$DIR/node-$1
  [[ -f $node/log-dirs/meta.properties ]] && return 0
  if [[ ! -s $DIR/cluster.id ]]; then
    "$JAVA" -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$node/logs" -cp "$KAFKA_LIBS/*" \
      kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$DIR/cluster.id"
  fi
  "$JAVA" -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$node/logs" -cp "$KAFKA_LIBS/*" \
    kafka.tools.StorageTool format \
    -t "$(<"$DIR/cluster.id")" -c "$node/server.properties" --ignore-formatted >"$node/format.out" 2>&1 \
    || { cat "$node/format.out" >&2; die "formatting node $n failed"; }
}

launch() {
  local n=$1 node=$DIR/node-$1
  if pid_of "$n" >/dev/null; then
    log "node $n: already running"
    return 0
  fi
  mkdir -p "$node/logs"
  write_config "$n"
  format_once "$n"
  rm -f "$node/kafka.pid"
  # shellcheck disable=SC2016  # $$ and $@ belong to the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$node/kafka.pid" "$JAVA" -Xmx384m -XX:+ExitOnOutOfMemoryError \
    "$(marker "$n")" -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$node/logs" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$node/server.properties" >"$node/kafka.out" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 100; i++)); do [[ -s $node/kafka.pid ]] && return 0; sleep 0.05; done
  die "node $n did not start"
}

wait_started() {
  local n=$1 node=$DIR/node-$1 deadline=$((SECONDS + 120)) pid
  until grep -q 'Kafka Server started' "$node/kafka.out"; do
    pid=$(<"$node/kafka.pid")
    alive "$pid" || { tail -n 40 "$node/kafka.out" >&2; die "node $n exited while starting"; }
    ((SECONDS < deadline)) || { tail -n 40 "$node/kafka.out" >&2; die "node $n not started after 120 s"; }
    sleep 0.5
  done
  log "node $n: started (broker 127.0.0.1:3209$n)"
}

stop_node() {
  local n=$1 pid
  pid=$(pid_of "$n") || return 0
  kill -TERM "$pid"
  local deadline=$((SECONDS + 30))
  while alive "$pid"; do
    ((SECONDS < deadline)) || { kill -KILL "$pid"; }
    sleep 0.2
  done
  log "node $n: stopped"
}

node_arg() {
  [[ ${1:-} =~ ^[123]$ ]] || die "which node? 1, 2 or 3"
  echo "$1"
}

case ${1:-} in
  start)
    [[ -d $KAFKA_LIBS ]] || "$HERE/stack.sh" setup
    mkdir -p "$DIR"
    # Every node starts before any is waited for: a controller quorum needs two of three voters up.
    for n in "${NODES[@]}"; do launch "$n"; done
    for n in "${NODES[@]}"; do wait_started "$n"; done
    ;;
  stop) for n in "${NODES[@]}"; do stop_node "$n"; done ;;
  kill)
    n=$(node_arg "${2:-}")
    if pid=$(pid_of "$n"); then
      kill -KILL "$pid"
      while alive "$pid"; do sleep 0.1; done
      log "node $n: killed (pid $pid)"
    fi
    ;;
  start-node)
    n=$(node_arg "${2:-}")
    launch "$n"
    wait_started "$n"
    ;;
  status)
    down=0
    for n in "${NODES[@]}"; do
      if pid=$(pid_of "$n"); then log "node $n: running (pid $pid)"; else log "node $n: stopped"; down=1; fi
    done
    exit $down
    ;;
  env)
    echo "export KAFKA_BOOTSTRAP=$BOOTSTRAP"
    echo "export KAFKA_REPLICATION=3"
    ;;
  clean)
    for n in "${NODES[@]}"; do stop_node "$n"; done
    rm -rf "$DIR"
    log "removed $DIR"
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
