#!/usr/bin/env bash
# Local ClickHouse server (Debian's clickhouse-server 18.16) run as a plain background process.
# Several instances can run at once: CLICKHOUSE_TCP_PORT selects the instance (pid/conf/state named after it).
#
# Usage: infra/clickhouse.sh {install|start|stop [--all]|kill|restart|status [--all]|reset|client ARGS...|help}
#   install   apt-get install clickhouse-server clickhouse-client (skipped when both binaries exist)
#   start     install if needed, write config.xml/users.xml, start, wait for `SELECT version()`
#   stop      stop the instance on CLICKHOUSE_TCP_PORT (SIGTERM, SIGKILL after CLICKHOUSE_STOP_TIMEOUT s);
#             --all: every instance this script started
#   kill      SIGKILL the instance on CLICKHOUSE_TCP_PORT at once (a crash: no shutdown, data left as is)
#   restart   stop + start
#   status    print whether the instance runs (--all: every instance); exit 0 if running, 3 if not
#   reset     stop + delete the instance's data (databases, tables)
#   client    clickhouse-client against the instance, e.g. infra/clickhouse.sh client -q 'SHOW DATABASES'
#
# Environment (defaults in brackets):
#   HALTWATCH_CACHE            cache/state root                  [<repo>/.cache]
#   CLICKHOUSE_TCP_PORT        native protocol 127.0.0.1:PORT    [19000]
#   CLICKHOUSE_HTTP_PORT       HTTP interface 127.0.0.1:PORT     [18123]
#   CLICKHOUSE_STATE_DIR       data, tmp and server logs         [$HALTWATCH_CACHE/clickhouse/data-$CLICKHOUSE_TCP_PORT]
#   CLICKHOUSE_START_TIMEOUT   seconds to wait for readiness     [60]
#   CLICKHOUSE_STOP_TIMEOUT    seconds before SIGKILL on stop    [30]
#   CLICKHOUSE_TCP_SECURE_PORT also serve the native protocol over TLS on 127.0.0.1:PORT [off]; the certificate
#                              is signed by a CA made for the instance, `infra/clickhouse.sh ca-file` prints its path
#   CLICKHOUSE_USER, CLICKHOUSE_PASSWORD  a second user with a password (SHA-256 in users.xml)     [none]
#   CLICKHOUSE_ZOOKEEPER_PORT  make the instance a replica: ZooKeeper on 127.0.0.1:PORT    [off]
#   CLICKHOUSE_CLUSTER         with it: the cluster's name in remote_servers              [haltwatch]
#   CLICKHOUSE_REPLICAS        with it: the TCP ports of the shard's replicas, e.g. "19000 19001" (all of them,
#                              this one included; one shard)                              [this one]
#   CLICKHOUSE_SHARD, CLICKHOUSE_REPLICA  with it: the {shard} and {replica} macros     [01, r<TCP port>]
#   CLICKHOUSE_INTERSERVER_PORT  with it: the port replicas fetch parts from             [TCP port + 3000]
# User `default`, no password, reachable from 127.0.0.1 only. The server runs as the calling user
# (18.16 runs fine as root; no chown/runuser needed).
set -euo pipefail
set +m

# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
HW_NAME=clickhouse

CLICKHOUSE_TCP_PORT="${CLICKHOUSE_TCP_PORT:-19000}"
CLICKHOUSE_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-18123}"
[[ "$CLICKHOUSE_TCP_PORT" =~ ^[0-9]+$ ]] || hw_die "CLICKHOUSE_TCP_PORT must be a number, got '$CLICKHOUSE_TCP_PORT'"
NAME="clickhouse-$CLICKHOUSE_TCP_PORT"
STATE="${CLICKHOUSE_STATE_DIR:-$HW_CACHE/clickhouse/data-$CLICKHOUSE_TCP_PORT}"
CLICKHOUSE_START_TIMEOUT="${CLICKHOUSE_START_TIMEOUT:-60}"
CLICKHOUSE_STOP_TIMEOUT="${CLICKHOUSE_STOP_TIMEOUT:-30}"
CLICKHOUSE_TCP_SECURE_PORT="${CLICKHOUSE_TCP_SECURE_PORT:-}"
CLICKHOUSE_USER="${CLICKHOUSE_USER:-}"
CLICKHOUSE_PASSWORD="${CLICKHOUSE_PASSWORD:-}"
CLICKHOUSE_ZOOKEEPER_PORT="${CLICKHOUSE_ZOOKEEPER_PORT:-}"
CLICKHOUSE_CLUSTER="${CLICKHOUSE_CLUSTER:-haltwatch}"
CLICKHOUSE_REPLICAS="${CLICKHOUSE_REPLICAS:-$CLICKHOUSE_TCP_PORT}"
CLICKHOUSE_SHARD="${CLICKHOUSE_SHARD:-01}"
CLICKHOUSE_REPLICA="${CLICKHOUSE_REPLICA:-r$CLICKHOUSE_TCP_PORT}"
CLICKHOUSE_INTERSERVER_PORT="${CLICKHOUSE_INTERSERVER_PORT:-$((CLICKHOUSE_TCP_PORT + 3000))}"

