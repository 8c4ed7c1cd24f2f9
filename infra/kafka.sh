#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller in one JVM) for development and tests.
# Several instances can run at once: KAFKA_PORT selects the instance (pid/conf/log/data named after it).
#
# Usage: infra/kafka.sh {install|start|stop [--all]|kill|restart|status [--all]|reset|topics ARGS...|ca-file|help}
#   install   fetch the Kafka jars from Maven Central (mvn, infra/kafka/pom.xml) into the cache
#   start     install if needed, format storage once, start the broker, wait until it serves requests
#   stop      stop the instance on KAFKA_PORT (SIGTERM, SIGKILL after KAFKA_STOP_TIMEOUT s);
#             --all: every instance this script started
#   kill      SIGKILL the instance on KAFKA_PORT at once (a crash: no shutdown, data left as is)
#   restart   stop + start
#   status    print whether the instance on KAFKA_PORT runs (--all: every instance); exit 0 if running, 3 if not
#   reset     stop + delete the instance's data dir (topics, offsets, cluster id)
#   topics    run kafka-topics against the instance, e.g. infra/kafka.sh topics --list
#
# Environment (defaults in brackets):
#   HALTWATCH_CACHE         cache/state root                    [<repo>/.cache]
#   KAFKA_VERSION           Kafka version to install/run        [4.3.1]
#   KAFKA_PORT              client listener 127.0.0.1:PORT      [9092]
#   KAFKA_CONTROLLER_PORT   KRaft controller listener           [KAFKA_PORT + 1, so 9093]
#   KAFKA_DATA_DIR          log.dirs                            [$HALTWATCH_CACHE/kafka/data-$KAFKA_PORT]
#   KAFKA_PARTITIONS        num.partitions for auto-created topics [8]
#   KAFKA_HEAP_OPTS         JVM heap                            [-Xmx512m -Xms256m]
#   KAFKA_EXTRA_CONFIG      extra server.properties lines (newline separated), appended last
#   KAFKA_SASL_SSL_PORT     also listen on 127.0.0.1:PORT with SASL_SSL (SCRAM-SHA-256/512 over TLS) [off]
#   KAFKA_SCRAM_USER        the SCRAM user created when the storage is formatted   [haltwatch]
#   KAFKA_SCRAM_PASSWORD    its password                                          [haltwatch-secret]
#   The TLS certificate of that listener is signed by a CA made for the instance: its certificate is
#   $HALTWATCH_CACHE/kafka/conf-PORT/tls/ca.pem (the file clients trust, `infra/kafka.sh ca-file` prints it).
#   KAFKA_START_TIMEOUT     seconds to wait for readiness       [60]
#   KAFKA_STOP_TIMEOUT      seconds before SIGKILL on stop      [30]
set -euo pipefail
set +m

# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
HW_NAME=kafka

KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
[[ "$KAFKA_PORT" =~ ^[0-9]+$ ]] || hw_die "KAFKA_PORT must be a number, got '$KAFKA_PORT'"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_HOME="$HW_CACHE/kafka"
NAME="kafka-$KAFKA_PORT"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$KAFKA_HOME/data-$KAFKA_PORT}"
KAFKA_PARTITIONS="${KAFKA_PARTITIONS:-8}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
KAFKA_EXTRA_CONFIG="${KAFKA_EXTRA_CONFIG:-}"
KAFKA_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-}"
KAFKA_SCRAM_USER="${KAFKA_SCRAM_USER:-haltwatch}"
KAFKA_SCRAM_PASSWORD="${KAFKA_SCRAM_PASSWORD:-haltwatch-secret}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

POM="$HW_INFRA_DIR/kafka/pom.xml"
LIBS="$KAFKA_HOME/$KAFKA_VERSION/libs"
STAMP="$KAFKA_HOME/$KAFKA_VERSION/.installed"
CONF_DIR="$KAFKA_HOME/conf-$KAFKA_PORT"
SERVER_PROPS="$CONF_DIR/server.properties"
LOG4J_SERVER="$CONF_DIR/log4j2.properties"
LOG4J_TOOLS="$KAFKA_HOME/tools-log4j2.properties"
TLS_DIR="$CONF_DIR/tls"
SERVER_LOG="$HW_LOGS/$NAME-server.log"
STDOUT_LOG="$HW_LOGS/$NAME.out"
MARKER="$(hw_marker "$NAME" "kafka.Kafka $SERVER_PROPS")"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

