# Shared settings and helpers for slurm/up.sh and slurm/down.sh (sourced, not run).
STATE=${SLURM_STATE_DIR:-/var/lib/wikigraph-slurm}
CLUSTER=wikigraph
ACCOUNT=wikigraph
NODE_PREFIX=wgnode
CTLD_PORT=6817
DBD_PORT=6819
DB_PORT=3307
NODE_PORT_BASE=6831
HOSTS_MARKER="# wikigraph-slurm nodes"

log() { echo "[slurm] $*" >&2; }
die() {
    echo "[slurm] error: $*" >&2
    exit 1
}

# pid_alive PIDFILE: true when the file names a running process.
pid_alive() {
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# wait_for DESCRIPTION TIMEOUT_S CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
    local what=$1 timeout=$2 deadline
    shift 2
    deadline=$(($(date +%s) + timeout))
    until "$@" >/dev/null 2>&1; do
        if (($(date +%s) >= deadline)); then
            tail -n 15 "$STATE"/log/*.log >&2 2>/dev/null
            die "timed out after ${timeout}s waiting for $what; logs in $STATE/log"
        fi
        sleep 0.5
    done
}

# stop_pidfile PIDFILE: TERM the process it names, KILL it after 15 s.
stop_pidfile() {
    local pidfile=$1 pid i
    pid_alive "$pidfile" || {
        rm -f "$pidfile"
        return 0
    }
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

stop_slurm_daemons() {
    local f
    for f in "$STATE"/run/slurmd-*.pid; do [[ -e $f ]] && stop_pidfile "$f"; done
    stop_pidfile "$STATE/run/slurmctld.pid"
}
