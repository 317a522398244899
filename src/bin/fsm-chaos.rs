//! `fsm-chaos`: a load run against a database cluster while `cluster/chaos.sh` injects faults,
//! then a count of what was lost or doubled.
//!
//! ```text
//! fsm-chaos --engine galera|pg-failover --urls URL[,URL…] [--clients 8] [--entities 4]
//!           [--seconds 40] [--faults-file PATH] [--scenario owned|contended]
//! ```
//!
//! Each client owns `--entities` entities of the table `chaos_toggle` and moves them back and
//! forth (`a -> b -> a`), every second move with an idempotency key (a source per client, a
//! sequence per move). A move is one request, sent again after any error or a timeout (the
//! answer may be lost: the request may have committed), to the next URL, until it has an
//! answer: `Applied`, or, for a request sent again, `AlreadyApplied` at its target or `Replayed`
//! (the earlier attempt committed). Each move counts once. With several URLs (one per Galera
//! node), each attempt goes to the next node.
//!
//! At the end, for every entity: version == the moves its client completed == its history rows.
//! `acked_lost` counts moves acknowledged but missing from the version or the history;
//! `doubled` counts versions or history rows beyond the moves. The last line printed:
//!
//! ```text
//! RESULT engine=<galera|pg-failover> moves=N acked_lost=0 doubled=0 faults=K retries=R max_unavailable_ms=T
//! ```
//!
//! `faults` is the number of lines of `--faults-file`, where the script records each fault it
//! injected; `retries` the requests sent again; `max_unavailable_ms` the longest time in which
//! no client completed a move. The exit code is 1 when something was lost or doubled, or a
//! move was answered in a way the outcome table does not allow.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use fsm_runtime::sqlx;
use fsm_runtime::store::SqlStore;
use fsm_runtime::{Fingerprint, IdempotencyKey, Outcome, StateMachine, Store};
use fsm_runtime::{TransitionRequest, sqlx::Executor as _};
use fsm_suite::toggle::Toggle;
use tokio::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// MariaDB Galera: one pool per node, `wsrep_sync_wait = 15` on every connection.
    Galera,
    /// PostgreSQL behind a router that follows the primary.
    PgFailover,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Self::Galera => "galera",
            Self::PgFailover => "pg-failover",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "A load run against a cluster, counting what was lost or doubled")]
struct Args {
    #[arg(long, value_enum)]
    engine: Engine,
    /// One URL per node (Galera), or the router's URL; comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    urls: Vec<String>,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Entities per client.
    #[arg(long, default_value_t = 4)]
    entities: usize,
    #[arg(long, default_value_t = 40)]
    seconds: u64,
    /// How long one attempt may take before its answer counts as lost.
    #[arg(long, default_value_t = 5_000)]
    attempt_timeout_ms: u64,
    /// A file with one line per injected fault (written by `cluster/chaos.sh`).
    #[arg(long)]
    faults_file: Option<std::path::PathBuf>,
    /// `contended` (a measurement, no faults): every client moves the same `--entities`
    /// entities, each to the state after the one it last saw, so that racers on different
    /// nodes conflict; then the check is applied moves == versions == history rows.
    #[arg(long, value_enum, default_value_t = Scenario::Owned)]
    scenario: Scenario,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Each client moves its own entities (the chaos run).
    Owned,
    /// Every client on the same entities.
    Contended,
}

/// What the clients counted.
#[derive(Default)]
struct Tally {
    moves: AtomicU64,
    retries: AtomicU64,
    /// Moves whose answer was lost and whose retry found them committed.
    recovered: AtomicU64,
    /// Errors the store did not mark retryable (sent again all the same).
    not_retryable: AtomicU64,
    /// Answers the outcome table does not allow here (a first attempt answered `AlreadyApplied`).
    unexpected: AtomicU64,
}

/// When the last move completed, and the longest time without one.
struct Availability {
    last: Mutex<Instant>,
    max_gap_ms: AtomicU64,
}

impl Availability {
    async fn completed(&self) {
        let now = Instant::now();
        let mut last = self.last.lock().await;
        let gap = u64::try_from(now.duration_since(*last).as_millis()).unwrap_or(u64::MAX);
        self.max_gap_ms.fetch_max(gap, Ordering::Relaxed);
        *last = now;
    }
}

/// One client's entities: their ids, and the moves completed on each.
struct Owned {
    ids: Vec<i64>,
    moves: Vec<u64>,
}

/// The stores of the run: one per URL.
struct Nodes<S> {
    stores: Vec<S>,
}

impl<S: Store<Toggle>> Nodes<S> {
    fn at(&self, attempt: usize) -> &S {
        &self.stores[attempt % self.stores.len()]
    }
}

