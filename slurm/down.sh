#!/usr/bin/env bash
# Stop the local Slurm test cluster started by slurm/up.sh and remove all its state.
# Cancels every job first, then stops the daemons it started (by pid file), removes the
# generated configuration, the /etc/hosts entry and the state directory.
# KEEP_STATE=1 keeps the state directory (logs, database) for inspection.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=slurm/common.sh
source "$HERE/common.sh"

[[ $(id -u) -eq 0 ]] || die "run as root"

if pid_alive "$STATE/run/slurmctld.pid"; then
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u)
    if [[ -n $jobs ]]; then
        log "cancelling jobs: $(echo $jobs)"
        # shellcheck disable=SC2086
        scancel --full $jobs 2>/dev/null
        for ((i = 0; i < 60; i++)); do
            [[ -z $(squeue -h -t R,CG,CF -o %A 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
fi

stop_slurm_daemons
stop_pidfile "$STATE/run/slurmdbd.pid"
stop_pidfile "$STATE/mysql-run/mariadbd.pid"
if [[ -e $STATE/run/munged.ours ]]; then
    stop_pidfile /run/munge/munged.pid
fi

rm -f /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf
if grep -q "$HOSTS_MARKER" /etc/hosts; then
    kept=$(grep -v "$HOSTS_MARKER" /etc/hosts)
    printf '%s\n' "$kept" >/etc/hosts
fi
if [[ ${KEEP_STATE:-0} != 1 ]]; then
    rm -rf "$STATE"
fi
log "down"
