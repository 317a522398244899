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
# Each cell runs ROUNDS times, library and baseline interleaved (lib, pgbench, lib, pgbench …):
# one pair of runs moves more with the machine's noise than the gaps the ratios should show
# (four runs of one day put PostgreSQL applied at 8 clients at 0.67 to 0.91 of pgbench). The
# table shows median tps and the median of the per-round ratios with their min–max.
#
# The batch rows (issue 16) put `apply_many` of BATCH (100) transitions next to pgbench running
# the same statement (bench/pgbench/batch.sql), and next to the library's own single
# transitions; their tps count transitions, not batches.
#
# Environment: SECONDS_PER_RUN (10), ROUNDS (3), CLIENTS ("1 8 32"), MYSQL_CLIENTS ("8"), BATCH (100),
# ENTITIES (100000), FSM_POSTGRES_URL, FSM_MYSQL_URL, OUT (target/bench), SKIP_MYSQL=1,
# SKIP_SQLITE=1, SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."

T=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-"1 8 32"}
MYSQL_CLIENTS=${MYSQL_CLIENTS:-"8"}
ENTITIES=${ENTITIES:-100000}
BATCH=${BATCH:-100}
PG_URL=${FSM_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
MYSQL_URL=${FSM_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
OUT=${OUT:-target/bench}
case $ROUNDS in
'' | *[!0-9]* | 0*) echo "ROUNDS must be a positive integer, not '$ROUNDS'" >&2 && exit 2 ;;
esac
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

# The round being run (1..ROUNDS), set by each_round; every result is filed under it.
round=0

# each_round COMMAND ARGS...: runs the command ROUNDS times, one round after the other, so that
# a cell's library and baseline runs alternate (lib, baseline, lib, baseline …).
each_round() {
    for round in $(seq 1 "$ROUNDS"); do "$@"; done
}

# Appends a JSON line, with the round as its first field.
json() { printf '{"round":%s,%s\n' "$round" "${1#\{}" >>"$JSONL"; }

# record BACKEND SCENARIO CLIENTS SIDE TPS P50 P99 ERRORS CHECK EXTRA: one line of results.tsv,
# the round appended as an eleventh column. Also samples, after each run, the 1-minute load
# average (which counts the benchmark's own clients and server processes too) and how many
# compiler processes (rustc, cc, ld) other work was running.
LOADS="$OUT/loadavg.txt"
BUILDS="$OUT/builds.txt"
: >"$LOADS"
: >"$BUILDS"
record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" "$round" >>"$RESULTS"
    cut -d' ' -f1 /proc/loadavg >>"$LOADS"
    # Not pgrep: it warns on every call about a pattern longer than 15 characters.
    # shellcheck disable=SC2009
    ps -eo comm= | grep -cxE 'rustc|cc|cc1|ld|clippy-driver' >>"$BUILDS" || true
}

# Runs the harness and records its line under side "lib".
harness() {
    local backend=$1 scenario=$2 clients=$3 url=$4
    local line
    line=$("$LOAD" --backend "$backend" --scenario "$scenario" --clients "$clients" --seconds "$T" \
        --entities "$ENTITIES" --url "$url" --batch-size "$BATCH")
    json "$line"
    local check
    check=$(field verified "$line")
    [ "$check" = true ] && check=ok || check="NOT VERIFIED ($check)"
    record "$backend" "$scenario" "$clients" lib "$(field tps "$line")" "$(field p50_us "$line")" \
        "$(field p99_us "$line")" "$(field errors "$line")" "$check" "$(field already_applied_rate "$line")"
    log "  lib      $backend $scenario c=$clients r$round: $(field tps "$line") tps, errors $(field errors "$line"), $check"
}

setup() { "$LOAD" --backend "$1" --url "$2" --entities "$ENTITIES" --setup-only >/dev/null; }

psql_scalar() { psql "$PG_URL" -Atqc "$1"; }