/// One move of `id` to `target`, sent until answered; `Ok(())` when it counted.
async fn one_move<S: Store<Toggle>>(
    nodes: &Nodes<S>,
    args: &Args,
    tally: &Tally,
    (client, id, target, key): (usize, i64, Toggle, Option<IdempotencyKey>),
) {
    let fingerprint = Fingerprint::of_bytes(format!("{id}:{}", target.as_str()).as_bytes());
    // A cluster that never answers again fails the run instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(300);
    for attempt in 0.. {
        assert!(Instant::now() < deadline, "entity {id}: no answer to its move for 300 s");
        let mut request = TransitionRequest::to(id, target);
        if let Some(key) = &key {
            request = request.idempotency_key(key.clone(), fingerprint.clone());
        }
        let store = nodes.at(client + attempt);
        let answer = tokio::time::timeout(Duration::from_millis(args.attempt_timeout_ms), store.apply(request)).await;
        let retried = attempt > 0;
        match answer {
            Ok(Ok(Outcome::Applied { .. })) => return,
            Ok(Ok(Outcome::AlreadyApplied { state, .. } | Outcome::Replayed { to: state, .. }))
                if retried && state == target =>
            {
                tally.recovered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Ok(other)) => {
                eprintln!("chaos: entity {id} to {target:?} (attempt {attempt}): unexpected {other:?}");
                tally.unexpected.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Err(error)) => {
                if !error.is_retryable() {
                    tally.not_retryable.fetch_add(1, Ordering::Relaxed);
                    eprintln!("chaos: entity {id}: an error not marked retryable: {error}");
                }
            }
            Err(_elapsed) => {}
        }
        tally.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20 + 10 * (attempt as u64).min(20))).await;
    }
}

/// One client: moves its entities until the deadline.
async fn client<S: Store<Toggle>>(
    nodes: Arc<Nodes<S>>,
    args: Arc<Args>,
    tally: Arc<Tally>,
    availability: Arc<Availability>,
    (index, run): (usize, String),
) -> Owned {
    let ids: Vec<i64> = (0..args.entities).map(|e| i64::try_from(index * args.entities + e + 1).unwrap_or(0)).collect();
    let mut states = vec![Toggle::A; ids.len()];
    let mut moves = vec![0u64; ids.len()];
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut seq = 0i64;
    while Instant::now() < deadline {
        let slot = usize::try_from(seq).unwrap_or(0) % ids.len();
        let target = states[slot].other();
        seq += 1;
        let key = (seq % 2 == 0).then(|| IdempotencyKey::new(format!("chaos-{run}-{index}"), seq).ok()).flatten();
        one_move(&nodes, &args, &tally, (index, ids[slot], target, key)).await;
        states[slot] = target;
        moves[slot] += 1;
        tally.moves.fetch_add(1, Ordering::Relaxed);
        availability.completed().await;
    }
    Owned { ids, moves }
}

/// A contended client: moves the shared entities until the deadline; the moves it applied.
async fn contended_client<S: Store<Toggle>>(nodes: Arc<Nodes<S>>, args: Arc<Args>, index: usize) -> u64 {
    let shared = i64::try_from(args.entities).unwrap_or(1);
    let mut seen = vec![Toggle::A; args.entities];
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let (mut applied, mut attempt) = (0, index);
    while Instant::now() < deadline {
        attempt += 1;
        let slot = attempt % args.entities;
        let id = i64::try_from(slot).unwrap_or(0) % shared + 1;
        match nodes.at(attempt).transition(id, seen[slot].other()).await {
            Ok(Outcome::Applied { to, .. }) => {
                applied += 1;
                seen[slot] = to;
            }
            Ok(Outcome::AlreadyApplied { state, .. }) => seen[slot] = state,
            Ok(other) => panic!("a plain transition answered {other:?}"),
            Err(error) => panic!("a contended move failed: {error}"),
        }
    }
    applied
}

/// The contended measurement: throughput, and applied == versions == history rows.
async fn contended<S: Store<Toggle> + 'static>(nodes: Vec<S>, args: Args) -> i32 {
    let nodes = Arc::new(Nodes { stores: nodes });
    let args = Arc::new(args);
    let started = Instant::now();
    let clients: Vec<_> =
        (0..args.clients).map(|index| tokio::spawn(contended_client(nodes.clone(), args.clone(), index))).collect();
    let mut applied = 0;
    for client in clients {
        applied += client.await.expect("a contended client panicked");
    }
    let elapsed = started.elapsed();
    let (mut versions, mut history) = (0, 0);
    for id in 1..=i64::try_from(args.entities).unwrap_or(0) {
        let (version, rows) = read_until_answered(nodes.at(0), id).await;
        versions += version;
        history += rows.len() as u64;
    }
    println!(
        "CONTENDED engine={} nodes={} clients={} applied={applied} per_second={:.0} versions={versions} history={history}",
        args.engine.name(),
        nodes.stores.len(),
        args.clients,
        applied as f64 / elapsed.as_secs_f64(),
    );
    i32::from(applied != versions || versions != history)
}

