#!/usr/bin/env bash
# local-slurm.sh — a throw-away Slurm cluster on this one machine, for the SLURM tests and CI.
#
# Usage (as root):
#   local-slurm.sh start  [DIR]   install if needed, write configs into DIR, (re)start daemons,
#                                       wait until every node is idle
#   local-slurm.sh stop   [DIR]   cancel jobs, stop the daemons this script started (by pid)
#   local-slurm.sh status [DIR]
# DIR defaults to $SLURM_CI_DIR or /tmp/slurm-ci.  Holds etc/ (configs), run/ (pid files),
# log/, state/, spool/, dev/ (fake GPU device nodes).
#
# Knobs (environment):
#   SLURM_CI_ACCOUNTING=1   1: slurmdbd + MariaDB, so `sacct` works (the plugin's default status
#                           command).  0: no accounting; then run snakemake with
#                           `--slurm-status-command squeue` or it waits forever.
#   SLURM_CI_NODES=2        virtual nodes node1..nodeN, all on this host (Debian builds slurmd with
#                           multiple-slurmd support), so jobs may ask for --nodes up to N.
#   SLURM_CI_CPUS=$(nproc)  CPUs each node claims (may exceed the real cores: config_overrides).
#   SLURM_CI_MEM_MB=4000    RealMemory each node claims.
#   SLURM_CI_GPUS=2         fake GPUs per node (gres/gpu backed by links to /dev/null); 0 disables.
#   SLURM_CI_PARTITION=debug
#
# Slurm's client commands and the snakemake jobstep plugin read /etc/slurm/slurm.conf (the jobstep
# plugin drops SLURM_CONF from the environment of its inner srun), so the configs written into
# DIR/etc are also linked into /etc/slurm.
set -euo pipefail
export PATH="/usr/sbin:/sbin:$PATH"

ACTION=${1:-start}
DIR=${2:-${SLURM_CI_DIR:-/tmp/slurm-ci}}
ACCOUNTING=${SLURM_CI_ACCOUNTING:-1}
NODES=${SLURM_CI_NODES:-2}
CPUS=${SLURM_CI_CPUS:-$(nproc)}
MEM_MB=${SLURM_CI_MEM_MB:-4000}
GPUS=${SLURM_CI_GPUS:-2}
PARTITION=${SLURM_CI_PARTITION:-debug}
CLUSTER=ci
DB_PASS=slurmci
PORT_BASE=17000

log() { printf '[local-slurm %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
case "$DIR" in /?*) ;; *) die "DIR must be an absolute path, got '$DIR'" ;; esac
[ "$DIR" != / ] || die "DIR must not be /"
# Make this script's own client and daemon calls independent of the caller's environment.
export SLURM_CONF="$DIR/etc/slurm.conf"

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pidfile_pid() { [ -s "$1" ] && tr -dc '0-9' <"$1" || true; }

# Wait until "$@" succeeds, at most $TIMEOUT seconds (default 60).
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + ${TIMEOUT:-60}))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out waiting for $what"
    sleep 0.5
  done
}

