#!/usr/bin/env bash
# The library against the databases driven by their own tools, in one run, so that the ratios
# hold on a noisy machine (see docs/benchmarks.md).
#
#   bash bench/compare.sh
#
# PostgreSQL: for each client count, each scenario of the harness (`fsm-load`) next to pgbench
# running the same SQL (bench/pgbench/*.sql), each run on a fresh table. SQLite: the harness
# next to `sqlite-baseline`, a rusqlite loop of the same statements (and the same loop through
# sqlx on one connection, to tell the driver's cost from the store's). MySQL/MariaDB: the
# harness alone. Prints one table; the JSON lines and pgbench logs stay in $OUT.
#
# Environment: SECONDS_PER_RUN (10), CLIENTS ("1 8 32"), MYSQL_CLIENTS ("8"), ENTITIES (100000),
# FSM_POSTGRES_URL, FSM_MYSQL_URL, OUT (target/bench), SKIP_MYSQL=1, SKIP_SQLITE=1, SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."

T=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-"1 8 32"}
MYSQL_CLIENTS=${MYSQL_CLIENTS:-"8"}
ENTITIES=${ENTITIES:-100000}
PG_URL=${FSM_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
MYSQL_URL=${FSM_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
OUT=${OUT:-target/bench}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS="$OUT/results.tsv"
JSONL="$OUT/results.jsonl"
: >"$RESULTS"
: >"$JSONL"

log() { printf '%s\n' "$*" >&2; }

# pgbench ships with the PostgreSQL server package on Debian (postgresql-15, pulled in by
# postgresql-contrib); /usr/bin/pgbench alone is a wrapper that fails without it.
if ! pgbench --version >/dev/null 2>&1; then
    log "pgbench is missing: installing it"
    apt-get update -qq
    apt-get install -y -qq postgresql-contrib >/dev/null || apt-get install -y -qq postgresql-client-15 >/dev/null
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building fsm-load and sqlite-baseline (release)"
    cargo build --release --quiet --bin fsm-load --bin sqlite-baseline
fi
LOAD=target/release/fsm-load
BASELINE=target/release/sqlite-baseline

# A field of a one-line JSON object (numbers, booleans, null).
field() { sed -E 's/.*"'"$1"'":("?)([^,"}]*)\1.*/\2/' <<<"$2"; }

# record BACKEND SCENARIO CLIENTS SIDE TPS P50 P99 ERRORS CHECK EXTRA. Also samples, after each
# run, the 1-minute load average (which counts the benchmark's own clients and server
# processes too) and how many compiler processes (rustc, cc, ld) other work was running.
LOADS="$OUT/loadavg.txt"
BUILDS="$OUT/builds.txt"
: >"$LOADS"
: >"$BUILDS"
record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
    cut -d' ' -f1 /proc/loadavg >>"$LOADS"
    ps -eo comm= | grep -cxE 'rustc|cc|cc1|ld|clippy-driver' >>"$BUILDS" || true
}

# Runs the harness and records its line under side "lib".
harness() {
    local backend=$1 scenario=$2 clients=$3 url=$4
    local line
    line=$("$LOAD" --backend "$backend" --scenario "$scenario" --clients "$clients" --seconds "$T" \
        --entities "$ENTITIES" --url "$url")
    echo "$line" >>"$JSONL"
    local check
    check=$(field verified "$line")
    [ "$check" = true ] && check=ok || check="NOT VERIFIED ($check)"
    record "$backend" "$scenario" "$clients" lib "$(field tps "$line")" "$(field p50_us "$line")" \
        "$(field p99_us "$line")" "$(field errors "$line")" "$check" "$(field already_applied_rate "$line")"
    log "  lib      $backend $scenario c=$clients: $(field tps "$line") tps, errors $(field errors "$line"), $check"
}

setup() { "$LOAD" --backend "$1" --url "$2" --entities "$ENTITIES" --setup-only >/dev/null; }

psql_scalar() { psql "$PG_URL" -Atqc "$1"; }

# Runs pgbench with script bench/pgbench/$2.sql; records it under scenario $1 and side $2.
pgbench_run() {
    local scenario=$1 script=$2 clients=$3
    setup postgres "$PG_URL"
    local at
    at=$(($(date +%s) * 1000000))
    local logfile="$OUT/pgbench-$script-c$clients.log"
    pgbench -n -M prepared -c "$clients" -j "$clients" -T "$T" \
        -D k=0 -D nclients="$clients" -D entities="$ENTITIES" -D a=a -D b=b -D 'src_a={a}' -D 'src_b={b}' \
        -D tbl=bench_orders -D machine=BenchToggle -D at="$at" -D ksrc="pgbench-$script-$clients-$at" \
        -D fp=5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592 \
        -D 'outcome_a={"from":"b","to":"a","version":0}' -D 'outcome_b={"from":"a","to":"b","version":0}' \
        -f "bench/pgbench/$script.sql" "$PG_URL" >"$logfile" 2>&1 || true
    local tps processed failed latency check
    tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' "$logfile" | head -1)
    processed=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$logfile" | head -1)
    failed=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$logfile" | head -1)
    latency=$(sed -nE 's/^latency average = ([0-9.]+) ms/\1/p' "$logfile" | head -1)
    # Every transaction of an applying script must have written one history row.
    local history
    history=$(psql_scalar "SELECT count(*) FROM fsm_history WHERE entity_table = 'bench_orders'")
    case $script in
    replay | replay_bare) [ "$history" = 0 ] && check=ok || check="wrote $history history rows" ;;
    *) [ "$history" = "$processed" ] && check=ok || check="history $history != transactions $processed" ;;
    esac
    if grep -q 'error' "$logfile"; then check="pgbench error, see $logfile"; fi
    tps=${tps:-0}
    tps=$(printf '%.0f' "$tps")
    local mean_us
    mean_us=$(awk -v l="${latency:-0}" 'BEGIN { printf "%.0f", l * 1000 }')
    record postgres "$scenario" "$clients" "$script" "$tps" "mean $mean_us" - "${failed:-?}" "$check" -
    log "  pgbench  $script c=$clients: $tps tps, $check"
}

