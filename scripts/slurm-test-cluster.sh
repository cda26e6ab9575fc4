#!/usr/bin/env bash
# A single-node Slurm "cluster" on this machine, for tests of `flatminima sweep --executor slurm`.
#
#   scripts/slurm-test-cluster.sh install        # Debian's slurm-wlm + munge (needs root; apt-get)
#   scripts/slurm-test-cluster.sh start DIR      # munged + slurmctld + slurmd, all state under DIR
#   scripts/slurm-test-cluster.sh stop DIR       # stops exactly the daemons `start DIR` started
#
# `start` writes DIR/slurm.conf; clients (sbatch, squeue, submitit) must see SLURM_CONF=DIR/slurm.conf.
# The node is `localhost` with CPUs=2 in partition `debug`; no cgroups (ProctrackType=proctrack/linuxproc,
# TaskPlugin=task/none), no accounting database. Its own munged socket and key live under DIR, so a
# system munged (if any) is left alone. Daemons run as the calling user, which must be root.
set -euo pipefail

die() { echo "slurm-test-cluster: $*" >&2; exit 1; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "slurm-wlm/munge are not installed and installing them needs root (apt-get install slurm-wlm munge)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge
}

start() {
    local dir=$1 host
    [ "$(id -u)" = 0 ] || die "the test cluster runs its daemons as root; run as root"
    install
    host=$(hostname -s)
    mkdir -p "$dir"/{munge,state,spool,log}
    dir=$(cd "$dir" && pwd)
    chmod 700 "$dir/munge"
    [ -s "$dir/munge/munge.key" ] || { dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none; }
    chmod 600 "$dir/munge/munge.key"
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"
    cat > "$dir/slurm.conf" <<EOF
ClusterName=flatminima-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${FLATMINIMA_SLURMCTLD_PORT:-6817}
SlurmdPort=${FLATMINIMA_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -i
    slurmd -N localhost
    for _ in $(seq 60); do
        state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
        if [ "$state" = idle ]; then
            echo "slurm-test-cluster: up (SLURM_CONF=$SLURM_CONF, node localhost idle)"
            return 0
        fi
        sleep 0.5
    done
    echo "slurm-test-cluster: node state '${state:-none}' after 30 s; logs:" >&2
    tail -n 20 "$dir"/log/*.log >&2 || true
    stop "$dir"
    exit 1
}

stop() {
    local dir=$1 pidfile pid
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        [ -s "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
        rm -f "$pidfile"
    done
    echo "slurm-test-cluster: stopped ($dir)"
}

case "${1:-}" in
    install) install ;;
    start) [ $# = 2 ] || die "usage: $0 start DIR"; start "$2" ;;
    stop) [ $# = 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
