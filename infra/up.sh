#!/usr/bin/env bash
# Install (if needed) and start the local services; idempotent.
#
# Usage: infra/up.sh [kafka] [clickhouse] [anvil]      (no names = all three)
# Each service is configured by the environment variables listed in infra/<name>.sh --help.
# On success, stdout carries `export ...` lines for the app (also written to
# $HALTWATCH_CACHE/infra.env), so this works:  eval "$(infra/up.sh)"
set -euo pipefail
set +m

INFRA="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=infra/lib.sh
source "$INFRA/lib.sh"
HW_NAME=up

if [ "$#" -eq 0 ]; then set -- kafka clickhouse anvil; fi
for name in "$@"; do
    case "$name" in
        kafka | clickhouse | anvil) ;;
        -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' && exit 0 ;;
        *) hw_die "unknown service '$name' (expected: kafka clickhouse anvil)" ;;
    esac
done

t0="$(hw_now)"
exports=()
for name in "$@"; do
    "$INFRA/$name.sh" install
    "$INFRA/$name.sh" start
    case "$name" in
        kafka) exports+=("export HALTWATCH_KAFKA_BOOTSTRAP=127.0.0.1:${KAFKA_PORT:-9092}") ;;
        clickhouse) exports+=("export HALTWATCH_CLICKHOUSE_URL=clickhouse://default@127.0.0.1:${CLICKHOUSE_TCP_PORT:-19000}/haltwatch") ;;
        anvil) exports+=("export HALTWATCH_WS_URL=ws://127.0.0.1:${ANVIL_PORT:-8545}") ;;
    esac
done
printf '%s\n' "${exports[@]}" | tee "$HW_CACHE/infra.env"
hw_log "up: $* in $(hw_since "$t0")s (env also in $HW_CACHE/infra.env)"
