#!/usr/bin/env bash
# Local Prometheus Alertmanager, built from its Go module (Apache-2.0) and cached like the Kafka jars.
# Several instances can run at once: ALERTMANAGER_PORT selects the instance (pid/log/data named after it).
#
# Usage: infra/alertmanager.sh {install|start|stop [--all]|restart|status [--all]|path|help}
#   install   go mod download the module, copy it out of the module cache, put a placeholder where the web
#             UI's built assets go (the module ships without them; the API works without them), go build
#             ./cmd/alertmanager into the cache (about 2 minutes on 2 cores, once per version)
#   start     install if needed, start one instance on 127.0.0.1:ALERTMANAGER_PORT with a receiver that
#             drops notifications (tests read the alerts through the API), wait until /-/ready answers
#   stop      stop the instance on ALERTMANAGER_PORT (--all: every instance this script started)
#   restart   stop + start (alerts are kept in the instance's data dir)
#   status    print whether the instance on ALERTMANAGER_PORT runs; exit 0 if running, 3 if not
#   path      print the path of the alertmanager binary (installs first if needed)
#
# Environment (defaults in brackets):
#   HALTWATCH_CACHE              cache/state root                          [<repo>/.cache]
#   ALERTMANAGER_VERSION         module version                            [v0.35.0]
#   ALERTMANAGER_PORT            API and UI on 127.0.0.1:PORT              [9093 + 100 = 9193]
#   ALERTMANAGER_CLUSTER_PORT    gossip port; 0 turns clustering off       [0]
#   ALERTMANAGER_DATA_DIR        silences and notification log             [$HALTWATCH_CACHE/alertmanager/data-PORT]
#   ALERTMANAGER_START_TIMEOUT   seconds to wait for readiness             [30]
set -euo pipefail
set +m

# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
HW_NAME=alertmanager

ALERTMANAGER_VERSION="${ALERTMANAGER_VERSION:-v0.35.0}"
ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-9193}"
[[ "$ALERTMANAGER_PORT" =~ ^[0-9]+$ ]] || hw_die "ALERTMANAGER_PORT must be a number, got '$ALERTMANAGER_PORT'"
ALERTMANAGER_CLUSTER_PORT="${ALERTMANAGER_CLUSTER_PORT:-0}"
AM_HOME="$HW_CACHE/alertmanager"
ALERTMANAGER_DATA_DIR="${ALERTMANAGER_DATA_DIR:-$AM_HOME/data-$ALERTMANAGER_PORT}"
ALERTMANAGER_START_TIMEOUT="${ALERTMANAGER_START_TIMEOUT:-30}"
MODULE=github.com/prometheus/alertmanager
BIN="$AM_HOME/$ALERTMANAGER_VERSION/alertmanager"
NAME="alertmanager-$ALERTMANAGER_PORT"
LOG="$HW_LOGS/$NAME.log"
CONF="$AM_HOME/conf-$ALERTMANAGER_PORT.yml"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

cmd_install() {
    # one build at a time (two test processes may start an instance each); fd 8: fd 9 is hw_lock's
    exec 8>"$HW_RUN/alertmanager-install.lock"
    flock -w 900 8 || hw_die "could not take $HW_RUN/alertmanager-install.lock within 900 s"
    if [ -x "$BIN" ]; then
        [ -n "${QUIET_INSTALLED:-}" ] || hw_log "alertmanager $ALERTMANAGER_VERSION already built: $BIN"
        exec 8>&-
        return 0
    fi
    hw_need_cmd go golang-go
    local t0 src work
    t0="$(hw_now)"
    hw_log "building alertmanager $ALERTMANAGER_VERSION from its Go module (about 2 minutes)"
    mkdir -p "$AM_HOME"
    src="$(GOFLAGS=-mod=mod go mod download -json "$MODULE@$ALERTMANAGER_VERSION" 2>"$HW_LOGS/alertmanager-install.log" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" || true
    [ -n "$src" ] && [ -d "$src" ] || { hw_tail "$HW_LOGS/alertmanager-install.log"; hw_die "go mod download $MODULE@$ALERTMANAGER_VERSION failed"; }
    work="$AM_HOME/src-$ALERTMANAGER_VERSION.$$"
    rm -rf "$work"
    cp -r "$src" "$work"
    chmod -R u+w "$work"
    # The UI's assets are built by npm in the release process and are not in the module; the API needs none.
    mkdir -p "$work/ui/app/dist"
    [ -e "$work/ui/app/dist/index.html" ] || echo '<html><body>haltwatch test build: no UI</body></html>' \
        >"$work/ui/app/dist/index.html"
    if ! (cd "$work" && go build -o "$BIN.tmp" ./cmd/alertmanager) >>"$HW_LOGS/alertmanager-install.log" 2>&1; then
        rm -rf "$work"
        hw_tail "$HW_LOGS/alertmanager-install.log"
        hw_die "go build of alertmanager $ALERTMANAGER_VERSION failed"
    fi
    mv -f "$BIN.tmp" "$BIN"
    rm -rf "$work"
    hw_log "built alertmanager $ALERTMANAGER_VERSION in $(hw_since "$t0")s: $BIN"
    exec 8>&-
}