# Config files live in the cache (named by port) so `stop` finds the instance whatever its state dir.
CONF_DIR="$HW_CACHE/clickhouse/conf-$CLICKHOUSE_TCP_PORT"
CONF="$CONF_DIR/config.xml"
TLS_DIR="$CONF_DIR/tls"
USERS="$CONF_DIR/users.xml"
LOGDIR="$STATE/log"
SERVER_LOG="$LOGDIR/clickhouse-server.log"
ERR_LOG="$LOGDIR/clickhouse-server.err.log"
STDOUT_LOG="$HW_LOGS/$NAME.out"
MARKER="$(hw_marker "$NAME" "clickhouse-server --config-file=$CONF")"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

find_bin() {
    # /usr/sbin is not on every user's PATH
    command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || { [ -x "/usr/bin/$1" ] && echo "/usr/bin/$1"; } || true
}

cmd_install() {
    if [ -n "$(find_bin clickhouse-server)" ] && [ -n "$(find_bin clickhouse-client)" ]; then
        [ -n "${QUIET_INSTALLED:-}" ] || hw_log "already installed: $("$(find_bin clickhouse-client)" --version 2>/dev/null | head -1)"
        return 0
    fi
    local t0
    t0="$(hw_now)"
    hw_log "installing clickhouse-server clickhouse-client with apt-get"
    hw_apt_install clickhouse clickhouse-server clickhouse-client
    [ -n "$(find_bin clickhouse-server)" ] || hw_die "clickhouse-server missing after apt-get install"
    hw_log "installed $("$(find_bin clickhouse-client)" --version 2>/dev/null | head -1) in $(hw_since "$t0")s"
}

# The TLS part of config.xml when CLICKHOUSE_TCP_SECURE_PORT is set (empty otherwise).
secure_config() {
    [ -n "$CLICKHOUSE_TCP_SECURE_PORT" ] || return 0
    hw_make_tls "$TLS_DIR" "ClickHouse $CLICKHOUSE_TCP_PORT"
    cat <<EOF
    <tcp_port_secure>$CLICKHOUSE_TCP_SECURE_PORT</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>$TLS_DIR/server.pem</certificateFile>
            <privateKeyFile>$TLS_DIR/server.key</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
EOF
}

# The replication part of config.xml when CLICKHOUSE_ZOOKEEPER_PORT is set (empty otherwise): ZooKeeper, the
# macros the replicated tables' paths use, one shard of CLICKHOUSE_REPLICAS as cluster CLICKHOUSE_CLUSTER
# (internal_replication: a write goes to one replica, which replicates it), and the distributed DDL queue.
replica_config() {
    [ -n "$CLICKHOUSE_ZOOKEEPER_PORT" ] || return 0
    local port replicas=""
    for port in $CLICKHOUSE_REPLICAS; do
        replicas+="                <replica><host>127.0.0.1</host><port>$port</port></replica>"$'\n'
    done
    cat <<XML
    <interserver_http_port>$CLICKHOUSE_INTERSERVER_PORT</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <zookeeper>
        <node><host>127.0.0.1</host><port>$CLICKHOUSE_ZOOKEEPER_PORT</port></node>
        <session_timeout_ms>30000</session_timeout_ms>
    </zookeeper>
    <macros>
        <shard>$CLICKHOUSE_SHARD</shard>
        <replica>$CLICKHOUSE_REPLICA</replica>
    </macros>
    <remote_servers>
        <$CLICKHOUSE_CLUSTER>
            <shard>
                <internal_replication>true</internal_replication>
$replicas            </shard>
        </$CLICKHOUSE_CLUSTER>
    </remote_servers>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
XML
}

# One user's entry of users.xml, reachable from this machine only: user_entry NAME PASSWORD_ELEMENT.
user_entry() {
    cat <<EOF
        <$1>
            $2
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </$1>
EOF
}

# The password user's entry of users.xml when CLICKHOUSE_USER is set (empty otherwise).
password_user() {
    [ -n "$CLICKHOUSE_USER" ] || return 0
    local hash
    hash="$(printf '%s' "$CLICKHOUSE_PASSWORD" | sha256sum | cut -d' ' -f1)"
    user_entry "$CLICKHOUSE_USER" "<password_sha256_hex>$hash</password_sha256_hex>"
}

