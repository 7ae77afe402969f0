#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the `cluster` tests and for trying the recipe's
# SLURM launcher: scripts/slurm_cluster.sh start|stop|status
#
# start:  installs Debian's slurmctld/slurmd/slurm-client/munge with apt-get when missing (root),
#         writes a private munge key and slurm.conf under $RNNLIB_SLURM_DIR, starts munged,
#         slurmctld and slurmd (no systemd) and waits for the node to be idle.
# stop:   kills the daemons by the PIDs in their pid files (nothing else).
# status: prints `export SLURM_CONF=...` and sinfo; exit 1 when the cluster is not up.
# Clients need SLURM_CONF=$RNNLIB_SLURM_DIR/slurm.conf (jobs inherit it from sbatch).
# No accounting storage: `sacct` fails and submitit falls back to the result files it writes.
set -euo pipefail

STATE=${RNNLIB_SLURM_DIR:-/tmp/rnnlib-slurm}
PORT=${RNNLIB_SLURM_PORT:-6817}      # slurmctld; slurmd uses PORT+1
CPUS=${RNNLIB_SLURM_CPUS:-4}         # advertised CPUs (may exceed the real ones)
NODE=$(hostname -s)
CONF=$STATE/slurm.conf

log() { echo "slurm_cluster: $*" >&2; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null && return 0
  if [ "$(id -u)" != 0 ]; then log "slurm is not installed and we are not root"; return 1; fi
  command -v apt-get >/dev/null || { log "no apt-get to install slurm with"; return 1; }
  log "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_config() {
  mkdir -p "$STATE"/{munge,ctld,d,log}
  chmod 700 "$STATE" "$STATE/munge"
  if [ ! -s "$STATE/munge/munge.key" ]; then
    head -c 1024 /dev/urandom >"$STATE/munge/munge.key"
    chmod 400 "$STATE/munge/munge.key"
  fi
  local mem
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  cat >"$CONF" <<CONF
ClusterName=rnnlib
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays the restart of a requeued job (default 120 s)
AuthInfo=socket=$STATE/munge/munge.socket,cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=10
SchedulerParameters=sched_interval=2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

wait_idle() {
  for _ in $(seq 60); do
    if SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      return 0
    fi
    sleep 1
  done
  log "node did not become idle; see $STATE/log"
  return 1
}

start() {
  install_packages
  if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
    log "already running"
    return 0
  fi
  stop 2>/dev/null || true
  write_config
  munged --force --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munge.seed"
  slurmctld -c -f "$CONF"
  slurmd -f "$CONF" -N "$NODE"
  wait_idle
  SLURM_CONF=$CONF scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
  log "up: export SLURM_CONF=$CONF"
}

stop() {
  local pidfile
  for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munge/munged.pid"; do
    if alive "$pidfile"; then
      kill "$(cat "$pidfile")"
      for _ in $(seq 50); do alive "$pidfile" || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  done
}

status() {
  echo "export SLURM_CONF=$CONF"
  alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" || { log "not running"; return 1; }
  SLURM_CONF=$CONF sinfo
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
