#!/usr/bin/env bash
# Local infrastructure without Docker: PostgreSQL (Debian's server binaries, run on a
# data folder of our own), a single-node KRaft Kafka broker and Zipkin, the last two run
# from jars that Maven fetches once (versions in pom.xml beside this script).
# The broker listens twice: PLAINTEXT for the services, and SASL_SSL (SCRAM-SHA-512 over TLS,
# a CA of the stack's own) so that tests can connect the way production clients do. Its authorizer
# enforces ACLs on SASL_SSL users other than ctp-local; PLAINTEXT clients may do anything.
#
#   [STACK=dev|test] deploy/local/stack.sh COMMAND
#
# Two stacks, so tests get their own broker and database beside a developer's:
#   dev  (default): PostgreSQL 25432, Kafka 29092 (controller 29093, SASL_SSL 29094), Zipkin 29411
#   test          : PostgreSQL 26432, Kafka 30092 (controller 30093, SASL_SSL 30094), Zipkin 30411
# Each port can be overridden with PG_PORT, KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_SASL_PORT, ZIPKIN_PORT.
#
# Files: .local/cache/{kafka-libs,zipkin} (shared by both stacks), and per stack
# .local/$STACK/{pgdata,kafka-data,logs,run}; .local/ is at the repository root. The SASL_SSL
# listener's CA (ca.pem, what clients trust) and broker keystore are in kafka-data/tls.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: [STACK=dev|test] deploy/local/stack.sh COMMAND

  setup        install PostgreSQL and Chromium (apt-get) if missing; fetch the Kafka and Zipkin jars if missing
  start        setup, then start PostgreSQL, Kafka and Zipkin (leaves running ones alone)
  stop         stop Zipkin, Kafka and PostgreSQL
  status       say which components run (exit 0 only if all three do)
  env          print export lines for the stack's ports and URLs
  clean        stop, then delete .local/$STACK (keeps the jar cache)
  kafka-start  start only Kafka
  kafka-stop   stop only Kafka (SIGTERM, SIGKILL after 30 s)
  kafka-kill   SIGKILL the broker, as a crash would
  kafka-users NAME=PASSWORD...
               add SCRAM-SHA-512 users of the SASL_SSL listener, or set their passwords (Kafka must run;
               users other than ctp-local may do only what ACLs grant them)
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
POM=$HERE/pom.xml
LOG4J_CONFIG=$HERE/log4j2.properties

LOCAL_DIR=$ROOT/.local
CACHE_DIR=$LOCAL_DIR/cache
KAFKA_LIBS=$CACHE_DIR/kafka-libs
ZIPKIN_JAR=$CACHE_DIR/zipkin/zipkin.jar

# Ports, in this order: PostgreSQL, Kafka, Kafka controller, Zipkin, Kafka SASL_SSL.
DEV_PORTS=(25432 29092 29093 29411 29094)
TEST_PORTS=(26432 30092 30093 30411 30094)
STACK=${STACK:-dev}
case $STACK in
  dev) ports=("${DEV_PORTS[@]}") other_stack=test other_ports=("${TEST_PORTS[@]}") ;;
  test) ports=("${TEST_PORTS[@]}") other_stack=dev other_ports=("${DEV_PORTS[@]}") ;;
  *) echo "STACK must be dev or test, not '$STACK'" >&2; exit 2 ;;
esac
PG_PORT=${PG_PORT:-${ports[0]}}
KAFKA_PORT=${KAFKA_PORT:-${ports[1]}}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-${ports[2]}}
ZIPKIN_PORT=${ZIPKIN_PORT:-${ports[3]}}
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-${ports[4]}}

# 'env' exports PG_PORT, which is also an override here: after eval-ing one stack's env,
# the other stack would silently use (and report) the first one's database.
for port in "$PG_PORT" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$ZIPKIN_PORT" "$KAFKA_SASL_PORT"; do
  for taken in "${other_ports[@]}"; do
    if [[ $port == "$taken" ]]; then
      echo "[$STACK] ERROR: port $port is the $other_stack stack's; probably PG_PORT (or another *_PORT) was" \
        "left in this shell by eval \"\$(STACK=$other_stack ... env)\": unset it." >&2
      exit 2
    fi
  done
done