log "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)

# --- PostgreSQL: library and pgbench, cell by cell, so that both see the same noise ---
for c in $CLIENTS; do
    log "PostgreSQL, $c clients"
    pgbench_run applied applied "$c"
    harness postgres applied "$c" "$PG_URL"
    pgbench_run replay replay "$c"
    pgbench_run replay replay_bare "$c"
    harness postgres replay "$c" "$PG_URL"
    pgbench_run keyed keyed "$c"
    pgbench_run keyed keyed_multi "$c"
    harness postgres keyed "$c" "$PG_URL"
    pgbench_run pessimistic pessimistic "$c"
    harness postgres pessimistic "$c" "$PG_URL"
    if [ "$c" -gt 1 ]; then harness postgres contended "$c" "$PG_URL"; fi
done

# --- SQLite: one connection on both sides ---
if [ "${SKIP_SQLITE:-0}" != 1 ]; then
    DB="$OUT/bench.sqlite"
    log "SQLite ($DB)"
    for s in applied replay keyed; do
        drivers="rusqlite sqlx"
        [ "$s" = applied ] && drivers="rusqlite rusqlite-blocking sqlx"
        for driver in $drivers; do
            setup sqlite "sqlite://$DB"
            line=$("$BASELINE" --path "$DB" --scenario "$s" --seconds "$T" --entities "$ENTITIES" --driver "$driver")
            echo "$line" >>"$JSONL"
            record sqlite "$s" 1 "$driver" "$(field tps "$line")" "$(field p50_us "$line")" \
                "$(field p99_us "$line")" 0 ok -
            log "  $driver $s c=1: $(field tps "$line") tps"
        done
        harness sqlite "$s" 1 "sqlite://$DB"
    done
    harness sqlite contended 8 "sqlite://$DB"
fi

# --- MySQL / MariaDB: the library alone ---
if [ "${SKIP_MYSQL:-0}" != 1 ]; then
    log "MySQL/MariaDB"
    for c in $MYSQL_CLIENTS; do
        for s in applied replay keyed pessimistic contended; do harness mysql "$s" "$c" "$MYSQL_URL"; done
    done
fi

END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - STARTED))

# --- The table ---
tps_of() { awk -F'\t' -v b="$1" -v s="$2" -v c="$3" -v side="$4" \
    '$1 == b && $2 == s && $3 == c && $4 == side { print $5; exit }' "$RESULTS"; }
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
ge() { awk -v r="$1" -v t="$2" 'BEGIN { exit !(r != "-" && r + 0 >= t + 0) }'; }

