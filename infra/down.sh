#!/usr/bin/env bash
# Stop the local services started by infra/*.sh (every instance of each); idempotent.
#
# Usage: infra/down.sh [kafka] [clickhouse] [anvil]    (no names = all three)
# Tries every named service even when one fails; exits 1 if any stop failed.
set -euo pipefail
set +m

INFRA="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=infra/lib.sh
source "$INFRA/lib.sh"
HW_NAME=down

if [ "$#" -eq 0 ]; then set -- anvil clickhouse kafka; fi
rc=0
for name in "$@"; do
    case "$name" in
        kafka | clickhouse | anvil) "$INFRA/$name.sh" stop --all || rc=1 ;;
        -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' && exit 0 ;;
        *) hw_log "unknown service '$name' (expected: kafka clickhouse anvil)" && rc=1 ;;
    esac
done
rm -f "$HW_CACHE/infra.env"
exit "$rc"
