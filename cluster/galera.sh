#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on 127.0.0.1, for tests and chaos runs.
#
#   cluster/galera.sh up        start the cluster (idempotent), print one URL per node
#   cluster/galera.sh down      stop every node and remove its data (idempotent)
#   cluster/galera.sh kill N    crash node N (kill -9) and wait until its process is gone
#   cluster/galera.sh start N   start node N again, joining the others (IST or SST), wait until Synced
#   cluster/galera.sh status    one line per node: answers?, wsrep_cluster_size, wsrep_local_state_comment
#   cluster/galera.sh urls      the three URLs, comma-separated, on one line
#
# Node N listens on 127.0.0.1:331N (SQL), 456N (gcomm), 457N (IST), 458N (SST), and keeps
# everything (config, data, socket, pid file, logs) under target/cluster/galera.
# Progress and errors go to stderr; stdout carries only the URLs (up, urls) or the status lines.
# Needs root: it installs packages, and the servers run as the mysql user.
# GALERA_TIMEOUT (seconds, default 120) bounds every wait for the cluster to become healthy.
set -euo pipefail

SCRIPT=$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")
cd "$(dirname "$0")/.."
REPO=$(pwd -P)
BASE=$REPO/target/cluster            # the lock file lives here, so that `down` can remove $D under it
D=$BASE/galera
NODES=(1 2 3)
TIMEOUT=${GALERA_TIMEOUT:-120}
PROVIDER=/usr/lib/galera/libgalera_smm.so
PEERS=gcomm://127.0.0.1:4561,127.0.0.1:4562,127.0.0.1:4563