# Runs pgbench with script bench/pgbench/$2.sql; records it under scenario $1 and side $2.
pgbench_run() {
    local scenario=$1 script=$2 clients=$3
    setup postgres "$PG_URL"
    local at
    at=$(($(date +%s) * 1000000))
    local logfile="$OUT/pgbench-$script-c$clients-r$round.log"
    pgbench -n -M prepared -c "$clients" -j "$clients" -T "$T" \
        -D k=0 -D nclients="$clients" -D entities="$ENTITIES" -D a=a -D b=b -D 'src_a={a}' -D 'src_b={b}' -D bs="$BATCH" \
        -D tbl=bench_orders -D machine=BenchToggle -D at="$at" -D ksrc="pgbench-$script-$clients-$at" \
        -D fp=5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592 \
        -D 'outcome_a={"from":"b","to":"a","version":0}' -D 'outcome_b={"from":"a","to":"b","version":0}' \
        -f "bench/pgbench/$script.sql" "$PG_URL" >"$logfile" 2>&1 || true
    local tps processed failed latency check
    tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' "$logfile" | head -1)
    processed=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$logfile" | head -1)
    failed=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$logfile" | head -1)
    latency=$(sed -nE 's/^latency average = ([0-9.]+) ms/\1/p' "$logfile" | head -1)
    # Every transaction of an applying script must have written one history row (a batch's,
    # BATCH rows: its tps is counted in transitions).
    local history per=1
    [ "$script" = batch ] && per=$BATCH
    history=$(psql_scalar "SELECT count(*) FROM fsm_history WHERE entity_table = 'bench_orders'")
    case $script in
    replay | replay_bare) [ "$history" = 0 ] && check=ok || check="wrote $history history rows" ;;
    *) [ "$history" = "$((${processed:-0} * per))" ] && check=ok || check="history $history != $per x transactions $processed" ;;
    esac
    if grep -q 'error' "$logfile"; then check="pgbench error, see $logfile"; fi
    tps=${tps:-0}
    tps=$(awk -v t="$tps" -v n="$per" 'BEGIN { printf "%.0f", t * n }')
    local mean_us
    mean_us=$(awk -v l="${latency:-0}" 'BEGIN { printf "%.0f", l * 1000 }')
    record postgres "$scenario" "$clients" "$script" "$tps" "mean $mean_us" - "${failed:-?}" "$check" -
    log "  pgbench  $script c=$clients r$round: $tps tps, $check"
}

# One PostgreSQL cell, one round: every run of client count $1, each harness run right after the
# pgbench runs of its scenario, so that both sides of a ratio see the same noise.
postgres_cell() {
    local c=$1
    log "PostgreSQL, $c clients, round $round of $ROUNDS"
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
    pgbench_run batch batch "$c"
    harness postgres batch "$c" "$PG_URL"
    if [ "$c" -gt 1 ]; then harness postgres contended "$c" "$PG_URL"; fi
}

# One SQLite round: per scenario, each driver of sqlite-baseline then the harness, all on one
# connection; then the harness's contended scenario.
sqlite_round() {
    local db=$1 s driver drivers line
    log "SQLite ($db), round $round of $ROUNDS"
    for s in applied replay keyed; do
        drivers="rusqlite sqlx"
        [ "$s" = applied ] && drivers="rusqlite rusqlite-blocking sqlx"
        for driver in $drivers; do
            setup sqlite "sqlite://$db"
            line=$("$BASELINE" --path "$db" --scenario "$s" --seconds "$T" --entities "$ENTITIES" --driver "$driver")
            json "$line"
            record sqlite "$s" 1 "$driver" "$(field tps "$line")" "$(field p50_us "$line")" \
                "$(field p99_us "$line")" 0 ok -
            log "  $driver $s c=1 r$round: $(field tps "$line") tps"
        done
        harness sqlite "$s" 1 "sqlite://$db"
    done
    harness sqlite batch 1 "sqlite://$db"
    harness sqlite contended 8 "sqlite://$db"
}

# One MySQL/MariaDB round for client count $1: the library alone, no baseline to alternate with.
mysql_cell() {
    local c=$1 s
    log "MySQL/MariaDB, $c clients, round $round of $ROUNDS"
    for s in applied replay keyed pessimistic batch contended; do harness mysql "$s" "$c" "$MYSQL_URL"; done
}

log "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)

# --- PostgreSQL: library and pgbench, cell by cell, round by round ---
for c in $CLIENTS; do each_round postgres_cell "$c"; done

# --- SQLite: one connection on both sides ---
if [ "${SKIP_SQLITE:-0}" != 1 ]; then each_round sqlite_round "$OUT/bench.sqlite"; fi

# --- MySQL / MariaDB: the library alone ---
if [ "${SKIP_MYSQL:-0}" != 1 ]; then
    for c in $MYSQL_CLIENTS; do each_round mysql_cell "$c"; done
fi

END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - STARTED))

# --- The table: medians over the rounds ---
# results.tsv: backend, scenario, clients, side, tps, p50, p99, errors, check, extra, round.

# values BACKEND SCENARIO CLIENTS SIDE COLUMN: that column of the series, one line per round.
values() {
    awk -F'\t' -v b="$1" -v s="$2" -v c="$3" -v side="$4" -v col="$5" \
        '$1 == b && $2 == s && $3 == c && $4 == side { print $col }' "$RESULTS"
}