/// What the tables say against what the clients counted: (acked_lost, doubled).
async fn verify<S: Store<Toggle>>(store: &S, owned: &[Owned]) -> (u64, u64) {
    let (mut lost, mut doubled) = (0u64, 0u64);
    for client in owned {
        for (id, moves) in client.ids.iter().zip(&client.moves) {
            let (version, versions) = read_until_answered(store, *id).await;
            let history = versions.len() as u64;
            // Each version once, 1 to the entity's: a lost and a doubled row do not cancel out.
            let distinct: std::collections::BTreeSet<u64> = versions.iter().copied().collect();
            let gaps = (1..=version).filter(|v| !distinct.contains(v)).count() as u64;
            let extra = history - distinct.iter().filter(|v| (1..=version).contains(*v)).count() as u64;
            if version != *moves || history != version || gaps != 0 || extra != 0 {
                eprintln!(
                    "chaos: entity {id}: {moves} moves, version {version}, {history} history rows, \
                     {gaps} versions missing from the history, {extra} rows beyond them"
                );
            }
            lost += moves.saturating_sub(version) + gaps;
            doubled += version.saturating_sub(*moves) + extra;
        }
    }
    (lost, doubled)
}

/// The entity's version and the versions of its history rows, read again until the cluster
/// answers (it may still be failing over when the run ends).
async fn read_until_answered<S: Store<Toggle>>(store: &S, id: i64) -> (u64, Vec<u64>) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let unsigned = |version: i64| u64::try_from(version).unwrap_or(0);
    loop {
        let read = async { Ok::<_, fsm_runtime::Error>((store.get(id).await?.version, store.history(id).await?)) };
        match read.await {
            Ok((version, history)) => {
                return (unsigned(version), history.iter().map(|h| unsigned(h.version)).collect());
            }
            Err(error) if Instant::now() < deadline => {
                eprintln!("chaos: reading entity {id} for the check: {error}; again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("the cluster did not answer the check within 180 s: {error}"),
        }
    }
}

/// Runs the clients on `nodes`, checks the tables, prints the result; the exit code.
async fn run<S: Store<Toggle> + 'static>(nodes: Vec<S>, args: Args) -> i32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let run = format!("{}-{nanos}", std::process::id());
    let nodes = Arc::new(Nodes { stores: nodes });
    let (args, tally) = (Arc::new(args), Arc::new(Tally::default()));
    let availability = Arc::new(Availability { last: Mutex::new(Instant::now()), max_gap_ms: AtomicU64::new(0) });
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|index| {
            let shared = (nodes.clone(), args.clone(), tally.clone(), availability.clone());
            tokio::spawn(client(shared.0, shared.1, shared.2, shared.3, (index, run.clone())))
        })
        .collect();
    let mut owned = Vec::new();
    for client in clients {
        owned.push(client.await.expect("a client panicked"));
    }
    let elapsed = started.elapsed();
    let (lost, doubled) = verify(nodes.at(0), &owned).await;
    let faults = args
        .faults_file
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map_or(0, |text| text.lines().filter(|line| !line.trim().is_empty()).count());
    let moves = tally.moves.load(Ordering::Relaxed);
    eprintln!(
        "chaos: {moves} moves in {:.1} s ({:.0}/s), {} recovered after a lost answer, {} errors not marked retryable, {} unexpected answers",
        elapsed.as_secs_f64(),
        moves as f64 / elapsed.as_secs_f64(),
        tally.recovered.load(Ordering::Relaxed),
        tally.not_retryable.load(Ordering::Relaxed),
        tally.unexpected.load(Ordering::Relaxed),
    );
    println!(
        "RESULT engine={} moves={moves} acked_lost={lost} doubled={doubled} faults={faults} retries={} max_unavailable_ms={}",
        args.engine.name(),
        tally.retries.load(Ordering::Relaxed),
        availability.max_gap_ms.load(Ordering::Relaxed),
    );
    i32::from(lost != 0 || doubled != 0 || tally.unexpected.load(Ordering::Relaxed) != 0)
}