# Stop daemons given as COMMAND=PIDFILE pairs: SIGTERM to all of them at once, wait (30 s at
# most) for them to exit, SIGKILL what is left.  Only pids recorded in our pid files are touched,
# and only if that pid still runs the expected command (a stale pid file may name a reused pid).
stop_pidfiles() {
  local pair name file pid pids=() names=()
  for pair in "$@"; do
    name=${pair%%=*} file=${pair#*=}
    pid=$(pidfile_pid "$file")
    if pid_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
      kill "$pid" 2>/dev/null || true
      pids+=("$pid") names+=("$name($pid)")
    fi
    rm -f "$file"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  local deadline=$((SECONDS + 30)) alive
  while :; do
    alive=()
    for pid in "${pids[@]}"; do pid_alive "$pid" && alive+=("$pid"); done
    [ ${#alive[@]} -gt 0 ] && [ $SECONDS -lt $deadline ] || break
    sleep 0.2
  done
  for pid in "${alive[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  log "stopped ${names[*]}"
}

node_names() { local i; for ((i = 1; i <= NODES; i++)); do echo "node$i"; done; }

install_packages() {
  local pkgs=(slurm-wlm munge)
  local need=0
  for b in slurmctld slurmd sbatch sacct munged; do command -v "$b" >/dev/null || need=1; done
  if [ "$ACCOUNTING" = 1 ]; then
    pkgs+=(slurmdbd mariadb-server)
    for b in slurmdbd mariadbd; do command -v "$b" >/dev/null || need=1; done
  fi
  if [ $need = 1 ]; then
    log "installing ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
}

# Stop everything this script started earlier with the same DIR (children first).
stop_all() {
  if [ -s "$DIR/run/slurmctld.pid" ] && pid_alive "$(pidfile_pid "$DIR/run/slurmctld.pid")"; then
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      log "cancelling jobs: $(tr '\n' ' ' <<<"$jobs")"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      local deadline=$((SECONDS + 30))
      while [ -n "$(squeue -h -t R,CG,PD -o %i 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    fi
  fi
  local f slurmds=()
  for f in "$DIR"/run/slurmd-*.pid; do
    [ -e "$f" ] && slurmds+=("slurmd=$f")
  done
  stop_pidfiles "${slurmds[@]}"
  stop_pidfiles "slurmctld=$DIR/run/slurmctld.pid" "slurmdbd=$DIR/run/slurmdbd.pid"
  stop_pidfiles "mariadbd=$DIR/mariadb/mariadb.pid"
  if [ -e "$DIR/run/munged.ours" ]; then
    stop_pidfiles "munged=/run/munge/munged.pid"
    rm -f "$DIR/run/munged.ours"
  fi
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running; reusing it"
    return
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --force
  touch "$DIR/run/munged.ours"
  wait_for munged sh -c 'munge -n | unmunge'
}

start_mariadb() {
  # A private, socket-only MariaDB (no TCP port) used by slurmdbd.
  install -d -o mysql -g mysql -m 0755 /run/mysqld "$DIR/mariadb"
  if [ ! -d /var/lib/mysql/mysql ]; then
    log "initialising MariaDB data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$DIR/log/mariadb-install.log" 2>&1
  fi
  if mariadb-admin ping >/dev/null 2>&1; then
    log "MariaDB already running; reusing it"
  else
    setsid /usr/sbin/mariadbd --user=mysql --skip-networking \
      --socket=/run/mysqld/mysqld.sock --pid-file="$DIR/mariadb/mariadb.pid" \
      --log-error="$DIR/mariadb/mariadb.log" </dev/null >/dev/null 2>&1 &
    wait_for mariadb mariadb-admin ping
  fi
  # A fresh accounting database on every start (job ids restart at 1 with the wiped state).
  mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db;
              CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

write_configs() {
  local host cfg=$DIR/etc
  host=$(hostname -s)
  local acct_lines
  if [ "$ACCOUNTING" = 1 ]; then
    acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux"
  else
    acct_lines="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
  fi
  local gres_node="" gres_types=""
  if [ "$GPUS" -gt 0 ]; then
    gres_node="Gres=gpu:$GPUS"
    gres_types="GresTypes=gpu"
  fi
  local nodes_range="node[1-$NODES]" ports="$((PORT_BASE + 1))-$((PORT_BASE + NODES))"
  if [ "$NODES" -eq 1 ]; then nodes_range=node1 ports=$((PORT_BASE + 1)); fi
  cat >"$cfg/slurm.conf" <<EOF
# Written by local-slurm.sh — single-machine test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
$acct_lines
JobCompType=jobcomp/none
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmdParameters=config_overrides
$gres_types
NodeName=$nodes_range NodeHostname=$host NodeAddr=127.0.0.1 Port=$ports CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM_MB $gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if [ "$GPUS" -gt 0 ]; then
    # Fake GPUs: gres/gpu needs a device file per GPU; links to /dev/null pass slurmd's check and
    # Slurm then sets CUDA_VISIBLE_DEVICES for jobs that ask for --gpus/--gres=gpu.
    local g
    for ((g = 0; g < GPUS; g++)); do
      ln -sfn /dev/null "$DIR/dev/gpu$g"
    done
    printf 'AutoDetect=off\nNodeName=%s Name=gpu File=%s/dev/gpu[0-%d]\n' \
      "$nodes_range" "$DIR" $((GPUS - 1)) >"$cfg/gres.conf"
  else
    : >"$cfg/gres.conf"
  fi
  cat >"$cfg/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$cfg/slurmdbd.conf"
  mkdir -p /etc/slurm
  local f
  for f in slurm.conf gres.conf slurmdbd.conf; do
    if [ -e "/etc/slurm/$f" ] && [ ! -L "/etc/slurm/$f" ]; then
      mv "/etc/slurm/$f" "/etc/slurm/$f.before-local-slurm"
      log "moved existing /etc/slurm/$f aside"
    fi
    ln -sfn "$cfg/$f" "/etc/slurm/$f"
  done
}

all_nodes_idle() {
  local states
  states=$(sinfo -h -N -o '%t' 2>/dev/null) || return 1
  [ "$(grep -c '^idle$' <<<"$states")" -eq "$NODES" ]
}

start_all() {
  local t0=$SECONDS
  install_packages
  log "packages ready ($((SECONDS - t0)) s); $(slurmd -V)"
  stop_all
  rm -rf "${DIR:?}/state" "${DIR:?}/spool" "${DIR:?}/dev"
  mkdir -p "$DIR"/{etc,run,log,state,dev}
  local n
  for n in $(node_names); do mkdir -p "$DIR/spool/$n"; done
  write_configs
  start_munge
  if [ "$ACCOUNTING" = 1 ]; then
    start_mariadb
    slurmdbd
    # sacctmgr only answers once slurmdbd is up.
    wait_for slurmdbd sacctmgr -n list cluster
  fi
  slurmctld -f "$DIR/etc/slurm.conf"
  wait_for slurmctld scontrol ping
  for n in $(node_names); do slurmd -N "$n" -f "$DIR/etc/slurm.conf"; done
  TIMEOUT=90 wait_for "idle nodes" all_nodes_idle
  if [ "$ACCOUNTING" = 1 ]; then
    # slurmctld registers the cluster (and root's association) in slurmdbd by itself; wait for it.
    TIMEOUT=30 wait_for "cluster registration" sh -c "sacctmgr -n -P list cluster format=cluster | grep -qx $CLUSTER"
  fi
  log "cluster up in $((SECONDS - t0)) s:"
  sinfo -N -o '%N %t %c %m %G' >&2
}

case "$ACTION" in
  start) start_all ;;
  stop)
    stop_all
    log "stopped"
    ;;
  status)
    for f in "$DIR"/run/*.pid "$DIR"/mariadb/*.pid /run/munge/munged.pid; do
      [ -e "$f" ] || continue
      p=$(pidfile_pid "$f")
      if pid_alive "$p"; then echo "$(basename "$f" .pid): running (pid $p)"; else echo "$(basename "$f" .pid): dead"; fi
    done
    sinfo -N -o '%N %t %c %m %G' || true
    ;;
  *) die "unknown action '$ACTION' (start|stop|status)" ;;
esac