{
    echo "bench/compare.sh: ${T} s per run; $(nproc) cores; load average at start $START_LOAD, at end $END_LOAD," \
        "1-minute load after each run: median $(sort -n "$LOADS" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')," \
        "max $(sort -n "$LOADS" | tail -1); runs during which other work was compiling:" \
        "$(awk '$1 > 0' "$BUILDS" | wc -l) of $(wc -l <"$BUILDS");" \
        "$(psql_scalar 'SHOW server_version' | cut -d' ' -f1) PostgreSQL, $(pgbench --version | awk '{print $3}') pgbench;" \
        "${ELAPSED} s in all"
    echo
    echo "| backend | scenario | clients | library tps | p50 us | p99 us | errors | checked | baseline | baseline tps | ratio |"
    echo "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|"
    while IFS=$'\t' read -r backend scenario clients side tps p50 p99 errors check extra; do
        [ "$side" = lib ] || continue
        note=$scenario
        [ "$scenario" = contended ] && note="contended (AlreadyApplied rate $extra)"
        baselines=()
        case $backend/$scenario in
        postgres/applied) baselines=(applied) ;;
        postgres/replay) baselines=(replay replay_bare) ;;
        postgres/keyed) baselines=(keyed keyed_multi) ;;
        postgres/pessimistic) baselines=(pessimistic) ;;
        sqlite/applied) [ "$clients" = 1 ] && baselines=(rusqlite rusqlite-blocking sqlx) ;;
        sqlite/*) [ "$clients" = 1 ] && baselines=(rusqlite sqlx) ;;
        esac
        if [ ${#baselines[@]} -eq 0 ]; then
            echo "| $backend | $note | $clients | $tps | $p50 | $p99 | $errors | $check | - | - | - |"
        fi
        for base in "${baselines[@]}"; do
            btps=$(tps_of "$backend" "$scenario" "$clients" "$base")
            label="pgbench $base.sql"
            [ "$base" = rusqlite ] && label="rusqlite loop"
            [ "$base" = rusqlite-blocking ] && label="rusqlite, spawn_blocking per transition"
            [ "$base" = sqlx ] && label="sqlx loop, one connection"
            bcheck=$(awk -F'\t' -v b="$backend" -v s="$scenario" -v c="$clients" -v side="$base" \
                '$1 == b && $2 == s && $3 == c && $4 == side { print $9; exit }' "$RESULTS")
            [ "$bcheck" = ok ] || label="$label ($bcheck)"
            echo "| $backend | $note | $clients | $tps | $p50 | $p99 | $errors | $check | $label | $btps | $(ratio "$tps" "$btps") |"
        done
    done <"$RESULTS"
    echo
    echo "Targets (issue 6):"
    verdict() { if ge "$2" "$3"; then echo "- met:    $1: $2 (target >= $3)"; else echo "- MISSED: $1: $2 (target >= $3)"; fi; }
    for c in $CLIENTS; do
        [ "$c" = 1 ] && continue
        verdict "PostgreSQL applied / pgbench applied.sql, $c clients" \
            "$(ratio "$(tps_of postgres applied "$c" lib)" "$(tps_of postgres applied "$c" applied)")" 0.9
        verdict "PostgreSQL keyed / pgbench keyed.sql, $c clients" \
            "$(ratio "$(tps_of postgres keyed "$c" lib)" "$(tps_of postgres keyed "$c" keyed)")" 0.9
        verdict "PostgreSQL keyed / pgbench keyed_multi.sql, $c clients" \
            "$(ratio "$(tps_of postgres keyed "$c" lib)" "$(tps_of postgres keyed "$c" keyed_multi)")" 2
    done
    for c in $CLIENTS; do
        verdict "PostgreSQL replay / applied (library), $c clients" \
            "$(ratio "$(tps_of postgres replay "$c" lib)" "$(tps_of postgres applied "$c" lib)")" 1
    done
    last=${CLIENTS##* }
    verdict "PostgreSQL applied / pessimistic (library), $last clients" \
        "$(ratio "$(tps_of postgres applied "$last" lib)" "$(tps_of postgres pessimistic "$last" lib)")" 1.5
    if [ "${SKIP_SQLITE:-0}" != 1 ]; then
        verdict "SQLite applied / rusqlite loop, 1 client" \
            "$(ratio "$(tps_of sqlite applied 1 lib)" "$(tps_of sqlite applied 1 rusqlite)")" 0.8
    fi
    awk -F'\t' '$2 == "contended" && $4 == "lib" {
        printf "- %s %s contended, %s clients: %s errors (target 0), AlreadyApplied rate %s\n",
            ($8 == 0 ? "met:   " : "MISSED:"), $1, $3, $8, $10 }' "$RESULTS"
} | tee "$OUT/table.md"
