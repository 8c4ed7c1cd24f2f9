#!/usr/bin/env bash
# Local anvil (Foundry's EVM dev node) from the npm package @foundry-rs/anvil.
# Several instances can run at once: ANVIL_PORT selects the instance (pid/log file anvil-<port>.*).
#
# Usage: infra/anvil.sh {install|start|stop [--all]|restart|status [--all]|path|help}
#   install   npm install @foundry-rs/anvil into the cache (the binary comes in @foundry-rs/anvil-<os>-<arch>)
#   start     install if needed, start anvil on 127.0.0.1:ANVIL_PORT, wait until eth_blockNumber answers
#   stop      stop the instance on ANVIL_PORT (--all: every instance this script started)
#   restart   stop + start (the chain starts again from genesis)
#   status    print whether the instance on ANVIL_PORT runs (--all: every instance); exit 0 if running, 3 if not
#   path      print the path of the anvil binary (installs first if needed)
#
# Environment (defaults in brackets):
#   HALTWATCH_CACHE       cache/state root                              [<repo>/.cache]
#   ANVIL_VERSION         npm version of @foundry-rs/anvil              [1.7.1]
#   ANVIL_PORT            HTTP + websocket port on 127.0.0.1            [8545]
#   ANVIL_CHAIN_ID        chain id                                      [31337]
#   ANVIL_ARGS            extra anvil arguments, e.g. "--block-time 1" or "--no-mining" (word-split)
#   ANVIL_START_TIMEOUT   seconds to wait for readiness                 [30]
#   ANVIL_STOP_TIMEOUT    seconds before SIGKILL on stop                [10]
# RPC: http://127.0.0.1:$ANVIL_PORT   websocket: ws://127.0.0.1:$ANVIL_PORT
set -euo pipefail
set +m

# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
HW_NAME=anvil

ANVIL_VERSION="${ANVIL_VERSION:-1.7.1}"
ANVIL_PORT="${ANVIL_PORT:-8545}"
ANVIL_CHAIN_ID="${ANVIL_CHAIN_ID:-31337}"
ANVIL_ARGS="${ANVIL_ARGS:-}"
ANVIL_START_TIMEOUT="${ANVIL_START_TIMEOUT:-30}"
ANVIL_STOP_TIMEOUT="${ANVIL_STOP_TIMEOUT:-10}"

NODE_PREFIX="$HW_CACHE/node"
NAME="anvil-$ANVIL_PORT"
LOG="$HW_LOGS/$NAME.log"
# anvil writes old block states to disk once it holds too many in memory, by default under ~/.foundry/anvil/tmp,
# and a killed anvil never removes them (several GB per long test run). Keep them in our run folder instead and
# remove them on stop and before start.
STATES="$HW_RUN/$NAME-states"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

[[ "$ANVIL_PORT" =~ ^[0-9]+$ ]] || hw_die "ANVIL_PORT must be a number, got '$ANVIL_PORT'"

platform_pkg() {
    local os arch
    case "$(uname -s)" in
        Linux) os=linux ;;
        Darwin) os=darwin ;;
        *) hw_die "unsupported OS $(uname -s)" ;;
    esac
    case "$(uname -m)" in
        x86_64 | amd64) arch=amd64 ;;
        aarch64 | arm64) arch=arm64 ;;
        *) hw_die "unsupported CPU $(uname -m)" ;;
    esac
    echo "@foundry-rs/anvil-$os-$arch"
}

anvil_bin() { echo "$NODE_PREFIX/node_modules/$(platform_pkg)/bin/anvil"; }

installed_version() {
    local bin
    bin="$(anvil_bin)"
    [ -x "$bin" ] || return 1
    "$bin" --version 2>/dev/null | sed -n 's/^anvil Version: \([^ ]*\).*/\1/p' | head -1
}

