# shellcheck shell=bash
# Shared helpers for infra/*.sh. Sourced, never run.
#
# Layout of the cache (HALTWATCH_CACHE, default <repo>/.cache):
#   run/<name>.pid    PID of each background process we started; <name> = <service>-<port>, one per instance
#   run/<name>.marker a substring of its command line, checked before trusting or signalling the PID
#   run/<name>.info   what it was started with (ports, data dir), printed by status
#   run/<name>.lock   flock held while starting/stopping, so concurrent calls serialise
#   logs/<name>.*     process logs
#   kafka/ clickhouse/ node/ ...  downloads and state of each service

HW_INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HW_ROOT="$(cd "$HW_INFRA_DIR/.." && pwd)"
HW_CACHE="${HALTWATCH_CACHE:-$HW_ROOT/.cache}"
mkdir -p "$HW_CACHE"
HW_CACHE="$(cd "$HW_CACHE" && pwd)"
HW_RUN="$HW_CACHE/run"
HW_LOGS="$HW_CACHE/logs"
mkdir -p "$HW_RUN" "$HW_LOGS"

hw_log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${HW_NAME:-infra}" "$*" >&2; }
hw_die() { hw_log "ERROR: $*"; exit 1; }

# Seconds since epoch with fraction, for timing messages.
hw_now() { date +%s.%N; }
hw_since() { awk -v a="$1" -v b="$(hw_now)" 'BEGIN { printf "%.1f", b - a }'; }

# Take an exclusive lock for this service for the rest of the calling script.
# fd 9 is closed in every process we launch (see hw_launch) so servers never hold it.
hw_lock() {
    local name="$1"
    exec 9>"$HW_RUN/$name.lock"
    if ! flock -w 120 9; then
        hw_die "could not take lock $HW_RUN/$name.lock within 120 s (another start/stop running?)"
    fi
}

# hw_alive PID MARKER: true if PID runs (not a zombie) and its command line contains MARKER.
# The marker guards against a PID reused by an unrelated process after a crash/reboot.
hw_alive() {
    local pid="$1" marker="$2" state cmd
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/stat" ] || return 1
    state="$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [ "$state" != "Z" ] && [ "$state" != "X" ] || return 1
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *"$marker"* ]]
}

# hw_pid NAME: print the PID recorded for NAME (empty when none).
hw_pid() {
    local f="$HW_RUN/$1.pid"
    if [ -s "$f" ]; then tr -dc '0-9' <"$f"; fi
}

# hw_marker NAME DEFAULT: the command-line marker recorded when NAME was launched, else DEFAULT.
hw_marker() {
    local f="$HW_RUN/$1.marker"
    if [ -s "$f" ]; then cat "$f"; else printf '%s' "$2"; fi
}

# hw_forget NAME: drop the run files of NAME (pid, marker, info); the lock file stays.
hw_forget() {
    rm -f "$HW_RUN/$1.pid" "$HW_RUN/$1.marker" "$HW_RUN/$1.info"
}

# hw_running NAME MARKER: true if NAME's recorded PID is alive; removes a stale pid file.
hw_running() {
    local name="$1" marker="$2" pid
    pid="$(hw_pid "$name")"
    [ -n "$pid" ] || return 1
    if hw_alive "$pid" "$marker"; then
        return 0
    fi
    hw_forget "$name"
    return 1
}

# hw_instances PREFIX: the suffixes X of every run/PREFIX-X.pid (one per running instance).
hw_instances() {
    local f
    for f in "$HW_RUN/$1"-*.pid; do
        [ -e "$f" ] || continue
        f="${f##*/"$1"-}"
        echo "${f%.pid}"
    done
}

# hw_port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
hw_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

hw_require_free_port() {
    local port="$1" what="$2"
    if hw_port_open "$port"; then
        hw_die "port $port ($what) on 127.0.0.1 is already in use by another process; pick another port (see --help)"
    fi
}

