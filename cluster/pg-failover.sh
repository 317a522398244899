#!/usr/bin/env bash
# PostgreSQL 15 with automatic failover on 127.0.0.1, for tests and the chaos harness.
#
#   pg_auto_failover monitor   127.0.0.1:5500  (database pg_auto_failover)
#   node_1                     127.0.0.1:5501  (database test)
#   node_2                     127.0.0.1:5502  (database test)
#   HAProxy router             127.0.0.1:5510  -> whichever node is primary and read-write
#   HAProxy stats (csv/html)   http://127.0.0.1:5511/
#
# Usage: cluster/pg-failover.sh up | down | status | url | primary-port | failover | kill-primary
#                              | crash-primary | wait-writable [seconds]
#
# Everything lives under <repo>/target/cluster/pg-failover (data, logs, pg_autoctl config/state,
# haproxy config and pid file).  PostgreSQL and pg_autoctl run as the postgres user; the machine's
# own PostgreSQL on 5432 is never touched.  Needs root (re-executes itself with sudo otherwise).
#
# The router's health check really asks PostgreSQL: HAProxy runs pg-primary-check.sh every 500 ms,
# which connects to the node and passes only if it is out of recovery and not read-only
# (pg_is_in_recovery() = f, default_transaction_read_only = off).  A node that fails one check is
# marked down and its client connections are cut (on-marked-down shutdown-sessions), so pooled
# clients reconnect and land on the new primary.
#
# Failure modes (pg_auto_failover defaults, measured on 127.0.0.1):
#   failover       planned switchover: writable again through 5510 after ~2-3.5 s.
#   kill-primary   kill -9 of the primary's postmaster: pg_autoctl restarts it within ~1 s, so
#                  there is NO failover; writes through 5510 block ~5 s until the standby
#                  reconnects (synchronous replication, wal_retrieve_retry_interval = 5 s).
#   crash-primary  kill -9 of the whole primary node (pg_autoctl + postgres): the monitor fails
#                  over once the node counts as unhealthy and its demotion was awaited (the
#                  defaults, 20 s + 30 s, lowered by tune_monitor to 5 s + 10 s).  `up` restarts
#                  the crashed node, which rejoins as the synchronous standby in ~2 s.
#   standby gone   commits on the primary block ~20 s, until the monitor drops the standby from
#                  synchronous_standby_names (primary goes to wait_primary).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$SCRIPT_DIR")
D=$REPO/target/cluster/pg-failover
PGBIN=/usr/lib/postgresql/15/bin
export PATH=$PGBIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

MON_PORT=5500
NODES=(node_1 node_2)
declare -A PORT=([node_1]=5501 [node_2]=5502)
ROUTER_PORT=5510
STATS_PORT=5511
DB=test
URL=postgres://postgres@127.0.0.1:$ROUTER_PORT/$DB
MONITOR_URI="postgres://autoctl_node@127.0.0.1:$MON_PORT/pg_auto_failover?sslmode=disable"
UP_TIMEOUT=${PG_FAILOVER_UP_TIMEOUT:-180}