cmd_install() {
    if [ "$(installed_version || true)" = "$ANVIL_VERSION" ]; then
        [ -n "${QUIET_INSTALLED:-}" ] || hw_log "anvil $ANVIL_VERSION already installed: $(anvil_bin)"
        return 0
    fi
    hw_need_cmd npm npm
    local t0
    t0="$(hw_now)"
    hw_log "installing @foundry-rs/anvil@$ANVIL_VERSION with npm into $NODE_PREFIX"
    mkdir -p "$NODE_PREFIX"
    # --ignore-scripts: the package's postinstall would fetch a binary from the web; the binary we
    # use ships in the platform package, which npm installs as an optional dependency.
    if ! npm install --prefix "$NODE_PREFIX" --ignore-scripts --no-audit --no-fund --loglevel=error \
        "@foundry-rs/anvil@$ANVIL_VERSION" "$(platform_pkg)@$ANVIL_VERSION" \
        >"$HW_LOGS/anvil-install.log" 2>&1; then
        hw_tail "$HW_LOGS/anvil-install.log"
        hw_die "npm install @foundry-rs/anvil@$ANVIL_VERSION failed"
    fi
    chmod +x "$(anvil_bin)" 2>/dev/null || true
    [ "$(installed_version || true)" = "$ANVIL_VERSION" ] ||
        hw_die "anvil binary $(anvil_bin) missing or not version $ANVIL_VERSION after npm install"
    hw_log "installed anvil $ANVIL_VERSION in $(hw_since "$t0")s: $(anvil_bin)"
}

# Command-line marker of our instance: binary path + its port.
marker() { echo "$(anvil_bin) --host 127.0.0.1 --port $1 "; }

rpc_block_number() {
    curl -sf --max-time 2 -H 'Content-Type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' \
        "http://127.0.0.1:$1" 2>/dev/null | sed -n 's/.*"result":"\(0x[0-9a-fA-F]*\)".*/\1/p'
}

cmd_start() {
    hw_lock "$NAME"
    if hw_running "$NAME" "$(marker "$ANVIL_PORT")"; then
        hw_log "already running (pid $(hw_pid "$NAME")): $(cat "$HW_RUN/$NAME.info" 2>/dev/null || true)"
        return 0
    fi
    QUIET_INSTALLED=1 cmd_install
    hw_need_cmd curl curl
    local t0 pid bn deadline
    t0="$(hw_now)"
    hw_require_free_port "$ANVIL_PORT" ANVIL_PORT
    hw_rotate "$LOG"
    rm -rf "$STATES"
    # shellcheck disable=SC2086  # ANVIL_ARGS is deliberately word-split
    hw_launch "$NAME" "$LOG" "$(marker "$ANVIL_PORT")" "$(anvil_bin)" --host 127.0.0.1 --port "$ANVIL_PORT" \
        --chain-id "$ANVIL_CHAIN_ID" --cache-path "$STATES" $ANVIL_ARGS
    pid="$HW_LAUNCHED_PID"
    echo "rpc=http://127.0.0.1:$ANVIL_PORT ws=ws://127.0.0.1:$ANVIL_PORT chain_id=$ANVIL_CHAIN_ID args='$ANVIL_ARGS' log=$LOG" \
        >"$HW_RUN/$NAME.info"
    deadline=$((SECONDS + ANVIL_START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! hw_alive "$pid" "$(marker "$ANVIL_PORT")"; then
            hw_tail "$LOG"
            hw_forget "$NAME"
            hw_die "anvil exited during startup (log above)"
        fi
        bn="$(rpc_block_number "$ANVIL_PORT" || true)"
        if [ -n "$bn" ]; then
            hw_log "anvil ready on http://127.0.0.1:$ANVIL_PORT (chain id $ANVIL_CHAIN_ID, block $bn, pid $pid) in $(hw_since "$t0")s"
            return 0
        fi
        sleep 0.2
    done
    hw_tail "$LOG"
    hw_stop "$NAME" "$(marker "$ANVIL_PORT")" 5 || true
    hw_die "anvil did not answer eth_blockNumber within ${ANVIL_START_TIMEOUT}s (log above)"
}

cmd_stop() {
    hw_cmd_stop anvil ANVIL_PORT "${BASH_SOURCE[0]}" "$NAME" "$(marker "$ANVIL_PORT")" "$ANVIL_STOP_TIMEOUT" "${1:-}"
    [ "${1:-}" = "--all" ] || rm -rf "$STATES"
}

cmd_status() {
    hw_cmd_status anvil ANVIL_PORT "${BASH_SOURCE[0]}" "$NAME" "$(marker "$ANVIL_PORT")" "${1:-}"
}

case "${1:-help}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop "${2:-}" ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status "${2:-}" ;;
    path) cmd_install >/dev/null 2>&1 || cmd_install && anvil_bin ;;
    help | -h | --help) usage ;;
    *) usage >&2 && exit 2 ;;
esac