marker() { echo "$BIN --config.file=$CONF"; }

cmd_start() {
    hw_lock "$NAME"
    if hw_running "$NAME" "$(marker)"; then
        hw_log "already running (pid $(hw_pid "$NAME"))"
        return 0
    fi
    QUIET_INSTALLED=1 cmd_install
    hw_need_cmd curl curl
    local t0 pid deadline
    t0="$(hw_now)"
    hw_require_free_port "$ALERTMANAGER_PORT" ALERTMANAGER_PORT
    mkdir -p "$ALERTMANAGER_DATA_DIR"
    cat >"$CONF" <<CONF
route:
  receiver: drop
  group_by: [alertname, exchange, outage_id]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 4h
receivers:
  - name: drop
CONF
    hw_rotate "$LOG"
    local cluster=(--cluster.listen-address=)
    [ "$ALERTMANAGER_CLUSTER_PORT" = 0 ] || cluster=(--cluster.listen-address="127.0.0.1:$ALERTMANAGER_CLUSTER_PORT")
    hw_launch "$NAME" "$LOG" "$(marker)" "$BIN" --config.file="$CONF" --storage.path="$ALERTMANAGER_DATA_DIR" \
        --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" "${cluster[@]}"
    pid="$HW_LAUNCHED_PID"
    echo "api=http://127.0.0.1:$ALERTMANAGER_PORT/api/v2 data=$ALERTMANAGER_DATA_DIR log=$LOG" >"$HW_RUN/$NAME.info"
    deadline=$((SECONDS + ALERTMANAGER_START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! hw_alive "$pid" "$(marker)"; then
            hw_tail "$LOG"
            hw_forget "$NAME"
            hw_die "alertmanager exited during startup (log above)"
        fi
        if curl -sf --max-time 2 "http://127.0.0.1:$ALERTMANAGER_PORT/-/ready" >/dev/null 2>&1; then
            hw_log "alertmanager ready on http://127.0.0.1:$ALERTMANAGER_PORT (pid $pid) in $(hw_since "$t0")s"
            return 0
        fi
        sleep 0.2
    done
    hw_tail "$LOG"
    hw_stop "$NAME" "$(marker)" 5 || true
    hw_die "alertmanager did not become ready within ${ALERTMANAGER_START_TIMEOUT}s (log above)"
}

cmd_stop() {
    hw_cmd_stop alertmanager ALERTMANAGER_PORT "${BASH_SOURCE[0]}" "$NAME" "$(marker)" 10 "${1:-}"
}

cmd_status() {
    hw_cmd_status alertmanager ALERTMANAGER_PORT "${BASH_SOURCE[0]}" "$NAME" "$(marker)" "${1:-}"
}

case "${1:-help}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop "${2:-}" ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status "${2:-}" ;;
    path) QUIET_INSTALLED=1 cmd_install >&2 && echo "$BIN" ;;
    help | -h | --help) usage ;;
    *) usage >&2 && exit 2 ;;
esac