DATA_DIR=$LOCAL_DIR/$STACK
KAFKA_DATA=$DATA_DIR/kafka-data
KAFKA_LOG_DIRS=$KAFKA_DATA/log-dirs   # Kafka's log.dirs: partitions and the KRaft metadata log
LOG_DIR=$DATA_DIR/logs
RUN_DIR=$DATA_DIR/run

# The SASL_SSL listener. Development-only credentials, written here on purpose like the database roles'
# passwords: they guard a broker on 127.0.0.1 that also listens in PLAINTEXT. Never use them anywhere else.
KAFKA_SASL_USERNAME=ctp-local
KAFKA_SASL_PASSWORD=ctp-local-dev-only
KAFKA_KEYSTORE_PASSWORD=ctp-local-dev-only
KAFKA_TLS_DIR=$KAFKA_DATA/tls
KAFKA_CA_PEM=$KAFKA_TLS_DIR/ca.pem            # what clients verify the broker against
KAFKA_KEYSTORE=$KAFKA_TLS_DIR/broker.p12      # the broker's key and certificate chain (PKCS12)
KAFKA_SCRAM="SCRAM-SHA-512=[name=$KAFKA_SASL_USERNAME,password=$KAFKA_SASL_PASSWORD]"
# The credential the broker's metadata holds, as a hash: changing the password above makes the next start set it.
KAFKA_SCRAM_STAMP=$KAFKA_DATA/scram.sha256

# Every folder from / down to the repository lets others through?
others_can_reach() {
  local dir=$1
  while [[ $dir != / ]]; do
    [[ -n $(find "$dir" -maxdepth 0 -perm -o+x 2>/dev/null) ]] || return 1
    dir=$(dirname "$dir")
  done
}

# As root, PostgreSQL runs as the postgres user, which must reach its folders. A clone under a private folder
# (mktemp -d makes mode 700) is out of its reach: then its folders live under its own home, one set per clone.
if [[ $EUID -eq 0 ]] && ! others_can_reach "$ROOT"; then
  PG_HOME=/var/lib/postgresql/childrens-teams/$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)/$STACK
  PGDATA_DIR=$PG_HOME/pgdata
  PG_SOCKET_DIR=$PG_HOME/socket
  PG_LOG=$PG_HOME/postgresql.log
else
  PG_HOME=""
  PGDATA_DIR=$DATA_DIR/pgdata
  # Owned by the postgres user and mode 700: that is what keeps "trust" on the socket local to us.
  PG_SOCKET_DIR=$RUN_DIR/pg
  PG_LOG=$LOG_DIR/postgresql.log
fi

DB_NAME=childrensteams
SERVICES=(referral panel assignment plans hub reporting)

JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
KEYTOOL=${JAVA_HOME:+$JAVA_HOME/bin/}keytool
# Put on every java command line we start, so a pid file is trusted only if the pid
# still belongs to this stack's process (pids get reused; two stacks run side by side).
JAVA_MARKER=-Dlocal.stack.dir=$DATA_DIR

