#!/usr/bin/env bash
# Bring up a real local Slurm 22.05 test cluster on this machine (run as root).
#
# Daemons: munged, a private MariaDB (for slurmdbd), slurmdbd, slurmctld and one
# `slurmd -N wgnodeI` per emulated node, every node at 127.0.0.1 with its own port.
# Idempotent: on a running cluster with an unchanged configuration it only checks health.
#
# Settings (environment):
#   NODES=2            emulated nodes (wgnode1..wgnodeN)
#   CPUS_PER_NODE=2    CPUs each node advertises
#   MEM_PER_NODE=4000  RealMemory (MB) each node advertises
#   MAX_ARRAY_SIZE=1001
#   SLURM_STATE_DIR=/var/lib/wikigraph-slurm   all state, logs, spool and the database
#   WAIT_S=90          how long to wait for every node to be idle
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=slurm/common.sh
source "$HERE/common.sh"

START_TS=$(date +%s)
NODES=${NODES:-2}
CPUS_PER_NODE=${CPUS_PER_NODE:-2}
MEM_PER_NODE=${MEM_PER_NODE:-4000}
MAX_ARRAY_SIZE=${MAX_ARRAY_SIZE:-1001}
WAIT_S=${WAIT_S:-90}

[[ $(id -u) -eq 0 ]] || die "run as root (it starts system daemons and edits /etc/hosts)"
[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "NODES must be a positive integer, got '$NODES'"
[[ $CPUS_PER_NODE =~ ^[1-9][0-9]*$ ]] || die "CPUS_PER_NODE must be a positive integer"
[[ $MEM_PER_NODE =~ ^[1-9][0-9]*$ ]] || die "MEM_PER_NODE must be a positive integer (MB)"

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v munged >/dev/null || missing+=(munge)
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    [[ ${#missing[@]} -eq 0 ]] && return
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$STATE/log/apt.log" 2>&1; then
        apt-get update >>"$STATE/log/apt.log" 2>&1
        apt-get install -y --no-install-recommends "${missing[@]}" >>"$STATE/log/apt.log" 2>&1 ||
            die "apt-get install ${missing[*]} failed; see $STATE/log/apt.log"
    fi
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    [[ -s /etc/munge/munge.key ]] || {
        mungekey --create --force >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    }
    install -d -o munge -g munge -m 755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$STATE/run/munged.ours"  # down.sh stops munged only if we started it
    wait_for "munge" 20 bash -c 'munge -n | unmunge >/dev/null 2>&1'
}

start_mariadb() {
    local sock="$STATE/mysql-run/mysqld.sock"
    if [[ ! -d $STATE/mysql/mysql ]]; then
        install -d -o mysql -g mysql "$STATE/mysql" "$STATE/mysql-run"
        mariadb-install-db --user=mysql --datadir="$STATE/mysql" --skip-test-db \
            --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
    fi
    if ! pid_alive "$STATE/mysql-run/mariadbd.pid"; then
        # innodb native AIO is off because sandboxed kernels (gVisor) lack io_submit.
        setsid mariadbd --user=mysql --datadir="$STATE/mysql" --socket="$sock" \
            --pid-file="$STATE/mysql-run/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
            --skip-name-resolve --innodb-use-native-aio=0 --innodb-buffer-pool-size=64M \
            --log-error="$STATE/log/mariadb.log" </dev/null >/dev/null 2>&1 &
        wait_for "mariadb" 60 mariadb-admin --socket="$sock" ping
    fi
    [[ -s $STATE/db.pass ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/db.pass")
    local pass
    pass=$(cat "$STATE/db.pass")
    mariadb --socket="$sock" -e "
        CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

write_configs() {
    local new="$STATE/slurm.conf.new" host i
    host=$(hostname)
    render "$HERE/slurm.conf.in" >"$new"
    {
        echo "SlurmdParameters=config_overrides  # emulated nodes may claim more than the host has"
        for ((i = 1; i <= NODES; i++)); do
            echo "NodeName=$NODE_PREFIX$i NodeHostname=$host NodeAddr=127.0.0.1 Port=$((NODE_PORT_BASE + i - 1)) CPUs=$CPUS_PER_NODE RealMemory=$MEM_PER_NODE State=UNKNOWN"
        done
        local all="$NODE_PREFIX[1-$NODES]"
        [[ $NODES -eq 1 ]] && all="${NODE_PREFIX}1"
        echo "PartitionName=debug Nodes=$all Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=30"
        echo "PartitionName=urgent Nodes=$all MaxTime=INFINITE State=UP PriorityTier=2"
    } >>"$new"
    (umask 077 && render "$HERE/slurmdbd.conf.in" >/etc/slurm/slurmdbd.conf)
    if [[ -f /etc/slurm/slurm.conf ]] && cmp -s "$new" /etc/slurm/slurm.conf; then
        rm -f "$new"
        return 1 # unchanged
    fi
    mv "$new" /etc/slurm/slurm.conf
    return 0
}

render() {
    sed -e "s|@STATE@|$STATE|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@MAX_ARRAY@|$MAX_ARRAY_SIZE|g" \
        -e "s|@DB_PASS@|$(cat "$STATE/db.pass")|g" "$1"
}

update_hosts() {
    # Node names must resolve (MASTER_ADDR is the first node's name). Rewrite in place:
    # /etc/hosts is often a bind mount that cannot be replaced by a rename.
    local names="" i
    for ((i = 1; i <= NODES; i++)); do names+=" $NODE_PREFIX$i"; done
    local kept
    kept=$(grep -v "$HOSTS_MARKER" /etc/hosts || true)
    printf '%s\n127.0.0.1%s %s\n' "$kept" "$names" "$HOSTS_MARKER" >/etc/hosts
}

ensure_accounting() {
    wait_for "slurmdbd" 60 sacctmgr -n list cluster
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" ||
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" ||
        sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="local test jobs" organization=wikigraph >/dev/null
    local user
    for user in root ${SUDO_USER:-}; do
        sacctmgr -n -P list assoc user="$user" account="$ACCOUNT" format=user | grep -qx "$user" ||
            sacctmgr -i add user "$user" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
    done
}

start_slurm() {
    local i
    if ! pid_alive "$STATE/run/slurmdbd.pid"; then slurmdbd; fi
    ensure_accounting
    if ! pid_alive "$STATE/run/slurmctld.pid"; then slurmctld; fi
    wait_for "slurmctld" 30 scontrol ping
    for ((i = 1; i <= NODES; i++)); do
        install -d "$STATE/spool/$NODE_PREFIX$i"
        pid_alive "$STATE/run/slurmd-$NODE_PREFIX$i.pid" || slurmd -N "$NODE_PREFIX$i"
    done
}

all_idle() {
    local states
    states=$(sinfo -h -N -p debug -o '%N %t' 2>/dev/null | sort -u) || return 1
    [[ $(grep -c ' idle$' <<<"$states") -eq $NODES ]]
}

install -d -m 755 "$STATE" "$STATE/log" "$STATE/run" "$STATE/ctld" "$STATE/spool" /etc/slurm
install_packages
start_munge
start_mariadb
if write_configs && pid_alive "$STATE/run/slurmctld.pid"; then
    log "configuration changed: restarting Slurm daemons"
    stop_slurm_daemons
fi
update_hosts
start_slurm
wait_for "all $NODES nodes idle (sinfo)" "$WAIT_S" all_idle

printf 'slurm up: cluster=%s nodes=%s (%s x %s CPUs, %s MB) partitions=debug*,urgent MaxArraySize=%s accounting=slurmdbd state=%s in %ss\n' \
    "$CLUSTER" "$NODES" "$NODE_PREFIX[1-$NODES]" "$CPUS_PER_NODE" "$MEM_PER_NODE" \
    "$(scontrol show config | awk '/^MaxArraySize/{print $3}')" "$STATE" "$(($(date +%s) - START_TS))"
