#!/usr/bin/env bash
# Local Apache ZooKeeper (Debian's zookeeper package, 3.8) run standalone as a plain background process: the
# coordination a replicated ClickHouse needs. Several instances can run at once: ZOOKEEPER_PORT selects one.
#
# Usage: infra/zookeeper.sh {install|start|stop [--all]|kill|restart|status [--all]|reset|help}
#   install   apt-get install zookeeper (skipped when /usr/share/java/zookeeper.jar exists)
#   start     install if needed, start ZooKeeperServerMain on 127.0.0.1:ZOOKEEPER_PORT, wait for `srvr`
#   stop      SIGTERM (SIGKILL after 20 s); --all: every instance this script started
#   kill      SIGKILL at once
#   status    exit 0 if running, 3 if not
#   reset     stop + delete the instance's data
#
# Environment (defaults in brackets):
#   HALTWATCH_CACHE          cache/state root                       [<repo>/.cache]
#   ZOOKEEPER_PORT           client port 127.0.0.1:PORT             [12181]
#   ZOOKEEPER_STATE_DIR      snapshots and logs                     [$HALTWATCH_CACHE/zookeeper/data-$ZOOKEEPER_PORT]
#   ZOOKEEPER_START_TIMEOUT  seconds to wait for readiness          [60]
set -euo pipefail
set +m

# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
HW_NAME=zookeeper

ZOOKEEPER_PORT="${ZOOKEEPER_PORT:-12181}"
[[ "$ZOOKEEPER_PORT" =~ ^[0-9]+$ ]] || hw_die "ZOOKEEPER_PORT must be a number, got '$ZOOKEEPER_PORT'"
NAME="zookeeper-$ZOOKEEPER_PORT"
STATE="${ZOOKEEPER_STATE_DIR:-$HW_CACHE/zookeeper/data-$ZOOKEEPER_PORT}"
ZOOKEEPER_START_TIMEOUT="${ZOOKEEPER_START_TIMEOUT:-60}"
JAR=/usr/share/java/zookeeper.jar
MAIN=org.apache.zookeeper.server.ZooKeeperServerMain
MARKER="$(hw_marker "$NAME" "$MAIN $ZOOKEEPER_PORT")"
LOG="$HW_LOGS/$NAME.out"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

cmd_install() {
    if [ -r "$JAR" ]; then
        return 0
    fi
    local t0
    t0="$(hw_now)"
    hw_log "installing zookeeper with apt-get"
    hw_apt_install zookeeper zookeeper
    [ -r "$JAR" ] || hw_die "$JAR missing after apt-get install zookeeper"
    hw_log "installed zookeeper in $(hw_since "$t0")s"
}

# ready: ZooKeeper answers the four-letter word `srvr` (whitelisted by default) on its client port.
ready() {
    local reply
    reply="$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$ZOOKEEPER_PORT; printf srvr >&3; cat <&3" 2>/dev/null)" \
        || return 1
    [[ "$reply" == *"Mode: standalone"* ]]
}

cmd_start() {
    hw_lock "$NAME"
    if hw_running "$NAME" "$MARKER"; then
        hw_log "already running (pid $(hw_pid "$NAME"))"
        return 0
    fi
    QUIET_INSTALLED=1 cmd_install
    hw_need_cmd java default-jre-headless
    hw_require_free_port "$ZOOKEEPER_PORT" ZOOKEEPER_PORT
    mkdir -p "$STATE"
    local t0 deadline
    t0="$(hw_now)"
    hw_rotate "$LOG"
    MARKER="$MAIN $ZOOKEEPER_PORT"
    # standalone: the client port and the data folder on the command line; no admin server (it binds 8080)
    hw_launch "$NAME" "$LOG" "$MARKER" java -Xmx256m -Dzookeeper.admin.enableServer=false \
        -cp "$JAR" "$MAIN" "$ZOOKEEPER_PORT" "$STATE"
    echo "client=127.0.0.1:$ZOOKEEPER_PORT state=$STATE log=$LOG" >"$HW_RUN/$NAME.info"
    deadline=$((SECONDS + ZOOKEEPER_START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! hw_alive "$HW_LAUNCHED_PID" "$MARKER"; then
            hw_tail "$LOG"
            hw_forget "$NAME"
            hw_die "ZooKeeper exited during startup (log above)"
        fi
        if ready; then
            hw_log "ZooKeeper ready on 127.0.0.1:$ZOOKEEPER_PORT (pid $HW_LAUNCHED_PID) in $(hw_since "$t0")s"
            return 0
        fi
        sleep 0.2
    done
    hw_tail "$LOG"
    hw_stop "$NAME" "$MARKER" 10 || true
    hw_die "ZooKeeper did not come up within ${ZOOKEEPER_START_TIMEOUT}s (log above)"
}

cmd_stop() { hw_cmd_stop zookeeper ZOOKEEPER_PORT "${BASH_SOURCE[0]}" "$NAME" "$MARKER" 20 "${1:-}"; }
cmd_kill() { hw_lock "$NAME"; hw_kill "$NAME" "$MARKER"; }
cmd_status() { hw_cmd_status zookeeper ZOOKEEPER_PORT "${BASH_SOURCE[0]}" "$NAME" "$MARKER" "${1:-}"; }
cmd_reset() {
    cmd_stop
    hw_log "deleting $STATE"
    rm -rf "$STATE"
}

case "${1:-help}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop "${2:-}" ;;
    kill) cmd_kill ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status "${2:-}" ;;
    reset) cmd_reset ;;
    help | -h | --help) usage ;;
    *) usage >&2 && exit 2 ;;
esac