/// A fresh `chaos_toggle` table with every client's entities in state `a`, on the first URL;
/// the history and keys of earlier runs removed.
async fn prepare<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, entities: usize, create: &str) -> Result<(), sqlx::Error>
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
{
    pool.execute("DROP TABLE IF EXISTS chaos_toggle").await?;
    pool.execute(sqlx::AssertSqlSafe(create.to_owned())).await?;
    let values: Vec<String> = (1..=entities).map(|id| format!("({id}, 'a', 0)")).collect();
    let fill = format!("INSERT INTO chaos_toggle (id, state, version) VALUES {}", values.join(", "));
    pool.execute(sqlx::AssertSqlSafe(fill)).await?;
    Ok(())
}

/// Removes the history and keys of earlier runs (the runtime's tables exist once a store was
/// built).
async fn forget_earlier_runs<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Result<(), sqlx::Error>
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
{
    pool.execute("DELETE FROM fsm_history WHERE entity_table = 'chaos_toggle'").await?;
    pool.execute("DELETE FROM fsm_idempotency_keys WHERE source LIKE 'chaos-%'").await?;
    Ok(())
}

const CREATE: &str =
    "CREATE TABLE chaos_toggle (id BIGINT PRIMARY KEY, state VARCHAR(16) NOT NULL, version BIGINT NOT NULL)";

/// The sum over the nodes of Galera's counters of lost certifications
/// (`wsrep_local_cert_failures`) and of local transactions aborted by a replicated write
/// (`wsrep_local_bf_aborts`): the rollbacks the store sent again.
async fn conflicts(pools: &[sqlx::MySqlPool]) -> u64 {
    let mut total = 0;
    for pool in pools {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')",
        )
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        total += rows.iter().filter_map(|(_, value)| value.parse::<u64>().ok()).sum::<u64>();
    }
    total
}

/// The stores of the run, one per pool, on `chaos_toggle` (prepared on the first pool).
async fn stores_on<B>(pools: &[sqlx::Pool<B>], args: &Args) -> Vec<SqlStore<Toggle, B>>
where
    B: fsm_runtime::sql::Backend,
    for<'c> &'c sqlx::Pool<B>: sqlx::Executor<'c, Database = B>,
{
    prepare(&pools[0], args.clients * args.entities, CREATE).await.expect("prepare chaos_toggle");
    let mapping = Toggle::MAPPING.with_table("chaos_toggle".to_owned()).expect("a valid table name");
    let mut stores = Vec::new();
    for pool in pools {
        stores.push(SqlStore::with_mapping(pool.clone(), mapping.clone()).await.expect("a store on the cluster"));
    }
    // The runtime's tables exist once a store was built.
    forget_earlier_runs(&pools[0]).await.expect("forget earlier runs");
    stores
}

/// Runs the scenario of `args` on `stores`; the exit code.
async fn run_scenario<S: Store<Toggle> + 'static>(stores: Vec<S>, args: Args) -> i32 {
    match args.scenario {
        Scenario::Owned => run(stores, args).await,
        Scenario::Contended => contended(stores, args).await,
    }
}

/// The pool size: one connection per client, and two for the checks.
fn pool_size(args: &Args) -> u32 {
    u32::try_from(args.clients).unwrap_or(8) + 2
}

async fn galera(args: Args) -> i32 {
    // Each statement waits until the node applied every write committed before it: a move on
    // one node sees the move before it, made on another.
    let options = fsm_runtime::sql::galera_pool_options().max_connections(pool_size(&args));
    let options = options.acquire_timeout(Duration::from_secs(3));
    let pools: Vec<sqlx::MySqlPool> =
        args.urls.iter().map(|url| options.clone().connect_lazy(url).expect("a MySQL URL")).collect();
    let stores = stores_on(&pools, &args).await;
    let before = conflicts(&pools).await;
    let code = run_scenario(stores, args).await;
    // Nodes killed during the run restart their counters: a lower bound then.
    eprintln!(
        "chaos: Galera rolled back {} transactions for conflicts (certification failures and brute-force aborts)",
        conflicts(&pools).await.saturating_sub(before)
    );
    code
}

async fn pg_failover(args: Args) -> i32 {
    let options = sqlx::postgres::PgPoolOptions::new().max_connections(pool_size(&args));
    let options = options.acquire_timeout(Duration::from_secs(3));
    let pools: Vec<sqlx::PgPool> =
        args.urls.iter().map(|url| options.clone().connect_lazy(url).expect("a PostgreSQL URL")).collect();
    let stores = stores_on(&pools, &args).await;
    run_scenario(stores, args).await
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(args.clients > 0 && args.entities > 0, "--clients and --entities must be at least 1");
    let code = match args.engine {
        Engine::Galera => galera(args).await,
        Engine::PgFailover => pg_failover(args).await,
    };
    std::process::exit(code);
}
