#!/usr/bin/env bash
# A load run against a cluster while faults are injected, then a count of what was lost or
# doubled (see src/bin/fsm-chaos.rs for what the load does and how it counts).
#
#   cluster/chaos.sh galera        # three Galera nodes: one killed -9 and restarted, connections killed
#   cluster/chaos.sh pg-failover   # pg_auto_failover: a failover, then the new primary's node killed -9
#
# Starts the cluster when it is not up (cluster/galera.sh up, cluster/pg-failover.sh up) and
# leaves it up. The last line printed is
#   RESULT engine=<galera|pg-failover> moves=N acked_lost=0 doubled=0 faults=K retries=R max_unavailable_ms=T
# and the exit code is non-zero when acked_lost or doubled is not 0, when no fault was injected,
# or when the load itself failed.
#
# Settings (environment): CHAOS_SECONDS (the load's length; default 40 for galera, 60 for
# pg-failover), CHAOS_CLIENTS (8), CHAOS_PROFILE (debug or release; default debug, which
# reuses the test build).
set -euo pipefail
cd "$(dirname "$0")/.."

engine=${1:-}
case "$engine" in
  galera | pg-failover) ;;
  *) echo "usage: cluster/chaos.sh galera|pg-failover" >&2; exit 2 ;;
esac

clients=${CHAOS_CLIENTS:-8}
profile=${CHAOS_PROFILE:-debug}
work=target/cluster/chaos-$engine
mkdir -p "$work"
faults=$work/faults
: >"$faults"

log() { printf 'chaos %s (%s): %s\n' "$engine" "$(date +%T)" "$*" >&2; }

# Records one injected fault, after it was injected and while the load still runs (one line
# per fault: the load reads the count from this file at its end).
fault() {
  if ! kill -0 "$load" 2>/dev/null; then
    log "not counted (the load has ended): $*"
    return 0
  fi
  echo "$(date +%T.%N) $*" >>"$faults"
  log "fault: $*"
}

build() {
  local flag=()
  [ "$profile" = release ] && flag=(--release)
  cargo build --quiet "${flag[@]}" --bin fsm-chaos || return 1
  echo "${CARGO_TARGET_DIR:-target}/$profile/fsm-chaos"
}

# Kills `count` random client connections of the load on the Galera node at `port`.
kill_galera_connections() {
  local port=$1 count=$2 ids id
  ids=$(mariadb -h127.0.0.1 -P"$port" -uroot -N -e \
    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = 'test' AND ID <> CONNECTION_ID() AND COMMAND <> 'Daemon' ORDER BY RAND() LIMIT $count" 2>/dev/null || true)
  for id in $ids; do
    if mariadb -h127.0.0.1 -P"$port" -uroot -e "KILL CONNECTION $id" 2>/dev/null; then
      fault "killed connection $id on node at port $port"
    fi
  done
}

# Terminates `count` random client connections of the load on the PostgreSQL primary.
kill_pg_connections() {
  local count=$1 port
  port=$(bash cluster/pg-failover.sh primary-port 2>/dev/null || true)
  [ -n "$port" ] || return 0
  local killed
  killed=$(psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
    "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity WHERE datname = 'test' AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY random() LIMIT $count) AS victims" 2>/dev/null || echo 0)
  local i
  for ((i = 0; i < ${killed:-0}; i++)); do fault "terminated a connection on the primary at port $port"; done
}

galera_faults() {
  local started=$SECONDS
  sleep 6
  kill_galera_connections 3311 2
  sleep 3
  bash cluster/galera.sh kill 2 >&2
  fault "kill -9 of Galera node 2"
  sleep 6
  kill_galera_connections 3313 2
  log "restarting node 2"
  bash cluster/galera.sh start 2 >&2
  log "node 2 rejoined after $((SECONDS - started)) s of the run"
  sleep 3
  kill_galera_connections 3312 2
}

pg_faults() {
  sleep 6
  kill_pg_connections 2
  sleep 3
  bash cluster/pg-failover.sh failover >&2
  fault "pg_autoctl perform failover"
  sleep 6
  kill_pg_connections 2
  sleep 3
  # The postmaster and its pg_autoctl keeper (which would restart it in place): the monitor
  # notices the crash and the other node takes over again.
  bash cluster/pg-failover.sh crash-primary >&2
  fault "kill -9 of the new primary's postmaster and keeper"
  bash cluster/pg-failover.sh wait-writable 120 >&2 || log "not writable again within 120 s"
  log "bringing the crashed node back as the standby"
  bash cluster/pg-failover.sh up >&2 || log "the crashed node did not come back"
}

case "$engine" in
  galera)
    seconds=${CHAOS_SECONDS:-40}
    bash cluster/galera.sh up >&2
    urls=$(bash cluster/galera.sh urls)
    inject=galera_faults
    ;;
  pg-failover)
    seconds=${CHAOS_SECONDS:-60}
    bash cluster/pg-failover.sh up >&2
    urls=$(bash cluster/pg-failover.sh url)
    inject=pg_faults
    ;;
esac

binary=$(build) || { log "fsm-chaos did not build"; exit 1; }
[ -x "$binary" ] || { log "no fsm-chaos at $binary"; exit 1; }
log "load: $clients clients for $seconds s on $urls"
"$binary" --engine "$engine" --urls "$urls" --clients "$clients" --seconds "$seconds" --faults-file "$faults" \
  >"$work/result" &
load=$!
$inject &
injector=$!

status=0
wait "$load" || status=$?
wait "$injector" || log "the fault injector failed (status $?)"
if [ "$engine" = galera ]; then
  # The killed node is back for whatever runs next.
  bash cluster/galera.sh up >&2 || true
fi

result=$(tail -n 1 "$work/result")
if [[ "$result" != RESULT* ]]; then
  log "the load printed no RESULT line (status $status)"
  cat "$work/result" >&2
  exit 1
fi
# The faults the load counted (injected while it ran).
count=$(sed -nE 's/.* faults=([0-9]+) .*/\1/p' <<<"$result")
verdict=0
[ "$status" -eq 0 ] || { log "the load found lost or doubled moves, or answers the outcome table does not allow"; verdict=1; }
[[ "$result" == *" acked_lost=0 "* ]] || verdict=1
[[ "$result" == *" doubled=0 "* ]] || verdict=1
[ "${count:-0}" -gt 0 ] || { log "no fault was injected while the load ran"; verdict=1; }
echo "$result"
exit "$verdict"