# hw_launch NAME LOGFILE MARKER CMD...: start CMD detached (own session, stdin from /dev/null,
# stdout+stderr to LOGFILE, lock fd closed); write its PID to run/NAME.pid and MARKER (a substring
# of its command line, checked before any signal is sent) to run/NAME.marker.
hw_launch() {
    local name="$1" logfile="$2" marker="$3"
    shift 3
    printf '%s' "$marker" >"$HW_RUN/$name.marker"
    # setsid does not fork here (the background child is not a process-group leader),
    # so $! is the PID of the server itself; hw_alive checks it against the command line.
    setsid "$@" </dev/null >>"$logfile" 2>&1 9>&- &
    local pid=$!
    echo "$pid" >"$HW_RUN/$name.pid"
    # Until the child has exec'd, its command line is still this shell's and lacks MARKER, so a caller's
    # first hw_alive would take a server that is starting for one that died. Wait out that window (or the
    # child's end: a command that fails to start is the caller's to report).
    local deadline=$((SECONDS + 10))
    while [ "$SECONDS" -lt "$deadline" ] && [ -r "/proc/$pid/cmdline" ] && ! hw_alive "$pid" "$marker"; do
        sleep 0.05
    done
    # shellcheck disable=SC2034  # read by the calling script
    HW_LAUNCHED_PID="$pid"
}

# hw_stop NAME MARKER [TIMEOUT]: SIGTERM the recorded PID, wait up to TIMEOUT s (default 30),
# then SIGKILL and wait again. Succeeds (and says so) when nothing was running.
hw_stop() {
    local name="$1" marker="$2" timeout="${3:-30}" pid t0
    pid="$(hw_pid "$name")"
    if [ -z "$pid" ] || ! hw_alive "$pid" "$marker"; then
        hw_forget "$name"
        hw_log "$name: not running"
        return 0
    fi
    t0="$(hw_now)"
    hw_log "$name: stopping pid $pid (SIGTERM, up to ${timeout}s)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while hw_alive "$pid" "$marker" && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    if hw_alive "$pid" "$marker"; then
        hw_log "$name: pid $pid still alive after ${timeout}s, sending SIGKILL"
        hw_kill_wait "$name" "$pid" "$marker"
    fi
    hw_forget "$name"
    hw_log "$name: stopped (${pid}) in $(hw_since "$t0")s"
}

# hw_kill_wait NAME PID MARKER: SIGKILL PID and wait up to 10 s until it is gone; dies if it is not.
# One tail for hw_stop (a server that ignored SIGTERM) and hw_kill (a crash on purpose), so that both
# give up alike: a process that outlives SIGKILL (stuck in the kernel) is never reported as stopped.
hw_kill_wait() {
    local name="$1" pid="$2" marker="$3" deadline
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while hw_alive "$pid" "$marker" && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.1
    done
    if hw_alive "$pid" "$marker"; then
        hw_die "$name: pid $pid survived SIGKILL"
    fi
}

# hw_kill NAME MARKER: SIGKILL the recorded PID at once (no shutdown code runs, as in a crash) and wait
# until it is gone. Data dirs are left as the crash left them, so a later start recovers from them.
hw_kill() {
    local name="$1" marker="$2" pid
    pid="$(hw_pid "$name")"
    if [ -z "$pid" ] || ! hw_alive "$pid" "$marker"; then
        hw_forget "$name"
        hw_log "$name: not running"
        return 0
    fi
    hw_log "$name: killing pid $pid (SIGKILL)"
    hw_kill_wait "$name" "$pid" "$marker"
    hw_forget "$name"
    hw_log "$name: killed (${pid})"
}

# hw_tail LOGFILE...: print the last lines of each log to stderr (for loud failures).
hw_tail() {
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        echo "----- last 60 lines of $f -----" >&2
        tail -n 60 "$f" >&2 || true
    done
    echo "-----" >&2
}

# hw_rotate LOGFILE: keep the previous run's log as LOGFILE.1 so the new one starts empty.
hw_rotate() {
    local f="$1"
    if [ -s "$f" ]; then mv -f "$f" "$f.1"; fi
    : >"$f"
}

# hw_as_root CMD...: run CMD as root (directly, or through sudo when available).
hw_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        hw_die "need root to run: $*"
    fi
}

# hw_apt_install LOGNAME PACKAGE...: apt-get update + install (no recommends) as root, output in
# logs/LOGNAME-install.log, shown and fatal on failure.
hw_apt_install() {
    local log="$HW_LOGS/$1-install.log"
    shift
    export DEBIAN_FRONTEND=noninteractive
    hw_as_root apt-get update -q >"$log" 2>&1 || {
        hw_tail "$log"
        hw_die "apt-get update failed"
    }
    hw_as_root apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 || {
        hw_tail "$log"
        hw_die "apt-get install $* failed"
    }
}