# Reads numbers, one a line, skipping anything else (null, -); prints "median min max count",
# or "- - - 0" when there are none. The median of an even count is the mean of the middle two.
stats() {
    awk '$1 ~ /^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$/ { print $1 }' | sort -g |
        awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "- - - 0"; exit }
            m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.6f %s %s %d\n", m, v[1], v[NR], NR }'
}

# median FORMAT BACKEND SCENARIO CLIENTS SIDE COLUMN: the median of a column over the rounds,
# printed with FORMAT, or "-".
median() {
    local format=$1
    shift
    values "$@" | stats | awk -v f="$format" '{ if ($4 == 0) print "-"; else printf f "\n", $1 }'
}

# total BACKEND SCENARIO CLIENTS SIDE COLUMN: the sum of a column over the rounds (errors).
total() { values "$@" | awk '{ n += $1 } END { print n + 0 }'; }

# rounds_of BACKEND SCENARIO CLIENTS SIDE: how many rounds the series has.
rounds_of() { values "$@" 5 | wc -l; }

# checks BACKEND SCENARIO CLIENTS SIDE: "ok" if every round's check was ok, else each round that
# was not, with its check.
checks() {
    awk -F'\t' -v b="$1" -v s="$2" -v c="$3" -v side="$4" '
        $1 == b && $2 == s && $3 == c && $4 == side {
            n++
            if ($9 != "ok") { bad = bad sep "round " $11 ": " $9; sep = "; " }
        }
        END { print (n == 0 ? "no run" : bad == "" ? "ok" : bad) }' "$RESULTS"
}

# ratios BACKEND CLIENTS SCENARIO SIDE SCENARIO2 SIDE2: for each round that has both series, the
# first's tps over the second's, one a line (a round whose second series made 0 tps has none).
ratios() {
    awk -F'\t' -v b="$1" -v c="$2" -v s1="$3" -v d1="$4" -v s2="$5" -v d2="$6" '
        $1 == b && $3 == c && $2 == s1 && $4 == d1 { num[$11] = $5 }
        $1 == b && $3 == c && $2 == s2 && $4 == d2 { den[$11] = $5 }
        END { for (r in num) if ((r in den) && den[r] > 0) printf "%.6f\n", num[r] / den[r] }' "$RESULTS"
}

# ratio BACKEND CLIENTS SCENARIO SIDE SCENARIO2 SIDE2: the median of the per-round ratios and
# their min–max, e.g. "0.82 (0.79–0.85)"; a single ratio has no spread, and rounds without a
# ratio are counted, e.g. "0.82 (0.79–0.85, 2 of 3 rounds)". "-" when there is none.
ratio() {
    ratios "$@" | stats | awk -v rounds="$ROUNDS" '{
        if ($4 == 0) { print "-"; exit }
        cell = sprintf("%.2f", $1)
        missing = $4 < rounds ? $4 " of " rounds " rounds" : ""
        if ($4 > 1) cell = cell sprintf(" (%.2f–%.2f", $2, $3) (missing == "" ? "" : ", " missing) ")"
        else if (missing != "") cell = cell " (" missing ")"
        print cell }'
}

# ge CELL TARGET: whether the median of a ratio cell (its first word) reaches the target.
ge() { awk -v r="${1%% *}" -v t="$2" 'BEGIN { exit !(r != "-" && r + 0 >= t + 0) }'; }

# rounds N: "1 round", "3 rounds".
rounds() { if [ "$1" = 1 ]; then echo "1 round"; else echo "$1 rounds"; fi; }

# The series of the library, in the order they ran: backend, scenario, clients.
lib_series() { awk -F'\t' '$4 == "lib" && !seen[$1 FS $2 FS $3]++ { print $1 "\t" $2 "\t" $3 }' "$RESULTS"; }