write_config() {
    mkdir -p "$CONF_DIR" "$STATE/data" "$STATE/tmp" "$STATE/user_files" "$STATE/format_schemas" "$LOGDIR"
    cat >"$CONF" <<EOF
<?xml version="1.0"?>
<!-- Generated by infra/clickhouse.sh on every start. Minimal config for clickhouse-server 18.16. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$SERVER_LOG</log>
        <errorlog>$ERR_LOG</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$CLICKHOUSE_TCP_PORT</tcp_port>
    <http_port>$CLICKHOUSE_HTTP_PORT</http_port>
$(secure_config)
$(replica_config)
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$STATE/data/</path>
    <tmp_path>$STATE/tmp/</tmp_path>
    <user_files_path>$STATE/user_files/</user_files_path>
    <format_schema_path>$STATE/format_schemas/</format_schema_path>
    <users_config>$USERS</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
    </query_log>
</yandex>
EOF
    cat >"$USERS" <<EOF
<?xml version="1.0"?>
<!-- Generated by infra/clickhouse.sh: user "default", no password, local connections only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
        <readonly>
            <readonly>1</readonly>
        </readonly>
    </profiles>
    <users>
$(user_entry default "<password></password>")
$(password_user)
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

ch_client() {
    "$(find_bin clickhouse-client)" --host 127.0.0.1 --port "$CLICKHOUSE_TCP_PORT" "$@"
}

wait_ready() {
    local pid="$1" t0="$2" deadline=$((SECONDS + CLICKHOUSE_START_TIMEOUT)) v
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! hw_alive "$pid" "$MARKER"; then
            hw_tail "$STDOUT_LOG" "$ERR_LOG" "$SERVER_LOG"
            hw_forget "$NAME"
            hw_die "clickhouse-server exited during startup (logs above)"
        fi
        if v="$(timeout 10 "$(find_bin clickhouse-client)" --host 127.0.0.1 --port "$CLICKHOUSE_TCP_PORT" \
            -q 'SELECT version()' 2>/dev/null)"; then
            hw_log "ClickHouse $v ready on 127.0.0.1:$CLICKHOUSE_TCP_PORT (http $CLICKHOUSE_HTTP_PORT, pid $pid) in $(hw_since "$t0")s"
            return 0
        fi
        sleep 0.3
    done
    hw_tail "$STDOUT_LOG" "$ERR_LOG" "$SERVER_LOG"
    hw_log "ClickHouse not ready after ${CLICKHOUSE_START_TIMEOUT}s; stopping pid $pid"
    hw_stop "$NAME" "$MARKER" 10 || true
    hw_die "ClickHouse did not come up within ${CLICKHOUSE_START_TIMEOUT}s (logs above)"
}

cmd_start() {
    hw_lock "$NAME"
    if hw_running "$NAME" "$MARKER"; then
        hw_log "already running (pid $(hw_pid "$NAME")): $(cat "$HW_RUN/$NAME.info" 2>/dev/null || true)"
        return 0
    fi
    QUIET_INSTALLED=1 cmd_install
    local t0 server
    t0="$(hw_now)"
    server="$(find_bin clickhouse-server)"
    hw_require_free_port "$CLICKHOUSE_TCP_PORT" CLICKHOUSE_TCP_PORT
    hw_require_free_port "$CLICKHOUSE_HTTP_PORT" CLICKHOUSE_HTTP_PORT
    write_config
    hw_rotate "$STDOUT_LOG"
    # Ports/paths are also passed as overrides after `--` (same values as in config.xml).
    MARKER="clickhouse-server --config-file=$CONF"
    hw_launch "$NAME" "$STDOUT_LOG" "$MARKER" "$server" "--config-file=$CONF" -- \
        "--path=$STATE/data/" "--tcp_port=$CLICKHOUSE_TCP_PORT" "--http_port=$CLICKHOUSE_HTTP_PORT" \
        "--listen_host=127.0.0.1"
    echo "tcp=127.0.0.1:$CLICKHOUSE_TCP_PORT http=127.0.0.1:$CLICKHOUSE_HTTP_PORT state=$STATE log=$SERVER_LOG" \
        >"$HW_RUN/$NAME.info"
    hw_log "started pid $HW_LAUNCHED_PID, waiting for readiness (log: $SERVER_LOG)"
    wait_ready "$HW_LAUNCHED_PID" "$t0"
}

cmd_stop() {
    hw_cmd_stop clickhouse CLICKHOUSE_TCP_PORT "${BASH_SOURCE[0]}" "$NAME" "$MARKER" "$CLICKHOUSE_STOP_TIMEOUT" "${1:-}"
}

cmd_kill() {
    hw_lock "$NAME"
    hw_kill "$NAME" "$MARKER"
}

cmd_status() {
    hw_cmd_status clickhouse CLICKHOUSE_TCP_PORT "${BASH_SOURCE[0]}" "$NAME" "$MARKER" "${1:-}"
}

cmd_reset() {
    cmd_stop
    if [ -d "$STATE/data" ]; then
        hw_log "deleting $STATE/data"
        rm -rf "$STATE/data" "$STATE/tmp"
    fi
}

case "${1:-help}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop "${2:-}" ;;
    kill) cmd_kill ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status "${2:-}" ;;
    reset) cmd_reset ;;
    client) shift && ch_client "$@" ;;
    ca-file) echo "$TLS_DIR/ca.pem" ;;
    help | -h | --help) usage ;;
    *) usage >&2 && exit 2 ;;
esac