# hw_need_cmd CMD DEBIAN_PACKAGE: make sure CMD exists, installing the package with apt-get if not.
hw_need_cmd() {
    local cmd="$1" pkg="$2"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || hw_die "$cmd not found (install $pkg)"
    hw_log "$cmd not found: apt-get install $pkg"
    export DEBIAN_FRONTEND=noninteractive
    { hw_as_root apt-get update -q && hw_as_root apt-get install -y -q --no-install-recommends "$pkg"; } \
        >>"$HW_LOGS/apt-$pkg.log" 2>&1 || {
        hw_tail "$HW_LOGS/apt-$pkg.log"
        hw_die "apt-get install $pkg failed"
    }
    command -v "$cmd" >/dev/null 2>&1 || hw_die "$cmd still missing after installing $pkg"
}

# hw_for_each_instance SERVICE PORT_VAR SCRIPT ACTION: run "SCRIPT ACTION" once per running instance of
# SERVICE with PORT_VAR set to its port (and KAFKA_DATA_DIR cleared so each picks its own default).
# Returns 0 if any run returned 0, else 3.
hw_for_each_instance() {
    local service="$1" port_var="$2" script="$3" action="$4" p any=3
    for p in $(hw_instances "$service"); do
        if env "$port_var=$p" KAFKA_DATA_DIR= "$script" "$action"; then any=0; fi
    done
    return "$any"
}

# hw_cmd_stop SERVICE PORT_VAR SCRIPT NAME MARKER TIMEOUT [--all]
hw_cmd_stop() {
    local service="$1" port_var="$2" script="$3" name="$4" marker="$5" timeout="$6"
    if [ "${7:-}" = "--all" ]; then
        [ -n "$(hw_instances "$service")" ] || hw_log "no $service instance running"
        hw_for_each_instance "$service" "$port_var" "$script" stop || true
        return 0
    fi
    hw_lock "$name"
    hw_stop "$name" "$marker" "$timeout"
}

# hw_cmd_status SERVICE PORT_VAR SCRIPT NAME MARKER [--all]: exit 0 if running, 3 if not.
hw_cmd_status() {
    local service="$1" port_var="$2" script="$3" name="$4" marker="$5"
    if [ "${6:-}" = "--all" ]; then
        hw_for_each_instance "$service" "$port_var" "$script" status && return 0
        echo "$service: no instance running"
        return 3
    fi
    if hw_running "$name" "$marker"; then
        echo "$name: running (pid $(hw_pid "$name")) $(cat "$HW_RUN/$name.info" 2>/dev/null || true)"
        return 0
    fi
    echo "$name: not running"
    return 3
}

# hw_make_tls DIR LABEL: a CA of the instance's own (DIR/ca.pem, the file clients trust) and a certificate for
# 127.0.0.1/localhost signed by it (DIR/server.pem, key DIR/server.key in PKCS#8, and both with the CA in
# DIR/server-keystore.pem for servers that read one PEM file), made once with openssl.
hw_make_tls() {
    local dir="$1" label="$2" log
    [ -s "$dir/server-keystore.pem" ] && [ -s "$dir/ca.pem" ] && return 0
    hw_need_cmd openssl openssl
    mkdir -p "$dir"
    log="$HW_LOGS/tls-$(basename "$(dirname "$dir")").log"
    {
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=haltwatch test CA ($label)" \
            -keyout "$dir/ca.key" -out "$dir/ca.pem" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$dir/server.rsa.key" \
                -out "$dir/server.csr" &&
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext" &&
            openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
                -CAcreateserial -days 3650 -extfile "$dir/san.ext" -out "$dir/server.pem" &&
            openssl pkcs8 -topk8 -nocrypt -in "$dir/server.rsa.key" -out "$dir/server.key"
    } >"$log" 2>&1 || { hw_tail "$log"; hw_die "openssl could not make a certificate for $label"; }
    cat "$dir/server.key" "$dir/server.pem" "$dir/ca.pem" >"$dir/server-keystore.pem"
    hw_log "made a CA and a server certificate for $label in $dir"
}