log() { printf '[%s] %s\n' "$STACK" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$STACK" "$*" >&2; exit 1; }
is_root() { [[ $EUID -eq 0 ]]; }

# ---------------------------------------------------------------- processes

alive() { [[ -e /proc/$1 ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# Prints the pid of component $1 if it runs, else fails.
pid_of() {
  local file=$RUN_DIR/$1.pid pid
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$JAVA_MARKER " || return 1
  echo "$pid"
}

# start_bg NAME OUTFILE COMMAND...: runs COMMAND detached, pid in run/NAME.pid.
start_bg() {
  local name=$1 out=$2 pidfile=$RUN_DIR/$1.pid
  shift 2
  rm -f "$pidfile"
  # setsid: the service must outlive the shell, terminal or test runner that started it.
  # The inner bash writes its own pid and then becomes the command, so the pid is java's.
  # shellcheck disable=SC2016  # $$ and $@ belong to the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >"$out" 2>&1 </dev/null 8>&- &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $pidfile ]] && return 0
    sleep 0.05
  done
  die "$name did not start (no pid file); see $out"
}

# stop_pid NAME LABEL
stop_pid() {
  local name=$1 label=$2 pid i
  if ! pid=$(pid_of "$name"); then
    log "$label: not running"
    rm -f "$RUN_DIR/$name.pid"
    return 0
  fi
  log "$label: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$label: still running after 30 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.1; done
  fi
  rm -f "$RUN_DIR/$name.pid"
  log "$label: stopped"
}

# True if something accepts connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A process just stopped or killed may hold its sockets a moment longer than its pid.
require_free_port() {
  local i
  for ((i = 0; i < 50; i++)); do
    port_busy "$2" || return 0
    sleep 0.2
  done
  die "$1: port $2 is already taken by another program (another stack with the same ports?)."
}

fail_with_log() {
  local what=$1 file=$2
  printf '[%s] ERROR: %s. Last lines of %s:\n' "$STACK" "$what" "$file" >&2
  tail -n 40 "$file" >&2 || true
  exit 1
}

# ---------------------------------------------------------------- setup

# Server binaries of the version the data folder was made with, else the newest installed.
pg_bin() {
  local version
  if [[ -f $PGDATA_DIR/PG_VERSION ]]; then
    version=$(<"$PGDATA_DIR/PG_VERSION")
    if [[ -x /usr/lib/postgresql/$version/bin/initdb ]]; then
      echo "/usr/lib/postgresql/$version/bin"
      return 0
    fi
  fi
  local initdb
  initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
  [[ -x $initdb ]] || return 1
  dirname "$initdb"
}

install_postgresql() {
  pg_bin >/dev/null && return 0
  is_root || die "PostgreSQL server binaries are missing: run 'sudo apt-get install -y postgresql', or run this as root."
  log "Installing PostgreSQL from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have no package lists yet; only then is the update worth its time.
  if ! apt-get install -y postgresql; then
    apt-get update
    apt-get install -y postgresql
  fi
  pg_bin >/dev/null || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb was found"
}

# fetch_one NAME GOAL PROPERTY: one cache folder, refetched when pom.xml changes.
fetch_one() {
  local name=$1 goal=$2 property=$3
  local dest=$CACHE_DIR/$name stamp
  stamp=$(sha256sum "$POM" | cut -d' ' -f1)
  if [[ -f $dest/.pom-sha256 && $(<"$dest/.pom-sha256") == "$stamp" ]]; then
    return 0
  fi
  log "Fetching $name with Maven (first time or pom.xml changed; can take a few minutes)"
  local tmp=$dest.partial mvn_log=$CACHE_DIR/maven-$name.log start=$SECONDS
  rm -rf "$tmp"
  # Into a side folder first, so an interrupted download never looks complete.
  # Maven's output goes to a file: even -q -B prints colour escapes.
  if ! mvn -q -B -f "$POM" "$goal" "-D$property=$tmp" >"$mvn_log" 2>&1; then
    rm -rf "$tmp"
    fail_with_log "Maven could not fetch $name" "$mvn_log"
  fi
  echo "$stamp" >"$tmp/.pom-sha256"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  log "Fetched $name in $((SECONDS - start)) s"
}

fetch_jars() {
  mkdir -p "$CACHE_DIR"
  # Both stacks may be set up at once and share the cache: one downloads, the other waits.
  (
    flock 9
    fetch_one kafka-libs dependency:copy-dependencies@kafka-libs kafka.libs.dir
    fetch_one zipkin dependency:copy@zipkin zipkin.dir
  ) 9>"$CACHE_DIR/.fetch.lock"
}

# The hub console's browser tests drive Debian's Chromium (Playwright with executable_path=/usr/bin/chromium).
install_chromium() {
  [[ -x /usr/bin/chromium ]] && return 0
  if ! is_root; then
    log "Chromium is missing (the hub console's browser tests need it): run 'sudo apt-get install -y chromium'"
    return 0
  fi
  log "Installing Chromium from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y chromium; then
    apt-get update
    apt-get install -y chromium
  fi
  [[ -x /usr/bin/chromium ]] || die "apt-get installed chromium but there is no /usr/bin/chromium"
}

cmd_setup() {
  install_postgresql
  install_chromium
  fetch_jars
}

# ---------------------------------------------------------------- PostgreSQL

# As root, PostgreSQL refuses to run: its tools run as the postgres OS user instead.
as_pg() {
  if is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

pg_running() {
  [[ -f $PGDATA_DIR/PG_VERSION ]] && as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

# From the server's own pid file, which also records the port it really listens on.
pg_pid_port() {
  sed -n '1s/.*/(pid &)/p; 4s/^/on 127.0.0.1:/p' "$PGDATA_DIR/postmaster.pid" | paste -sd' '
}

# psql as the bootstrap superuser, over the stack's private unix socket.
pg_admin_psql() {
  as_pg "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres "$@"
}

pg_prepare_folders() {
  mkdir -p "$DATA_DIR" "$LOG_DIR" "$RUN_DIR" "$PG_SOCKET_DIR" "$PGDATA_DIR"
  touch "$PG_LOG"
  chmod 700 "$PG_SOCKET_DIR" "$PGDATA_DIR"
  if is_root; then
    [[ -n $PG_HOME ]] && chown postgres: "$PG_HOME"
    chown postgres: "$PG_SOCKET_DIR" "$PGDATA_DIR" "$PG_LOG"
    if ! runuser -u postgres -- test -x "$PGDATA_DIR"; then
      die "the postgres user cannot reach $PGDATA_DIR: every folder above it needs o+x"
    fi
  fi
  # The kernel limits a unix socket path to 107 bytes.
  if ((${#PG_SOCKET_DIR} + 20 > 107)); then
    die "repository path too long for PostgreSQL's unix socket ($PG_SOCKET_DIR)"
  fi
}

pg_start() {
  install_postgresql
  local bin
  bin=$(pg_bin)
  pg_prepare_folders

  if [[ ! -f $PGDATA_DIR/PG_VERSION ]]; then
    log "PostgreSQL: initdb in $PGDATA_DIR"
    # Socket: trust (only we can reach the socket folder). TCP: passwords (scram).
    as_pg "$bin/initdb" -D "$PGDATA_DIR" -U postgres --encoding=UTF8 --no-locale \
      --auth-local=trust --auth-host=scram-sha-256 >"$LOG_DIR/initdb.log" 2>&1 \
      || fail_with_log "initdb failed" "$LOG_DIR/initdb.log"
    echo "include_if_exists = 'local-stack.conf'" | as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
  fi

  if pg_running; then
    log "PostgreSQL: already running $(pg_pid_port)"
  else
    require_free_port PostgreSQL "$PG_PORT"
    # Rewritten at each start so that PG_PORT overrides apply.
    as_pg tee "$PGDATA_DIR/local-stack.conf" >/dev/null <<EOF
# Written by deploy/local/stack.sh at each start; edits are lost.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
EOF
    log "PostgreSQL: starting on 127.0.0.1:$PG_PORT"
    as_pg "$bin/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 60 start >/dev/null 8>&- \
      || fail_with_log "PostgreSQL did not start" "$PG_LOG"
  fi
  head -n 1 "$PGDATA_DIR/postmaster.pid" >"$RUN_DIR/postgres.pid"

  local i
  for ((i = 0; i < 60; i++)); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.5
  done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" \
    || fail_with_log "PostgreSQL does not answer on 127.0.0.1:$PG_PORT" "$PG_LOG"

  pg_provision
  log "PostgreSQL: ready, database $DB_NAME with roles/schemas ${SERVICES[*]} and ctp_admin"
}

# Idempotent: safe on every start, and resets the passwords to the documented ones.
pg_provision() {
  local svc
  {
    echo "SET client_min_messages = warning;"
    echo "SELECT 'CREATE ROLE ctp_admin' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ctp_admin')\\gexec"
    echo "ALTER ROLE ctp_admin SUPERUSER LOGIN PASSWORD 'ctp_admin';"
    for svc in "${SERVICES[@]}"; do
      echo "SELECT 'CREATE ROLE $svc' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$svc')\\gexec"
      echo "ALTER ROLE $svc LOGIN PASSWORD '$svc';"
    done
    echo "SELECT 'CREATE DATABASE $DB_NAME OWNER ctp_admin' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME')\\gexec"
  } | pg_admin_psql -d postgres

  # Schema named like its role: the default search_path ("$user", public) then finds it.
  {
    echo "SET client_min_messages = warning;"
    for svc in "${SERVICES[@]}"; do
      echo "CREATE SCHEMA IF NOT EXISTS $svc AUTHORIZATION $svc;"
      echo "ALTER SCHEMA $svc OWNER TO $svc;"
    done
  } | pg_admin_psql -d "$DB_NAME"
}

pg_stop() {
  if pg_running; then
    log "PostgreSQL: stopping"
    as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null
    log "PostgreSQL: stopped"
  else
    log "PostgreSQL: not running"
  fi
  rm -f "$RUN_DIR/postgres.pid"
}

# ---------------------------------------------------------------- Kafka

kafka_java() {
  "$JAVA" "$JAVA_MARKER" -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$LOG_DIR" \
    -cp "$KAFKA_LIBS/*" "$@"
}

kafka_write_config() {
  # Rewritten at each start so that port overrides apply.
  cat >"$KAFKA_DATA/server.properties" <<EOF
# Written by deploy/local/stack.sh at each start; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$KAFKA_LOG_DIRS

# SASL_SSL as production has it (SCRAM-SHA-512 over TLS), for clients that should connect that way.
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_KEYSTORE
listener.name.sasl_ssl.ssl.keystore.password=$KAFKA_KEYSTORE_PASSWORD

# ACLs as production enforces them, for the SASL_SSL users tests create (kafka-users) and grant rights to. Everything
# on PLAINTEXT (the services, the tests, the controller and the broker's own traffic) is User:ANONYMOUS, and ctp-local
# is the SASL_SSL admin: both super users, so nothing that ran before the authorizer is refused anything. Anyone else
# gets only what an ACL allows (allow.everyone.if.no.acl.found keeps its default, false, as in production).
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:$KAFKA_SASL_USERNAME

# One node: every internal topic has a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Topics are created on purpose by the code that owns them, never by a typo.
auto.create.topics.enable=false
num.partitions=3
# Few internal partitions: the first consumer group / transaction is ready sooner.
offsets.topic.num.partitions=3
transaction.state.log.num.partitions=3
# Consumers in tests join at once instead of waiting 3 s for others.
group.initial.rebalance.delay.ms=0
# After a kafka-kill, the new broker cannot register until the killed one's session has
# expired (default 9 s): shorter, so fault tests get their broker back sooner.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
EOF
}

# Once per stack: a CA of its own and the broker's certificate, signed by it, for 127.0.0.1 and localhost. keytool
# comes with the JDK the broker needs anyway. About 4 s (seven JVMs), the first time only.
kafka_tls_once() {
  [[ -s $KAFKA_CA_PEM && -s $KAFKA_KEYSTORE ]] && return 0
  log "Kafka: making the SASL_SSL listener's CA and certificate in $KAFKA_TLS_DIR"
  # Made in a side folder, so an interrupted run never leaves half a keystore that looks complete.
  local tmp=$KAFKA_TLS_DIR.partial out=$LOG_DIR/kafka-tls.out
  local key=(-keyalg EC -groupname secp256r1 -validity 3650 -storetype PKCS12 -storepass "$KAFKA_KEYSTORE_PASSWORD")
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # The extensions are those a strict verifier (Python 3.13's default X509_STRICT) asks of a CA and a server.
  if ! (
    cd "$tmp"
    "$KEYTOOL" -genkeypair -keystore ca.p12 -alias ca "${key[@]}" -dname "CN=Children's Teams local CA ($STACK)" \
      -ext bc:c=ca:true -ext ku:c=keyCertSign,cRLSign
    "$KEYTOOL" -exportcert -keystore ca.p12 -alias ca -storepass "$KAFKA_KEYSTORE_PASSWORD" -rfc -file ca.pem
    "$KEYTOOL" -genkeypair -keystore broker.p12 -alias broker "${key[@]}" -dname "CN=localhost"
    "$KEYTOOL" -certreq -keystore broker.p12 -alias broker -storepass "$KAFKA_KEYSTORE_PASSWORD" -file broker.csr
    "$KEYTOOL" -gencert -keystore ca.p12 -alias ca -storepass "$KAFKA_KEYSTORE_PASSWORD" -validity 3650 \
      -infile broker.csr -outfile broker.pem -rfc \
      -ext san=ip:127.0.0.1,dns:localhost -ext ku:c=digitalSignature,keyEncipherment -ext eku=serverAuth
    # The CA first, so that the signed certificate goes in with its chain.
    "$KEYTOOL" -importcert -keystore broker.p12 -alias ca -storepass "$KAFKA_KEYSTORE_PASSWORD" -file ca.pem -noprompt
    "$KEYTOOL" -importcert -keystore broker.p12 -alias broker -storepass "$KAFKA_KEYSTORE_PASSWORD" -file broker.pem
    # Nothing signs anything again: the CA's private key is not kept.
    rm ca.p12 broker.csr broker.pem
  ) >"$out" 2>&1 </dev/null; then
    rm -rf "$tmp"
    fail_with_log "keytool could not make the SASL_SSL listener's certificates" "$out"
  fi
  rm -rf "$KAFKA_TLS_DIR"
  mv "$tmp" "$KAFKA_TLS_DIR"
}

kafka_scram_stamp() { printf '%s' "$KAFKA_SCRAM" | sha256sum | cut -d' ' -f1; }

# kafka_scram_users NAME=PASSWORD...: adds each SCRAM-SHA-512 user, or replaces its password, in one run. Kafka's jars
# have no kafka-configs tool (it lives in kafka-tools), so a few lines of Java on the admin client (over PLAINTEXT),
# which the JDK runs from source: about 3 s however many users.
kafka_scram_users() {
  local source=$RUN_DIR/AddScramUsers.java out=$LOG_DIR/kafka-scram.out
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  cat >"$source" <<'EOF'
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;

// args: bootstrap, then name=password pairs. Adds each user's SCRAM-SHA-512 credential, or replaces it.
public class AddScramUsers {
    public static void main(String[] args) throws Exception {
        var info = new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096);
        List<UserScramCredentialAlteration> users = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            String[] user = args[i].split("=", 2);
            users.add(new UserScramCredentialUpsertion(user[0], info, user[1]));
        }
        try (Admin admin = Admin.create(Map.<String, Object>of("bootstrap.servers", args[0]))) {
            admin.alterUserScramCredentials(users).all().get();
        }
    }
}
EOF
  kafka_java "$source" "127.0.0.1:$KAFKA_PORT" "$@" >"$out" 2>&1 </dev/null \
    || fail_with_log "could not add Kafka's SCRAM users (Java run from source needs a JDK)" "$out"
  rm -f "$source"
}

# A stack formatted with this script got its SCRAM user from StorageTool; one formatted before the SASL_SSL
# listener existed (or after a password change) gets it here, once, from the running broker.
kafka_scram_user_once() {
  [[ -f $KAFKA_SCRAM_STAMP && $(<"$KAFKA_SCRAM_STAMP") == "$(kafka_scram_stamp)" ]] && return 0
  log "Kafka: adding the SCRAM-SHA-512 user $KAFKA_SASL_USERNAME"
  kafka_scram_users "$KAFKA_SASL_USERNAME=$KAFKA_SASL_PASSWORD"
  kafka_scram_stamp >"$KAFKA_SCRAM_STAMP"
}

# The kafka-users command: users for tests of the ACLs (tests/integration/test_kafka_acls.py).
cmd_kafka_users() {
  (($# > 0)) || die "kafka-users needs NAME=PASSWORD arguments"
  local user
  for user in "$@"; do
    [[ $user =~ ^[^=]+=.+$ ]] || die "kafka-users: '${user%%=*}=...' is not NAME=PASSWORD"
  done
  pid_of kafka >/dev/null || die "Kafka is not running: 'STACK=$STACK $0 kafka-start' first"
  kafka_scram_users "$@"
  log "Kafka: SCRAM-SHA-512 users set: $(printf '%s\n' "${@%%=*}" | paste -sd' ')"
}

# Format only once: the cluster id lives in kafka-data/cluster.id, the formatted state in log-dirs.
kafka_format_once() {
  [[ -f $KAFKA_LOG_DIRS/meta.properties ]] && return 0
  if [[ ! -s $KAFKA_DATA/cluster.id ]]; then
    kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$KAFKA_DATA/cluster.id" \
      || die "could not run Kafka's StorageTool (java and $KAFKA_LIBS)"
  fi
  local id
  id=$(<"$KAFKA_DATA/cluster.id")
  [[ $id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "bad Kafka cluster id '$id' in $KAFKA_DATA/cluster.id"
  log "Kafka: formatting storage (cluster id $id)"
  # --standalone pairs with controller.quorum.bootstrap.servers and records this node as
  # the only voter. (A later KAFKA_CONTROLLER_PORT change is fine: 4.4 updates the voter.)
  # --add-scram puts the SASL_SSL user in the first metadata, so a new stack needs no extra step for it.
  kafka_java kafka.tools.StorageTool format -t "$id" -c "$KAFKA_DATA/server.properties" \
    --standalone --ignore-formatted --add-scram "$KAFKA_SCRAM" >"$LOG_DIR/kafka-format.out" 2>&1 \
    || fail_with_log "Kafka storage format failed" "$LOG_DIR/kafka-format.out"
  kafka_scram_stamp >"$KAFKA_SCRAM_STAMP"
}

kafka_start() {
  fetch_jars
  local pid
  if pid=$(pid_of kafka); then
    log "Kafka: already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
    if ! port_busy "$KAFKA_SASL_PORT"; then
      log "Kafka: WARNING: nothing listens on the SASL_SSL port $KAFKA_SASL_PORT (a broker started by an older" \
        "stack.sh?): 'STACK=$STACK $0 kafka-stop' and start again to get it"
    fi
    # server.properties is rewritten only when a broker starts, so it says how the running one was started.
    if ! grep -q '^authorizer.class.name=' "$KAFKA_DATA/server.properties" 2>/dev/null; then
      log "Kafka: WARNING: the running broker enforces no ACLs (started by an older stack.sh?):" \
        "'STACK=$STACK $0 kafka-stop' and start again to get its authorizer"
    fi
    kafka_scram_user_once
    return 0
  fi
  mkdir -p "$KAFKA_DATA" "$LOG_DIR" "$RUN_DIR"
  require_free_port Kafka "$KAFKA_PORT"
  require_free_port "Kafka controller" "$KAFKA_CONTROLLER_PORT"
  require_free_port "Kafka SASL_SSL" "$KAFKA_SASL_PORT"
  kafka_tls_once
  kafka_write_config
  kafka_format_once

  log "Kafka: starting on 127.0.0.1:$KAFKA_PORT (SASL_SSL $KAFKA_SASL_PORT)"
  local out=$LOG_DIR/kafka.out
  start_bg kafka "$out" "$JAVA" -Xmx512m -XX:+ExitOnOutOfMemoryError "$JAVA_MARKER" \
    -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$LOG_DIR" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DATA/server.properties"
  pid=$(<"$RUN_DIR/kafka.pid")

  # kafka.out is new for each start, so an old "started" line cannot fool us.
  local deadline=$((SECONDS + 90))
  until grep -q 'Kafka Server started' "$out"; do
    if ! alive "$pid"; then
      rm -f "$RUN_DIR/kafka.pid"
      fail_with_log "Kafka exited while starting" "$out"
    fi
    if ((SECONDS >= deadline)); then
      stop_pid kafka Kafka >/dev/null
      fail_with_log "Kafka was not ready after 90 s (stopped it)" "$out"
    fi
    sleep 0.5
  done
  kafka_scram_user_once
  log "Kafka: ready (pid $pid)"
}

kafka_kill() {
  local pid
  if pid=$(pid_of kafka); then
    kill -KILL "$pid"
    while alive "$pid"; do sleep 0.1; done
    log "Kafka: killed (pid $pid)"
  else
    log "Kafka: not running"
  fi
  rm -f "$RUN_DIR/kafka.pid"
}

# ---------------------------------------------------------------- Zipkin

zipkin_start() {
  fetch_jars
  local pid
  if pid=$(pid_of zipkin); then
    log "Zipkin: already running (pid $pid) on 127.0.0.1:$ZIPKIN_PORT"
    return 0
  fi
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  require_free_port Zipkin "$ZIPKIN_PORT"
  log "Zipkin: starting on 127.0.0.1:$ZIPKIN_PORT"
  local out=$LOG_DIR/zipkin.out
  # The exec jar starts a Kafka collector when it sees KAFKA_BOOTSTRAP_SERVERS (an app's
  # environment may well have it); this Zipkin takes spans over HTTP only, kept in memory.
  # It listens through Armeria's port list, on every interface unless told an ip; a
  # command-line list replaces the jar's whole list, hence port and protocol again.
  start_bg zipkin "$out" env -u KAFKA_BOOTSTRAP_SERVERS \
    "$JAVA" -Xms256m -Xmx768m "$JAVA_MARKER" -jar "$ZIPKIN_JAR" --server.port="$ZIPKIN_PORT" \
    --armeria.ports[0].ip=127.0.0.1 --armeria.ports[0].port="$ZIPKIN_PORT" --armeria.ports[0].protocols[0]=http
  pid=$(<"$RUN_DIR/zipkin.pid")

  local deadline=$((SECONDS + 90))
  until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$ZIPKIN_PORT/health" 2>/dev/null; do
    if ! alive "$pid"; then
      rm -f "$RUN_DIR/zipkin.pid"
      fail_with_log "Zipkin exited while starting" "$out"
    fi
    if ((SECONDS >= deadline)); then
      stop_pid zipkin Zipkin >/dev/null
      fail_with_log "Zipkin /health did not answer within 90 s (stopped it)" "$out"
    fi
    sleep 0.5
  done
  log "Zipkin: ready (pid $pid)"
}

# ---------------------------------------------------------------- commands

cmd_env() {
  cat <<EOF
export PG_PORT=$PG_PORT
export KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export KAFKA_SASL_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_PORT
export KAFKA_SASL_USERNAME=$KAFKA_SASL_USERNAME
export KAFKA_SASL_PASSWORD=$KAFKA_SASL_PASSWORD
export KAFKA_SSL_CAFILE=$(printf '%q' "$KAFKA_CA_PEM")
export ZIPKIN_URL=http://127.0.0.1:$ZIPKIN_PORT
export DATABASE_ADMIN_URL=postgresql://ctp_admin:ctp_admin@127.0.0.1:$PG_PORT/$DB_NAME
EOF
}

cmd_start() {
  local start=$SECONDS
  cmd_setup
  pg_start
  kafka_start
  zipkin_start
  cat <<EOF

Stack '$STACK' is up (started in $((SECONDS - start)) s).
  PostgreSQL  127.0.0.1:$PG_PORT  database $DB_NAME
              roles (password = name): ${SERVICES[*]}, ctp_admin (superuser)
              data $PGDATA_DIR
  Kafka       127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT), data $KAFKA_DATA
              SASL_SSL 127.0.0.1:$KAFKA_SASL_PORT: SCRAM-SHA-512 user $KAFKA_SASL_USERNAME (password $KAFKA_SASL_PASSWORD),
              a super user; ACLs bind the users that 'kafka-users' adds. CA $KAFKA_CA_PEM
  Zipkin      http://127.0.0.1:$ZIPKIN_PORT/zipkin/
  Logs        $LOG_DIR
  Pid files   $RUN_DIR
Environment (eval "\$(STACK=$STACK $0 env)"):
EOF
  cmd_env | sed 's/^/  /'
}

cmd_stop() {
  stop_pid zipkin Zipkin
  stop_pid kafka Kafka
  pg_stop
}

cmd_status() {
  local pid all=0
  if pg_running; then
    log "PostgreSQL: running $(pg_pid_port)"
  else
    log "PostgreSQL: stopped"; all=3
  fi
  if pid=$(pid_of kafka); then
    log "Kafka: running (pid $pid) on 127.0.0.1:$KAFKA_PORT, SASL_SSL on 127.0.0.1:$KAFKA_SASL_PORT"
  else
    log "Kafka: stopped"; all=3
  fi
  if pid=$(pid_of zipkin); then
    log "Zipkin: running (pid $pid) on 127.0.0.1:$ZIPKIN_PORT"
  else
    log "Zipkin: stopped"; all=3
  fi
  return "$all"
}

cmd_clean() {
  cmd_stop
  log "Removing $DATA_DIR"
  rm -rf -- "$DATA_DIR"
  if [[ -n $PG_HOME ]]; then
    log "Removing $PG_HOME"
    rm -rf -- "$PG_HOME"
  fi
}

# One command at a time per stack (say a test fixture and a developer both run 'start').
# Daemons are started with this descriptor closed, or they would hold the lock forever.
lock_stack() {
  mkdir -p "$LOCAL_DIR"
  exec 8>"$LOCAL_DIR/$STACK.lock"
  flock 8
}

case ${1:-} in
  setup | start | stop | clean | kafka-start | kafka-stop | kafka-kill | kafka-users) lock_stack ;;
esac

case ${1:-} in
  setup) cmd_setup ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  clean) cmd_clean ;;
  kafka-start) kafka_start ;;
  kafka-stop) stop_pid kafka Kafka ;;
  kafka-kill) kafka_kill ;;
  kafka-users) shift; cmd_kafka_users "$@" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