log() { printf 'galera: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

url() { printf 'mysql://root@127.0.0.1:331%s/test' "$1"; }

# ---------------------------------------------------------------------------------------------
# Packages. CI starts from a fresh machine, so the script installs what it needs itself.

ensure_packages() {
  local pkgs=()
  [[ -e $PROVIDER ]] || pkgs+=(galera-4)
  command -v rsync >/dev/null || pkgs+=(rsync)                 # the SST method
  command -v mariadbd >/dev/null || pkgs+=(mariadb-server)     # normally already there
  command -v mariadb >/dev/null || pkgs+=(mariadb-client)
  ((${#pkgs[@]})) || return 0
  log "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be missing or stale on a fresh machine: update only when needed.
  apt-get install -y "${pkgs[@]}" >&2 || { apt-get update >&2 && apt-get install -y "${pkgs[@]}" >&2; }
  [[ -e $PROVIDER ]] || die "$PROVIDER is still missing after installing galera-4"
}

# ---------------------------------------------------------------------------------------------
# Processes. A node's mariadbd is found through its pid file; the pid file outlives a kill -9
# (and the pid may be reused), so the process must also be a live mariadbd started with this
# node's config file. Before mariadbd has written its pid file (early start-up), fall back to
# looking for that command line in /proc.

cnf() { printf '%s/n%s.cnf' "$D" "$1"; }

# These run over every process in /proc, so they use bash builtins only (no fork per process)
# and return their answer in a variable: COMM, CMDLINE.
proc_comm() { COMM=; read -r COMM 2>/dev/null <"/proc/$1/comm"; }
proc_cmdline() { # the arguments, each followed by a space
  local a
  CMDLINE=
  mapfile -d '' a 2>/dev/null <"/proc/$1/cmdline" || return 1
  ((${#a[@]})) || return 0
  printf -v CMDLINE '%s ' "${a[@]}"
}
proc_alive() { # pid: exists and is no zombie (a zombie is dead even if nobody reaped it yet)
  local line
  read -r line 2>/dev/null <"/proc/$1/stat" || return 1
  line=${line##*) }
  [[ ${line%% *} != Z ]]
}

is_node_pid() { # pid n
  local pid=$1 n=$2
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  proc_comm "$pid" && [[ $COMM == mariadbd ]] && proc_alive "$pid" && proc_cmdline "$pid" || return 1
  [[ $CMDLINE == *"--defaults-file=$D/n$n.cnf "* ]]
}

node_pid() { # n -> pid on stdout, or status 1 when the node's mariadbd does not run
  local n=$1 pid p
  pid=$(cat "$D/p$n.pid" 2>/dev/null || true)
  if is_node_pid "$pid" "$n"; then echo "$pid"; return 0; fi
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    if is_node_pid "$pid" "$n"; then echo "$pid"; return 0; fi
  done
  return 1
}

running() { node_pid "$1" >/dev/null; }

# Helpers of ours that may outlive a node (an SST script and its rsync daemon, a node that
# wrote no pid file): a mariadbd, rsync or wsrep_sst_* process whose command line names the
# cluster directory. Nothing else (say, a `tail -f` on a log) is touched.
stray_pids() {
  local p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    proc_comm "$pid" || continue
    [[ $COMM == mariadbd || $COMM == rsync || $COMM == wsrep_sst* ]] || continue
    if proc_cmdline "$pid" && [[ $CMDLINE == *"$D/"* ]]; then echo "$pid"; fi
  done
}

wait_gone() { # seconds pid...; status 1 if some are still alive after that long
  local seconds=$1 pid alive; shift
  local deadline=$((SECONDS + seconds))
  while :; do
    alive=0
    for pid in "$@"; do
      if proc_alive "$pid"; then alive=1; fi
    done
    ((alive)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------------
# SQL. Management goes through the node's unix socket as root (root@localhost authenticates
# with unix_socket in a fresh mariadb-install-db), falling back to TCP (root@127.0.0.1 without
# password, created by `up`) so that status also works for another user. --no-defaults keeps
# the machine's own /etc/mysql/my.cnf (the server on 3306) out of it.

sql() { # n statement... ; output tab-separated without headers
  local n=$1; shift
  mariadb --no-defaults --protocol=socket -S "$D/s$n.sock" -uroot --connect-timeout=2 -N -B -e "$*" 2>/dev/null ||
    mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"331$n" -uroot --connect-timeout=2 -N -B -e "$*" 2>/dev/null
}

# "size|cluster status|local state|ready" of node n, e.g. "3|Primary|Synced|ON"; status 1 if it
# does not answer. SHOW is allowed even while the node is not ready (a SELECT would be refused).
wsrep_state() {
  local out
  out=$(sql "$1" "SHOW GLOBAL STATUS WHERE Variable_name IN
        ('wsrep_cluster_size','wsrep_cluster_status','wsrep_local_state_comment','wsrep_ready')") || return 1
  awk -F'\t' '{v[$1]=$2} END {printf "%s|%s|%s|%s\n", v["wsrep_cluster_size"], v["wsrep_cluster_status"],
              v["wsrep_local_state_comment"], v["wsrep_ready"]}' <<<"$out"
}

healthy() { # every node answers, is Synced and ready in a primary component of 3
  local n
  for n in "${NODES[@]}"; do
    [[ $(wsrep_state "$n" 2>/dev/null) == "3|Primary|Synced|ON" ]] || return 1
  done
}

running_nodes() { local n; for n in "${NODES[@]}"; do if running "$n"; then echo "$n"; fi; done; }

# Every running node is Synced and ready, in one primary component made of exactly the running
# nodes (3 when all run). `start N` waits for this, so that it also works while another node is
# still down (two were killed).
running_healthy() {
  local n nodes
  mapfile -t nodes < <(running_nodes)
  ((${#nodes[@]})) || return 1
  for n in "${nodes[@]}"; do
    [[ $(wsrep_state "$n" 2>/dev/null) == "${#nodes[@]}|Primary|Synced|ON" ]] || return 1
  done
}

# ---------------------------------------------------------------------------------------------
# Nodes.

write_cnf() { # n; rewritten before every start so that a change here applies to a restarted node
  local n=$1
  cat >"$(cnf "$n")" <<EOF
[mysqld]
user                           = mysql
datadir                        = $D/d$n
port                           = 331$n
socket                         = $D/s$n.sock
pid-file                       = $D/p$n.pid
log-error                      = $D/err$n.log
# Own tmpdir: a starting server deletes every #sql* file in its tmpdir, which with a shared /tmp
# would pull internal temporary tables from under the other nodes (and the machine's server).
tmpdir                         = $D/tmp$n
bind-address                   = 127.0.0.1
# root@127.0.0.1 must match as 127.0.0.1, not as localhost (root@localhost is socket-only).
skip-name-resolve
character-set-server           = utf8mb4
collation-server               = utf8mb4_general_ci
max-connections                = 500
default-storage-engine         = InnoDB
innodb-buffer-pool-size        = 128M
# Durability comes from the cluster; tests do not need an fsync per commit.
innodb-flush-log-at-trx-commit = 2
# Galera requirements.
binlog-format                  = ROW
innodb-autoinc-lock-mode       = 2
wsrep-on                       = ON
wsrep-provider                 = $PROVIDER
wsrep-cluster-name             = fsm
wsrep-cluster-address          = $PEERS
wsrep-node-name                = node$n
wsrep-node-address             = 127.0.0.1:456$n
wsrep-node-incoming-address    = 127.0.0.1:331$n
# gcache.size: large enough that a killed node rejoins with IST rather than a full SST.
wsrep-provider-options         = "gmcast.listen_addr=tcp://127.0.0.1:456$n;ist.recv_addr=127.0.0.1:457$n;gcache.size=256M"
wsrep-sst-method               = rsync
wsrep-sst-receive-address      = 127.0.0.1:458$n
wsrep-slave-threads            = 4
EOF
}

init_node() { # n: an empty data directory with the system tables
  local n=$1
  mkdir -p "$D/d$n" "$D/tmp$n"
  chown -R mysql:mysql "$D"   # the mysql user writes sockets, pid files and logs there too
  # --skip-test-db: its `test` database would be latin1 and make CREATE DATABASE IF NOT EXISTS
  # a no-op; `up` creates `test` with utf8mb4 instead. --tmpdir (passed on to the bootstrap
  # server): the three installs run at once, and each server start empties its tmpdir of #sql*
  # files, which made a parallel install fail ("Unknown table 'mysql.tmp_user_sys'").
  mariadb-install-db --no-defaults --user=mysql --datadir="$D/d$n" --tmpdir="$D/tmp$n" --skip-test-db \
    >"$D/install$n.log" 2>&1 || { cat "$D/install$n.log" >&2; die "mariadb-install-db failed for node $n"; }
}

# After a crash (kill -9) grastate.dat says seqno -1: Galera does not know how far the node got
# and would ask for a full SST (with rsync the donor is read-locked meanwhile). Recovering the
# position from InnoDB first (what the packaged galera_recovery does for systemd) lets the node
# rejoin with IST from a peer's gcache instead. Prints the position, or nothing.
recover_position() { # n
  local n=$1
  local grastate=$D/d$n/grastate.dat log=$D/recover$n.log
  [[ -f $grastate ]] && grep -qE '^seqno:[[:space:]]+-1$' "$grastate" || return 0
  mariadbd --defaults-file="$(cnf "$n")" --wsrep-recover --disable-log-error >"$log" 2>&1 ||
    { log "position recovery of node $n failed (see $log): it will rejoin with a full SST"; return 0; }
  sed -n 's/.*WSREP: Recovered position: *\([0-9a-f-]*:-\{0,1\}[0-9]*\).*/\1/p' "$log" | tail -n 1
}

launch() { # n [extra mariadbd options]: start node n detached, so that the caller may exit
  local n=$1 pos; shift
  [[ -d $D/d$n/mysql ]] || init_node "$n"
  mkdir -p "$D/tmp$n"
  write_cnf "$n"
  chown -R mysql:mysql "$D"
  pos=$(recover_position "$n")
  if [[ -n $pos ]]; then set -- "$@" --wsrep-start-position="$pos"; fi
  log "starting node $n${*:+ ($*)}"
  # setsid: own session, no SIGHUP when the calling shell goes; every standard stream goes to a
  # file so that a caller reading our stdout through a pipe is not held open by the server;
  # 9>&- : the server must not inherit the lock.
  setsid nohup mariadbd --defaults-file="$(cnf "$n")" "$@" </dev/null >>"$D/n$n.out" 2>&1 9>&- &
}

# Wait until the cluster is healthy. `survivors` are nodes that were already running before this
# command: if they are left in a non-primary component (e.g. two of three were killed, the last
# one lost quorum), nobody can join them, so after a grace period the first of them is told to
# bootstrap a new primary component from its state (pc.bootstrap), which Galera documents for
# exactly that case. A node that was just started is never bootstrapped here.
wait_healthy() { # all|running survivors...
  local want=$1; shift
  local deadline=$((SECONDS + TIMEOUT)) next_report=$((SECONDS + 10)) no_primary_since=
  local n st states primary s
  while :; do
    if [[ $want == all ]]; then healthy && return 0; else running_healthy && return 0; fi
    primary=0 states=
    for n in "${NODES[@]}"; do
      st=$(wsrep_state "$n" 2>/dev/null) || st=down
      states+=" $n:$st"
      [[ $st == *"|Primary|"* ]] && primary=1
    done
    if ((primary)) || (($# == 0)); then
      no_primary_since=
    elif [[ -z $no_primary_since ]]; then
      no_primary_since=$SECONDS
    elif ((SECONDS - no_primary_since >= 15)); then
      for s in "$@"; do
        if [[ $(wsrep_state "$s" 2>/dev/null) == *"|non-Primary|"* ]]; then
          log "node $s is in a non-primary component: bootstrapping a primary component from it"
          sql "$s" "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'" || true
          break
        fi
      done
      no_primary_since=
    fi
    if ((SECONDS >= deadline)); then
      log "cluster not healthy after ${TIMEOUT}s (node:size|status|state|ready):$states"
      for n in "${NODES[@]}"; do
        log "---- tail of $D/err$n.log"
        tail -n 30 "$D/err$n.log" >&2 2>/dev/null || true
      done
      exit 1
    fi
    if ((SECONDS >= next_report)); then
      log "waiting (node:size|status|state|ready):$states"
      next_report=$((SECONDS + 10))
    fi
    sleep 1
  done
}

wait_node_ready() { # n: until node n alone is Synced and ready (the bootstrap node)
  local n=$1 deadline=$((SECONDS + TIMEOUT)) started=$SECONDS
  until [[ $(wsrep_state "$n" 2>/dev/null) == *"|Primary|Synced|ON" ]]; do
    # Give setsid/nohup a moment to exec mariadbd before taking "not running" as a failure.
    if { ((SECONDS - started > 5)) && ! running "$n"; } || ((SECONDS >= deadline)); then
      tail -n 30 "$D/err$n.log" >&2 2>/dev/null || true
      die "node $n did not come up"
    fi
    sleep 0.5
  done
}

# Accounts and database for the tests, run on one node and replicated (TOI) to the others.
setup_sql() {
  local n=$1 anon
  # Anonymous users (''@localhost, ''@hostname) would shadow root@'%' for local clients.
  anon=$(sql "$n" "SELECT GROUP_CONCAT(CONCAT(QUOTE(User),'@',QUOTE(Host))) FROM mysql.global_priv WHERE User=''")
  [[ -z $anon || $anon == NULL ]] || sql "$n" "DROP USER IF EXISTS $anon" || die "cannot drop anonymous users"
  sql "$n" "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
            GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
            CREATE USER IF NOT EXISTS 'root'@'%';
            GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
            CREATE DATABASE IF NOT EXISTS test CHARACTER SET utf8mb4;" || die "cannot create users/database on node $n"
}

check_urls() { # what the tests do: TCP, root without password, database test
  local n
  for n in "${NODES[@]}"; do
    mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"331$n" -uroot --connect-timeout=5 test -e 'SELECT 1' \
      >/dev/null || die "$(url "$n") does not accept connections"
  done
}

print_urls() {
  local n
  for n in "${NODES[@]}"; do echo "galera node $n: $(url "$n")"; done
}

# Stop every node: SIGTERM, then SIGKILL after 60 s; then any stray helper of ours.
stop_all() {
  local n pid pids=()
  for n in "${NODES[@]}"; do
    if pid=$(node_pid "$n"); then pids+=("$pid"); log "stopping node $n (pid $pid)"; fi
  done
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    if ! wait_gone 60 "${pids[@]}"; then
      log "still running after 60s: SIGKILL"
      kill -KILL "${pids[@]}" 2>/dev/null || true
      wait_gone 10 "${pids[@]}" || die "cannot kill ${pids[*]}"
    fi
  fi
  mapfile -t pids < <(stray_pids)
  if ((${#pids[@]})); then
    log "killing leftover helpers: ${pids[*]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait_gone 10 "${pids[@]}" || true
  fi
}

# ---------------------------------------------------------------------------------------------
# Commands.

cmd_up() {
  if healthy; then log "already up"; print_urls; return 0; fi
  ensure_packages
  local n up=() missing=()
  for n in "${NODES[@]}"; do
    if running "$n"; then up+=("$n"); else missing+=("$n"); fi
  done
  if ((${#up[@]} == 0)); then
    # No node runs: start afresh. Rebooting the old data properly would mean finding the node
    # that was last to leave (grastate.dat safe_to_bootstrap: 1) or recovering every node's
    # seqno after a crash; tests want a clean, known cluster, so wipe and initialise instead.
    stop_all                      # stray helpers (e.g. an SST's rsync daemon) of an earlier run
    rm -rf "$D"
    mkdir -p "$D"
    chown mysql:mysql "$D"
    for n in "${NODES[@]}"; do init_node "$n" & done
    wait_all_ok
    launch 1 --wsrep-new-cluster
    wait_node_ready 1
    # Nodes 2 and 3 join together; while node 1 donates to one, the other retries until a
    # donor is free.
    launch 2
    launch 3
    wait_healthy all
  else
    log "running: ${up[*]}; starting: ${missing[*]:-none}"
    ((${#missing[@]} == 0)) || wait_evicted "${missing[*]}" "${up[@]}"
    for n in "${missing[@]}"; do launch "$n"; done
    wait_healthy all "${up[@]}"
  fi
  setup_sql 1
  check_urls
  print_urls
}

wait_all_ok() { # wait for every background job; fail if one failed
  local pid
  for pid in $(jobs -p); do wait "$pid" || exit 1; done
}

cmd_down() {
  stop_all
  rm -rf "$D"
  log "down"
}

cmd_kill() {
  local n=$1 pid
  if ! pid=$(node_pid "$n"); then log "node $n is not running"; return 0; fi
  log "kill -9 node $n (pid $pid)"
  kill -KILL "$pid"
  wait_gone 30 "$pid" || die "node $n (pid $pid) is still alive"
}

cmd_start() {
  local n=$1 m others=()
  for m in "${NODES[@]}"; do
    [[ $m == "$n" ]] || ! running "$m" || others+=("$m")
  done
  if ! running "$n"; then
    # Joining needs a running peer; bootstrapping a lone node would fork the cluster's history.
    ((${#others[@]})) || die "no other node is running for node $n to join: use \`$SCRIPT up\`"
    ensure_packages
    wait_evicted "$n" "${others[@]}"
    launch "$n"
  else
    log "node $n is already running"
  fi
  wait_healthy running "${others[@]}"
  log "node $n: $(wsrep_state "$n")"
  ((${#others[@]} == 2)) || log "warning: only ${#others[@]} other node(s) running, cluster size $((${#others[@]} + 1))"
}

# Right after a kill -9 the others still count the dead node until they suspect it
# (evs.suspect_timeout, 5 s). A node restarted within that window comes back with the same
# gcomm identity and its join drags on for 15-20 s of group reconfiguration; waiting until the
# others have dropped it makes the rejoin short and predictable.
wait_evicted() { # "n..." others...
  local n=$1 deadline=$((SECONDS + 30)) m size waited=0; shift
  while ((SECONDS < deadline)); do
    size=0
    for m in "$@"; do
      size=$(wsrep_state "$m" 2>/dev/null | cut -d'|' -f1) && break
    done
    if ! [[ $size =~ ^[0-9]+$ ]] || ((size <= $#)); then break; fi
    ((waited)) || log "waiting until the others notice that node $n is gone (cluster size $size)"
    waited=1
    sleep 0.5
  done
}

cmd_status() {
  local n st size status state ready
  for n in "${NODES[@]}"; do
    if st=$(wsrep_state "$n" 2>/dev/null); then
      IFS='|' read -r size status state ready <<<"$st"
      echo "node $n ($(url "$n")): answers, wsrep_cluster_size=$size, wsrep_local_state_comment=$state, wsrep_cluster_status=$status, wsrep_ready=$ready"
    elif running "$n"; then
      echo "node $n ($(url "$n")): process running (pid $(node_pid "$n")), does not answer"
    else
      echo "node $n ($(url "$n")): not running"
    fi
  done
}

cmd_urls() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("$(url "$n")"); done
  (IFS=,; echo "${out[*]}")
}

node_arg() { [[ ${1:-} =~ ^[123]$ ]] || die "expected a node number 1, 2 or 3, got '${1:-}'"; }

# Mutating commands take a lock, so that two of them (e.g. a harness and a person) do not race.
lock() {
  mkdir -p "$BASE"
  exec 9>"$BASE/galera.lock"
  flock -w 600 9 || die "another galera.sh holds $BASE/galera.lock"
}

main() {
  local cmd=${1:-}
  case $cmd in
    up) lock; cmd_up ;;
    down) lock; cmd_down ;;
    kill) node_arg "${2:-}"; lock; cmd_kill "$2" ;;
    start) node_arg "${2:-}"; lock; cmd_start "$2" ;;
    status) cmd_status ;;
    urls) cmd_urls ;;
    *) sed -n '2,15s/^# \{0,1\}//p' "$SCRIPT" >&2; exit 2 ;;
  esac
}

main "$@"