# The stamp records version + pom checksum, so an edited pom triggers a fresh download.
install_id() { echo "$KAFKA_VERSION $(sha256sum "$POM" | cut -d' ' -f1)"; }

cmd_install() {
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(install_id)" ] && [ -d "$LIBS" ]; then
        [ -n "${QUIET_INSTALLED:-}" ] || hw_log "Kafka $KAFKA_VERSION already installed in $LIBS"
        return 0
    fi
    hw_need_cmd java openjdk-17-jre-headless # Kafka 4.x brokers need Java 17+
    hw_need_cmd mvn maven
    local t0 tmp
    t0="$(hw_now)"
    hw_log "installing Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
    tmp="$LIBS.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if ! mvn -B -q -f "$POM" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$tmp" >"$HW_LOGS/kafka-install.log" 2>&1; then
        rm -rf "$tmp"
        hw_tail "$HW_LOGS/kafka-install.log"
        hw_die "mvn could not fetch Kafka $KAFKA_VERSION"
    fi
    [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || hw_die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    install_id >"$STAMP"
    hw_log "installed Kafka $KAFKA_VERSION ($(find "$LIBS" -name '*.jar' | wc -l) jars, $(du -sh "$LIBS" | cut -f1)) in $(hw_since "$t0")s"
}

write_config() {
    mkdir -p "$CONF_DIR" "$KAFKA_DATA_DIR"
    local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
    local advertised="PLAINTEXT://127.0.0.1:$KAFKA_PORT"
    local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if [ -n "$KAFKA_SASL_SSL_PORT" ]; then
        hw_make_tls "$TLS_DIR" "Kafka $KAFKA_PORT"
        listeners="$listeners,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
        advertised="$advertised,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
        protocols="$protocols,SASL_SSL:SASL_SSL"
    fi
    cat >"$SERVER_PROPS" <<EOF
# Generated by infra/kafka.sh on every start; edit the script or KAFKA_EXTRA_CONFIG, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$KAFKA_DATA_DIR
num.partitions=$KAFKA_PARTITIONS
auto.create.topics.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    if [ -n "$KAFKA_SASL_SSL_PORT" ]; then
        cat >>"$SERVER_PROPS" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/server-keystore.pem
EOF
    fi
    if [ -n "$KAFKA_EXTRA_CONFIG" ]; then
        printf '# KAFKA_EXTRA_CONFIG\n%s\n' "$KAFKA_EXTRA_CONFIG" >>"$SERVER_PROPS"
    fi
    cat >"$LOG4J_SERVER" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $SERVER_LOG
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
    write_tools_config
}

write_tools_config() {
    mkdir -p "$KAFKA_HOME"
    cat >"$LOG4J_TOOLS" <<EOF
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

# A Kafka CLI class from the installed jars, quiet logging (an array, so `timeout` can run it).
JAVA_TOOL=(java -Xmx256m -XX:TieredStopAtLevel=1 -cp "$LIBS/*" -Dlog4j2.configurationFile="$LOG4J_TOOLS")
java_tool() { "${JAVA_TOOL[@]}" "$@"; }

format_storage() {
    local stamp="$KAFKA_DATA_DIR/.haltwatch-kafka-version"
    if [ -f "$KAFKA_DATA_DIR/meta.properties" ]; then
        local formatted
        formatted="$(cat "$stamp" 2>/dev/null || true)"
        if [ -n "$formatted" ] && [ "$formatted" != "$KAFKA_VERSION" ]; then
            if [ "$(printf '%s\n%s\n' "$formatted" "$KAFKA_VERSION" | sort -V | tail -1)" = "$formatted" ]; then
                hw_die "$KAFKA_DATA_DIR was written by Kafka $formatted; $KAFKA_VERSION cannot read it (downgrade): run 'infra/kafka.sh reset' or set KAFKA_DATA_DIR"
            fi
            echo "$KAFKA_VERSION" >"$stamp" # an upgrade reads older metadata
        fi
        return 0
    fi
    local cluster_id
    cluster_id="$(java_tool kafka.tools.StorageTool random-uuid)"
    hw_log "formatting $KAFKA_DATA_DIR (cluster id $cluster_id)"
    local scram=()
    if [ -n "$KAFKA_SASL_SSL_PORT" ]; then
        for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
            scram+=(--add-scram "$mechanism=[name=$KAFKA_SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]")
        done
    fi
    java_tool kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$SERVER_PROPS" "${scram[@]}" \
        >>"$HW_LOGS/$NAME-format.log" 2>&1 || {
        hw_tail "$HW_LOGS/$NAME-format.log"
        hw_die "kafka-storage format failed"
    }
    echo "$KAFKA_VERSION" >"$stamp"
}

# Ready = the server logged "Kafka Server started" AND can create a topic. Listing topics is not enough: a KRaft
# broker answers metadata requests while the controller still fences it, and then every topic creation fails
# with "All brokers are currently fenced".
wait_ready() {
    local pid="$1" t0="$2" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! hw_alive "$pid" "$MARKER"; then
            hw_tail "$STDOUT_LOG" "$SERVER_LOG"
            hw_forget "$NAME"
            hw_die "Kafka exited during startup (logs above)"
        fi
        if grep -q "Kafka Server started" "$SERVER_LOG" 2>/dev/null &&
            timeout 20 "${JAVA_TOOL[@]}" org.apache.kafka.tools.TopicCommand \
                --bootstrap-server "127.0.0.1:$KAFKA_PORT" --create --if-not-exists --topic haltwatch.ready \
                --partitions 1 --replication-factor 1 >/dev/null 2>&1; then
            hw_log "Kafka $KAFKA_VERSION ready on 127.0.0.1:$KAFKA_PORT (pid $pid) in $(hw_since "$t0")s"
            return 0
        fi
        sleep 0.5
    done
    hw_tail "$STDOUT_LOG" "$SERVER_LOG"
    hw_log "Kafka not ready after ${KAFKA_START_TIMEOUT}s; stopping pid $pid"
    hw_stop "$NAME" "$MARKER" 10 || true
    hw_die "Kafka did not come up within ${KAFKA_START_TIMEOUT}s (logs above)"
}

cmd_start() {
    hw_lock "$NAME"
    if hw_running "$NAME" "$MARKER"; then
        hw_log "already running (pid $(hw_pid "$NAME")): $(cat "$HW_RUN/$NAME.info" 2>/dev/null || true)"
        return 0
    fi
    QUIET_INSTALLED=1 cmd_install
    local t0
    t0="$(hw_now)"
    hw_require_free_port "$KAFKA_PORT" KAFKA_PORT
    hw_require_free_port "$KAFKA_CONTROLLER_PORT" KAFKA_CONTROLLER_PORT
    write_config
    format_storage
    hw_rotate "$SERVER_LOG"
    hw_rotate "$STDOUT_LOG"
    MARKER="kafka.Kafka $SERVER_PROPS"
    # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM flags
    hw_launch "$NAME" "$STDOUT_LOG" "$MARKER" java $KAFKA_HEAP_OPTS \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$LOG4J_SERVER" \
        -cp "$LIBS/*" kafka.Kafka "$SERVER_PROPS"
    echo "version=$KAFKA_VERSION bootstrap=127.0.0.1:$KAFKA_PORT controller=127.0.0.1:$KAFKA_CONTROLLER_PORT data=$KAFKA_DATA_DIR log=$SERVER_LOG" \
        >"$HW_RUN/$NAME.info"
    hw_log "started pid $HW_LAUNCHED_PID, waiting for readiness (log: $SERVER_LOG)"
    wait_ready "$HW_LAUNCHED_PID" "$t0"
}

cmd_stop() {
    hw_cmd_stop kafka KAFKA_PORT "${BASH_SOURCE[0]}" "$NAME" "$MARKER" "$KAFKA_STOP_TIMEOUT" "${1:-}"
}

cmd_kill() {
    hw_lock "$NAME"
    hw_kill "$NAME" "$MARKER"
}

cmd_status() {
    hw_cmd_status kafka KAFKA_PORT "${BASH_SOURCE[0]}" "$NAME" "$MARKER" "${1:-}"
}

cmd_reset() {
    cmd_stop
    if [ -d "$KAFKA_DATA_DIR" ]; then
        hw_log "deleting $KAFKA_DATA_DIR"
        rm -rf "$KAFKA_DATA_DIR"
    fi
}

cmd_topics() {
    [ -d "$LIBS" ] || hw_die "Kafka not installed (infra/kafka.sh install)"
    [ -f "$LOG4J_TOOLS" ] || write_tools_config
    java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" "$@"
}

case "${1:-help}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop "${2:-}" ;;
    kill) cmd_kill ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status "${2:-}" ;;
    reset) cmd_reset ;;
    topics) shift && cmd_topics "$@" ;;
    ca-file) echo "$TLS_DIR/ca.pem" ;;
    help | -h | --help) usage ;;
    *) usage >&2 && exit 2 ;;
esac