log() { printf '[pg-failover %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------------------------
# helpers

# Run a command as postgres, with every pg_autoctl file (config, state, pid, semaphores' owner)
# inside the cluster directory so that `down` (rm -rf) leaves nothing behind.
as_pg() {
  (cd / && runuser -u postgres -- env PATH="$PATH" HOME="$D" \
    XDG_CONFIG_HOME="$D/xdg/config" XDG_DATA_HOME="$D/xdg/data" XDG_RUNTIME_DIR="$D/xdg/run" \
    PGCONNECT_TIMEOUT=3 "$@")
}

# psql over TCP as user postgres (trust from 127.0.0.1).  pq PORT [DB] psql-args...
pq() {
  local port=$1 db=$2; shift 2
  PGCONNECT_TIMEOUT=2 timeout 5 "$PGBIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"
}

# Query the monitor (as autoctl_node, which pg_autoctl lets in with --auth trust).
monq() {
  PGCONNECT_TIMEOUT=2 timeout 5 "$PGBIN/psql" -X -q -t -A -F ' ' -v ON_ERROR_STOP=1 \
    "$MONITOR_URI" -c "$1"
}

# "name port reportedstate goalstate" per node, as the monitor sees them.
node_states() {
  monq "select nodename, nodeport, reportedstate, goalstate from pgautofailover.node order by nodeid" 2>/dev/null
}

# Start a long-running command as postgres in its own session, logs into the cluster directory.
# The session id is recorded so that `down` can kill the whole tree.
start_detached() {
  local name=$1; shift
  mkdir -p "$D/logs" "$D/pids"
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$D/pids/$name.sid" \
    runuser -u postgres -- env PATH="$PATH" HOME="$D" \
    XDG_CONFIG_HOME="$D/xdg/config" XDG_DATA_HOME="$D/xdg/data" XDG_RUNTIME_DIR="$D/xdg/run" \
    "$@" >>"$D/logs/$name.log" 2>&1 </dev/null &
  disown || true
}

# a live process (zombies count as dead: a killed daemon lingers as one until init reaps it)
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# pg_autoctl takes a SysV semaphore (its log lock) and frees it on a clean exit only; the pid file
# (5th line) names it.  Free it when the service that owned it is dead (kill -9, crash).
free_stale_semaphore() {
  local f pid sem
  f=$(find "$D/xdg/run" -path "*$D/$1/pg_autoctl.pid" 2>/dev/null | head -n1)
  [ -n "$f" ] || return 0
  pid=$(sed -n 1p "$f"); sem=$(sed -n 5p "$f")
  alive "$pid" && return 0
  [[ "$sem" =~ ^[0-9]+$ ]] && ipcrm -s "$sem" 2>/dev/null || true
}

autoctl_running() { [ -d "$D/$1" ] && as_pg pg_autoctl status --pgdata "$D/$1" >/dev/null 2>&1; }

haproxy_pid() {
  local pid
  [ -f "$D/haproxy.pid" ] || return 1
  pid=$(head -n1 "$D/haproxy.pid" 2>/dev/null) || return 1
  alive "$pid" && grep -q haproxy "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

postmaster_pid() { # component -> pid of its live postmaster
  local f=$D/$1/postmaster.pid pid
  [ -f "$f" ] || return 1
  pid=$(head -n1 "$f" 2>/dev/null) || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$D/$1" || return 1
  echo "$pid"
}

# All processes belonging to the cluster: the recorded sessions, postmasters of our data
# directories, anything whose command line names the cluster directory, and their descendants.
cluster_pids() {
  local roots=() sids=() f pid c
  for f in "$D"/pids/*.sid; do [ -f "$f" ] && sids+=("$(cat "$f")"); done
  for c in monitor "${NODES[@]}"; do pid=$(postmaster_pid "$c") && roots+=("$pid"); done
  pid=$(haproxy_pid) && roots+=("$pid")
  ps -eo pid=,ppid=,sid=,comm=,args= | awk -v d="$D/" -v sids=" ${sids[*]-} " -v roots=" ${roots[*]-} " -v self=$$ '
    { pid[$1] = $2; sid[$1] = $3; comm[$1] = $4; line[$1] = $0 }
    END {
      for (p in pid) {
        if (p == self) continue
        if (index(sids, " " sid[p] " ") || index(roots, " " p " ") ||
            (index(line[p], d) && comm[p] ~ /^(pg_autoctl|postgres|haproxy|runuser|env|setsid|nohup)$/))
          mark[p] = 1
      }
      do { changed = 0
        for (p in pid) if (!(p in mark) && (pid[p] in mark)) { mark[p] = 1; changed = 1 }
      } while (changed)
      for (p in mark) print p
    }'
}

anything_running() {
  [ -d "$D" ] || return 1
  [ -n "$(cluster_pids)" ]
}

ensure_root() {
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "must run as root (runuser, apt-get); sudo not found"
    exec sudo -n -E "$0" "$@"
  fi
}

ensure_packages() {
  if command -v pg_autoctl >/dev/null && command -v haproxy >/dev/null && [ -x "$PGBIN/pg_ctl" ] \
     && [ -x "$PGBIN/psql" ]; then
    return
  fi
  log "installing postgresql-15-auto-failover haproxy"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y postgresql-15-auto-failover haproxy; then
    apt-get update && apt-get install -y postgresql-15-auto-failover haproxy
  fi
  command -v pg_autoctl >/dev/null && command -v haproxy >/dev/null || die "installation failed"
}

# postgres must be able to reach the cluster directory: every parent must be traversable.
ensure_dirs() {
  mkdir -p "$D"
  local p=$D
  while p=$(dirname "$p") && [ "$p" != / ]; do
    if ! runuser -u postgres -- test -x "$p"; then
      log "making $p traversable for postgres (chmod o+x)"
      chmod o+x "$p"
    fi
  done
  mkdir -p "$D/logs" "$D/pids" "$D/xdg/config" "$D/xdg/data" "$D/xdg/run"
  chown -R postgres:postgres "$D"
  chmod 700 "$D/xdg/run"
}

# ---------------------------------------------------------------------------------------------
# HAProxy

# HAProxy counts every server as up until its first check (within 500 ms of a start), and
# "balance first" sends traffic to the first one that is up: list the current primary first.
server_lines() {
  local p n
  p=$(current_primary || true)
  { [ -n "$p" ] && echo "$p"; printf '%s\n' "${NODES[@]}"; } | awk '!seen[$0]++' | while read -r n; do
    echo "    server $n 127.0.0.1:${PORT[$n]} check maxconn 80"
  done
}

write_haproxy_files() {
  cat >"$D/pg-primary-check.sh.new" <<EOF
#!/bin/sh
# HAProxy external check: args <proxy_addr> <proxy_port> <server_addr> <server_port>.
# Passes only when the server is a running PostgreSQL that is not in recovery and accepts writes:
# while pg_auto_failover promotes a standby (stop_replication) the node is out of recovery but
# still has default_transaction_read_only = on, so pg_is_in_recovery() alone is not enough.
r=\$(PGCONNECT_TIMEOUT=1 $PGBIN/psql -X -q -t -A -h "\$3" -p "\$4" -U postgres -d postgres -c \\
  "select pg_is_in_recovery(), current_setting('default_transaction_read_only')" 2>/dev/null) || exit 1
[ "\$r" = "f|off" ]
EOF
  chmod 755 "$D/pg-primary-check.sh.new"
  mv "$D/pg-primary-check.sh.new" "$D/pg-primary-check.sh"
  cat >"$D/haproxy.cfg.new" <<EOF
global
    maxconn 4000
    external-check
    insecure-fork-wanted

defaults
    mode tcp
    timeout connect 2s
    # long-lived pooled connections: longer than sqlx's default idle_timeout (10 min)
    timeout client 30m
    timeout server 30m
    timeout check 2s

listen pg_primary
    bind 127.0.0.1:$ROUTER_PORT
    balance first
    # every client connects as the superuser postgres, so nothing else keeps slots free for the
    # health check and pg_autoctl: cap at 80 of max_connections = 100 and queue the rest, rather
    # than let a full server fail its check and have all its sessions cut
    timeout queue 10s
    option external-check
    external-check path "/usr/bin:/bin"
    external-check command $D/pg-primary-check.sh
    default-server inter 500ms fastinter 500ms downinter 500ms fall 1 rise 1 on-marked-down shutdown-sessions
$(server_lines)

listen stats
    mode http
    bind 127.0.0.1:$STATS_PORT
    timeout client 10s
    timeout server 10s
    stats enable
    stats uri /
    stats refresh 2s
EOF
}

# Start HAProxy, or restart it (-sf: the old process hands over) when its configuration changed.
start_haproxy() {
  local old
  write_haproxy_files
  # (the order of the server lines does not matter to a running HAProxy)
  if old=$(haproxy_pid) && cmp -s <(sort "$D/haproxy.cfg") <(sort "$D/haproxy.cfg.new"); then
    rm -f "$D/haproxy.cfg.new"
    return
  fi
  haproxy -c -q -f "$D/haproxy.cfg.new" || die "haproxy config check failed ($D/haproxy.cfg.new)"
  mv "$D/haproxy.cfg.new" "$D/haproxy.cfg"
  if [ -n "$old" ]; then
    haproxy -D -f "$D/haproxy.cfg" -p "$D/haproxy.pid" -sf "$old" || die "haproxy failed to restart"
    log "haproxy restarted with a new configuration (pid $(haproxy_pid || echo '?'))"
  else
    haproxy -D -f "$D/haproxy.cfg" -p "$D/haproxy.pid" || die "haproxy failed to start"
    log "haproxy started (pid $(haproxy_pid || echo '?'))"
  fi
}

# "name status" per server, from the stats page (plain bash, no curl/socat needed)
haproxy_servers() {
  local csv
  csv=$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$STATS_PORT && printf 'GET /;csv HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null) || return 1
  printf '%s\n' "$csv" | tr -d '\r' | awk -F, '$1 == "pg_primary" && $2 != "FRONTEND" && $2 != "BACKEND" { print $2, $18 }'
}

# ---------------------------------------------------------------------------------------------
# cluster state

# Writes through the router: returns 0 and prints the serving port when a real write committed.
probe_write() {
  PGCONNECT_TIMEOUT=2 timeout 4 "$PGBIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$URL" \
    -c "create table if not exists cluster_probe (id int primary key, at timestamptz not null)" \
    -c "insert into cluster_probe values (1, now()) on conflict (id) do update set at = excluded.at" \
    -c "select inet_server_port() from (select pg_is_in_recovery() r) s where not r" 2>/dev/null \
    | grep -E '^[0-9]+$'
}

# The monitor's defaults take ~51 s to fail over from a crashed primary (20 s until the node
# counts as unhealthy, 30 s waiting for it to demote). A test cluster on one machine notices a
# crash sooner: health checks every second, unhealthy after 5 s, demotion awaited 10 s.
tune_monitor() {
  local setting
  for setting in "health_check_period = 1000" "health_check_timeout = 1000" "health_check_max_retries = 1" \
    "health_check_retry_delay = 500" "node_considered_unhealthy_timeout = 5000" "primary_demote_timeout = 10000"; do
    pq "$MON_PORT" pg_auto_failover -c "alter system set pgautofailover.$setting" >/dev/null
  done
  pq "$MON_PORT" pg_auto_failover -c "select pg_reload_conf()" >/dev/null
}

# node name whose postgres currently answers pg_is_in_recovery() = f
current_primary() {
  local n
  for n in "${NODES[@]}"; do
    [ "$(pq "${PORT[$n]}" postgres -c 'select pg_is_in_recovery()' 2>/dev/null)" = f ] && { echo "$n"; return 0; }
  done
  return 1
}

# A new standby is cloned with pg_basebackup, which pg_autoctl runs with the default spread
# checkpoint: on an idle primary that waits ~90 s for the checkpoint.  An explicit CHECKPOINT on
# the primary finishes the pending one at once, so nudge while a standby is being built.
nudge_checkpoint() {
  local s n
  s=$(node_states) || return 0
  grep -qE ' (wait_standby|catchingup)( |$)' <<<"$s" || return 0
  for n in "${NODES[@]}"; do
    pq "${PORT[$n]}" postgres -c 'select pg_is_in_recovery()' 2>/dev/null | grep -qx f || continue
    pq "${PORT[$n]}" postgres -c checkpoint >/dev/null 2>&1 || true
  done
}

# one primary and one secondary, both settled (reported = goal)
states_settled() {
  local s
  nudge_checkpoint
  s=$(node_states) || return 1
  [ "$(awk '$3 == "primary" && $4 == "primary"' <<<"$s" | wc -l)" = 1 ] &&
  [ "$(awk '$3 == "secondary" && $4 == "secondary"' <<<"$s" | wc -l)" = 1 ] &&
  [ "$(wc -l <<<"$s")" = 2 ]
}

cluster_ready() {
  states_settled || return 1
  local p
  p=$(current_primary) || return 1
  [ -n "$(pq "${PORT[$p]}" postgres -c 'show synchronous_standby_names' 2>/dev/null)" ] || return 1
  probe_write >/dev/null
}

router_ready() {
  haproxy_pid >/dev/null || start_haproxy
  cluster_ready
}

dump_logs() {
  local f
  for f in "$D"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "===== tail $f" >&2
    tail -n 40 "$f" >&2 || true
  done
  echo "===== monitor state" >&2
  node_states >&2 || true
}

wait_until() { # seconds description command...
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "timed out waiting for: $what"
      dump_logs
      return 1
    fi
    sleep 0.3
  done
}

# trust for user postgres from 127.0.0.1 on every database.  Applied to both nodes on every `up`;
# standbys are cloned from the primary (pg_basebackup / pg_rewind copy pg_hba.conf), so the rule
# follows role changes.
ensure_hba() {
  local n f changed=0
  for n in "${NODES[@]}"; do
    f=$D/$n/pg_hba.conf
    [ -f "$f" ] || continue
    if ! grep -qE '^host[[:space:]]+all[[:space:]]+postgres[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$f"; then
      # first matching rule wins: put ours first
      { echo "host all postgres 127.0.0.1/32 trust # pg-failover.sh"; cat "$f"; } >"$f.new"
      chown postgres:postgres "$f.new"; chmod 600 "$f.new"; mv "$f.new" "$f"
      postmaster_pid "$n" >/dev/null && as_pg pg_ctl reload -D "$D/$n" >/dev/null 2>&1 || true
      changed=1
    fi
  done
  [ $changed = 0 ] || log "pg_hba.conf: trust for postgres from 127.0.0.1 added"
}

print_summary() {
  local s n port r
  echo "pg-failover router: $URL"
  s=$(node_states || true)
  for n in "${NODES[@]}"; do
    port=${PORT[$n]}
    r=$(awk -v n="$n" '$1 == n { print $3 (($3 == $4) ? "" : " -> " $4) }' <<<"$s")
    echo "  $n 127.0.0.1:$port ${r:-unknown}  (postgres://postgres@127.0.0.1:$port/$DB)"
  done
  echo "  monitor 127.0.0.1:$MON_PORT ($MONITOR_URI)"
}

# ---------------------------------------------------------------------------------------------
# commands

monitor_ready() {
  [ -n "$(monq "select 1 from pgautofailover.formation where formationid = 'default'" 2>/dev/null)" ]
}

node_registered() {
  [ -n "$(monq "select 1 from pgautofailover.node where nodename = '$1' and reportedstate in
      ('single', 'wait_primary', 'primary', 'catchingup', 'secondary', 'wait_standby')" 2>/dev/null)" ]
}

create_fresh() {
  cmd_down quiet
  ensure_dirs
  log "creating monitor on $MON_PORT"
  start_detached monitor pg_autoctl create monitor --pgdata "$D/monitor" --pgport "$MON_PORT" \
    --auth trust --no-ssl --hostname 127.0.0.1 --run
  wait_until 60 "monitor accepting connections" \
    monitor_ready || return 1
  tune_monitor
  touch "$D/.monitor.created"
  local n
  for n in "${NODES[@]}"; do
    log "creating $n on ${PORT[$n]}"
    start_detached "$n" pg_autoctl create postgres --pgdata "$D/$n" --pgport "${PORT[$n]}" \
      --name "$n" --dbname "$DB" --auth trust --no-ssl --hostname 127.0.0.1 \
      --monitor "$MONITOR_URI" --run
    # the next node can start cloning as soon as this one is registered on the monitor
    wait_until 90 "$n registered on the monitor" node_registered "$n" || return 1
    touch "$D/.$n.created"
  done
}

cmd_up() {
  ensure_packages
  local t0 n
  t0=$(now_ms)
  if anything_running && [ -f "$D/.monitor.created" ] && [ -f "$D/.node_1.created" ] && [ -f "$D/.node_2.created" ]; then
    # all components were created: (re)start the parts that are not running
    for n in monitor "${NODES[@]}"; do
      free_stale_semaphore "$n"   # before `pg_autoctl status`, which drops a stale pid file
      if ! autoctl_running "$n"; then
        log "starting $n"
        start_detached "$n" pg_autoctl run --pgdata "$D/$n"
      fi
    done
  else
    # nothing runs, or an earlier `up` did not complete: start from scratch
    create_fresh || { log "creation failed"; exit 1; }
  fi
  wait_until "$UP_TIMEOUT" "one primary and one secondary on the monitor" states_settled || exit 1
  ensure_hba
  if [ ! -f "$D/.formation.configured" ]; then
    # number_sync_standbys = 1 needs two standbys in pg_auto_failover (N+1 candidates); with one
    # standby the formation keeps 0, which still means synchronous replication to that standby
    # while it is healthy (synchronous_standby_names = 'ANY 1 (...)').
    if as_pg pg_autoctl set formation number-sync-standbys --pgdata "$D/node_1" 1 >>"$D/logs/settings.log" 2>&1; then
      log "formation: number_sync_standbys = 1"
    else
      log "formation: number_sync_standbys stays $(monq "select number_sync_standbys from pgautofailover.formation where formationid = 'default'") (pg_auto_failover needs 2 standbys for 1; see $D/logs/settings.log)"
    fi
    touch "$D/.formation.configured"
  fi
  start_haproxy
  wait_until "$UP_TIMEOUT" "a write through 127.0.0.1:$ROUTER_PORT reaching the primary with sync replication" router_ready || exit 1
  local p
  p=$(current_primary)
  log "up in $(( $(now_ms) - t0 )) ms; primary $p: synchronous_commit=$(pq "${PORT[$p]}" "$DB" -c 'show synchronous_commit'), synchronous_standby_names=$(pq "${PORT[$p]}" "$DB" -c 'show synchronous_standby_names')"
  print_summary
}

cmd_down() {
  local quiet=${1:-}
  [ -d "$D" ] || { [ -n "$quiet" ] || log "nothing to stop"; return 0; }
  local pid n
  if pid=$(haproxy_pid); then kill "$pid" 2>/dev/null || true; fi
  # "quiet" is the wipe before a fresh create: no graceful stop, the data goes away anyway
  if [ -z "$quiet" ] && command -v pg_autoctl >/dev/null; then
    for n in "${NODES[@]}" monitor; do
      [ -d "$D/$n" ] && { as_pg timeout 10 pg_autoctl stop --fast --pgdata "$D/$n" >/dev/null 2>&1 || true; } &
    done
    wait
  fi
  local grace=15 deadline pids f
  [ -z "$quiet" ] || grace=0
  deadline=$(( $(date +%s) + grace ))
  while pids=$(cluster_pids) && [ -n "$pids" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.3; done
  if [ -n "$pids" ]; then
    [ -n "$quiet" ] || log "killing leftover processes: $(echo $pids)"
    kill -9 $pids 2>/dev/null || true
    sleep 0.5
    pids=$(cluster_pids)
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    # wait until they are gone, zombies included: a killed postmaster that is not yet reaped
    # still "owns" its socket lock file and would make the next start on that port fail
    deadline=$(( $(date +%s) + 10 ))
    while pids=$(ps -o pid= -p "$(echo $pids | tr ' ' ,)" 2>/dev/null) && [ -n "$pids" ] \
          && [ "$(date +%s)" -lt "$deadline" ]; do
      sleep 0.2
    done
  fi
  for n in monitor "${NODES[@]}"; do free_stale_semaphore "$n"; done
  rm -rf "$D"
  [ -n "$quiet" ] || log "down"
}

cmd_wait_writable() {
  local secs=${1:-60} t0 deadline port
  t0=$(now_ms); deadline=$(( t0 + secs * 1000 ))
  until port=$(probe_write); do
    if [ "$(now_ms)" -ge "$deadline" ]; then
      echo "not writable through 127.0.0.1:$ROUTER_PORT after $(( $(now_ms) - t0 )) ms" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "writable through 127.0.0.1:$ROUTER_PORT after $(( $(now_ms) - t0 )) ms (primary 127.0.0.1:$port)"
}

cmd_failover() {
  [ -d "$D/monitor" ] || die "cluster is not up"
  local t0 before after
  before=$(current_primary || echo none)
  t0=$(now_ms)
  if ! as_pg pg_autoctl perform failover --pgdata "$D/node_1" >>"$D/logs/failover.log" 2>&1; then
    tail -n 30 "$D/logs/failover.log" >&2
    die "pg_autoctl perform failover failed (needs one primary and one secondary: see status)"
  fi
  local t1; t1=$(now_ms)
  local port
  until port=$(probe_write); do
    [ $(( $(now_ms) - t0 )) -lt 120000 ] || die "not writable through 127.0.0.1:$ROUTER_PORT 120 s after the failover"
    sleep 0.1
  done
  after=$(current_primary || echo none)
  echo "failover $before -> $after: writable through 127.0.0.1:$ROUTER_PORT after $(( $(now_ms) - t0 )) ms (pg_autoctl perform failover returned after $(( t1 - t0 )) ms; primary 127.0.0.1:$port)"
}

cmd_kill_primary() {
  [ -d "$D/monitor" ] || die "cluster is not up"
  local n pid
  n=$(current_primary) || die "no node answers as a read-write primary"
  pid=$(postmaster_pid "$n") || die "no running postmaster for $n"
  kill -9 "$pid"
  echo "killed primary $n (127.0.0.1:${PORT[$n]}, postmaster pid $pid) at $(date +%H:%M:%S.%3N)"
}

# Whole-node crash: kill -9 the primary's pg_autoctl service (keeper and its children) together
# with its postmaster.  Nothing restarts that node, so the monitor fails over to the standby once
# the node counts as unhealthy.  `up` restarts the crashed node; it rejoins as a standby.
cmd_crash_primary() {
  [ -d "$D/monitor" ] || die "cluster is not up"
  local n pid sid pids
  n=$(current_primary) || die "no node answers as a read-write primary"
  pid=$(postmaster_pid "$n") || die "no running postmaster for $n"
  sid=$(cat "$D/pids/$n.sid" 2>/dev/null || true)
  pids=$(ps -eo pid=,sid= | awk -v s="${sid:--1}" '$2 == s { print $1 }')
  kill -9 $pid $pids 2>/dev/null || true
  echo "crashed primary node $n (127.0.0.1:${PORT[$n]}: postmaster $pid and pg_autoctl $(echo $pids)) at $(date +%H:%M:%S.%3N); 'up' restarts it"
}

cmd_status() {
  [ -d "$D/monitor" ] || { echo "pg-failover: not running (no $D)"; return 1; }
  as_pg pg_autoctl show state --pgdata "$D/monitor" || true
  echo
  as_pg pg_autoctl show settings --pgdata "$D/monitor" 2>/dev/null || true
  echo
  local s
  if s=$(haproxy_servers) && [ -n "$s" ]; then
    echo "haproxy 127.0.0.1:$ROUTER_PORT backends (stats http://127.0.0.1:$STATS_PORT/):"
    while read -r name st; do echo "  $name 127.0.0.1:${PORT[$name]:-?} $st"; done <<<"$s"
  else
    echo "haproxy: not running"
  fi
}

case "${1:-}" in
  url) echo "$URL" ;;
  primary-port) n=$(current_primary) && echo "${PORT[$n]}" ;;
  up) ensure_root "$@"; cmd_up ;;
  down) ensure_root "$@"; cmd_down ;;
  status) ensure_root "$@"; cmd_status ;;
  failover) ensure_root "$@"; cmd_failover ;;
  kill-primary) ensure_root "$@"; cmd_kill_primary ;;
  crash-primary) ensure_root "$@"; cmd_crash_primary ;;
  wait-writable) ensure_root "$@"; cmd_wait_writable "${2:-60}" ;;
  *) echo "usage: $0 up|down|status|url|failover|kill-primary|crash-primary|wait-writable [seconds]" >&2; exit 2 ;;
esac