{
    echo "bench/compare.sh: ${T} s per run, $(rounds "$ROUNDS") per cell; $(nproc) cores; load average at start $START_LOAD, at end $END_LOAD," \
        "1-minute load after each run: median $(sort -n "$LOADS" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')," \
        "max $(sort -n "$LOADS" | tail -1); runs during which other work was compiling:" \
        "$(awk '$1 > 0' "$BUILDS" | wc -l) of $(wc -l <"$BUILDS");" \
        "$(psql_scalar 'SHOW server_version' | cut -d' ' -f1) PostgreSQL, $(pgbench --version | awk '{print $3}') pgbench;" \
        "${ELAPSED} s in all"
    echo
    echo "| backend | scenario | clients | rounds | library tps | p50 us | p99 us | errors | checked | baseline | baseline tps | ratio |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|"
    while IFS=$'\t' read -r backend scenario clients; do
        series=("$backend" "$scenario" "$clients")
        tps=$(median %.0f "${series[@]}" lib 5)
        p50=$(median %.0f "${series[@]}" lib 6)
        p99=$(median %.0f "${series[@]}" lib 7)
        errors=$(total "${series[@]}" lib 8)
        check=$(checks "${series[@]}" lib)
        n=$(rounds_of "${series[@]}" lib)
        note=$scenario
        [ "$scenario" = batch ] && note="batch of $BATCH (tps: transitions)"
        [ "$scenario" = contended ] && note="contended (AlreadyApplied rate $(median %.4f "${series[@]}" lib 10))"
        baselines=()
        case $backend/$scenario in
        postgres/applied) baselines=(applied) ;;
        postgres/replay) baselines=(replay replay_bare) ;;
        postgres/keyed) baselines=(keyed keyed_multi) ;;
        postgres/pessimistic) baselines=(pessimistic) ;;
        postgres/batch) baselines=(batch) ;;
        sqlite/applied) [ "$clients" = 1 ] && baselines=(rusqlite rusqlite-blocking sqlx) ;;
        sqlite/batch) ;;
        sqlite/*) [ "$clients" = 1 ] && baselines=(rusqlite sqlx) ;;
        esac
        row="| $backend | $note | $clients | $n | $tps | $p50 | $p99 | $errors | $check"
        if [ ${#baselines[@]} -eq 0 ]; then echo "$row | - | - | - |"; fi
        for base in "${baselines[@]}"; do
            label="pgbench $base.sql"
            [ "$base" = rusqlite ] && label="rusqlite loop"
            [ "$base" = rusqlite-blocking ] && label="rusqlite, spawn_blocking per transition"
            [ "$base" = sqlx ] && label="sqlx loop, one connection"
            bcheck=$(checks "${series[@]}" "$base")
            [ "$bcheck" = ok ] || label="$label ($bcheck)"
            echo "$row | $label | $(median %.0f "${series[@]}" "$base" 5) |" \
                "$(ratio "$backend" "$clients" "$scenario" lib "$scenario" "$base") |"
        done
    done < <(lib_series)
    echo
    echo "library tps, baseline tps, p50 and p99: medians over the rounds; errors: summed over them;" \
        "ratio: the median of the per-round ratios (library tps / baseline tps of the same round)" \
        "and their min–max; checked: ok only if every round's check was."
    echo
    echo "Targets (issue 6; median ratios over the rounds, min–max in brackets):"
    verdict() { if ge "$2" "$3"; then echo "- met:    $1: $2 (target >= $3)"; else echo "- MISSED: $1: $2 (target >= $3)"; fi; }
    for c in $CLIENTS; do
        [ "$c" = 1 ] && continue
        verdict "PostgreSQL applied / pgbench applied.sql, $c clients" \
            "$(ratio postgres "$c" applied lib applied applied)" 0.9
        verdict "PostgreSQL keyed / pgbench keyed.sql, $c clients" \
            "$(ratio postgres "$c" keyed lib keyed keyed)" 0.9
        verdict "PostgreSQL keyed / pgbench keyed_multi.sql, $c clients" \
            "$(ratio postgres "$c" keyed lib keyed keyed_multi)" 2
    done
    for c in $CLIENTS; do
        verdict "PostgreSQL replay / applied (library), $c clients" \
            "$(ratio postgres "$c" replay lib applied lib)" 1
    done
    for c in $CLIENTS; do
        [ "$c" = 8 ] || continue
        verdict "PostgreSQL batch of $BATCH / applied (library), $c clients" \
            "$(ratio postgres "$c" batch lib applied lib)" 5
        verdict "PostgreSQL batch of $BATCH / pgbench batch.sql, $c clients" \
            "$(ratio postgres "$c" batch lib batch batch)" 0.8
    done
    last=${CLIENTS##* }
    verdict "PostgreSQL applied / pessimistic (library), $last clients" \
        "$(ratio postgres "$last" applied lib pessimistic lib)" 1.5
    if [ "${SKIP_SQLITE:-0}" != 1 ]; then
        verdict "SQLite applied / rusqlite loop, 1 client" "$(ratio sqlite 1 applied lib applied rusqlite)" 0.8
        verdict "SQLite batch of $BATCH / applied (library), 1 client" "$(ratio sqlite 1 batch lib applied lib)" 10
    fi
    # Contended: any error in any round misses the target.
    while IFS=$'\t' read -r backend scenario clients; do
        [ "$scenario" = contended ] || continue
        errors=$(total "$backend" contended "$clients" lib 8)
        [ "$errors" = 0 ] && v="met:   " || v="MISSED:"
        echo "- $v $backend contended, $clients clients: $errors errors in" \
            "$(rounds "$(rounds_of "$backend" contended "$clients" lib)") (target 0), AlreadyApplied rate $(median %.4f "$backend" contended "$clients" lib 10) (median)"
    done < <(lib_series)
} | tee "$OUT/table.md"
