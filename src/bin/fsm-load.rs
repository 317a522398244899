//! `fsm-load`: drives N concurrent clients for T seconds against one store and one scenario, and
//! prints one JSON line with the throughput, the latency percentiles and the errors.
//!
//! ```text
//! fsm-load --backend memory|sqlite|postgres|mysql \
//!          --scenario applied|replay|keyed|contended|pessimistic|batch [--batch-size 100] \
//!          --clients N --seconds T [--entities 100000] [--url URL] [--session]
//! ```
//!
//! Each run starts from a fresh entity table, `bench_orders`, of `--entities` rows in state `a`
//! (and removes the history rows and idempotency keys of earlier runs). The machine cycles,
//! `a -> b -> a`, so that every call of `applied` does work:
//!
//! - `applied`: each client owns the entities `id % clients == client`, keeps their states, and
//!   moves a random one of them to the state it is not in, with `store.transition(id, to)`;
//! - `replay`: `store.transition(id, a)` on random entities, all already in `a`: nothing written;
//! - `keyed`: `applied` with an idempotency key (a source per client, increasing sequence) and a
//!   fingerprint of the request;
//! - `contended`: every client on the same 10 entities, each asking for the state after the one
//!   it last saw: the losers of a race get `AlreadyApplied`, counted in `already_applied`;
//! - `pessimistic`: `applied` done the read-decide-write way: `store.lock(id)`, read the locked
//!   row, `transition` to the other state, `commit`;
//! - `batch`: `applied` in batches of `--batch-size` distinct entities of the client, with
//!   `store.apply_many`; `ops` and `tps` count transitions.
//!
//! After a run on an SQL backend the harness checks the tables: one history row and one version
//! step per `Applied` (and one stored key per keyed `Applied`); `"verified"` says whether they
//! match. `--setup-only` prepares the table and exits (for a baseline tool driving the same
//! table).
#![forbid(unsafe_code)]

use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use fsm_runtime::sqlx;
use fsm_runtime::store::{LockedEntity, Session, SqlStore};
use fsm_runtime::{
    Fingerprint, IdempotencyKey, MemoryStore, MySqlStore, Outcome, PostgresStore, SqliteStore, Store, TransitionRequest,
};
use fsm_suite::toggle::Toggle;
use hdrhistogram::Histogram;
use sqlx::Executor as _;

/// The entities every client of `contended` works on.
const HOT_ENTITIES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    Memory,
    Sqlite,
    Postgres,
    Mysql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Applied,
    Replay,
    Keyed,
    Contended,
    Pessimistic,
    Batch,
}

/// A load harness for fsm-runtime's stores: one JSON line per run.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The store.
    #[arg(long, value_enum)]
    backend: BackendKind,
    /// What each client does.
    #[arg(long, value_enum, default_value = "applied")]
    scenario: Scenario,
    /// Concurrent clients (tokio tasks); the pool holds as many connections.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Duration of the measured run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Rows in the entity table.
    #[arg(long, default_value_t = 100_000)]
    entities: i64,
    /// The database (defaults: postgres://postgres@127.0.0.1:5432/test,
    /// mysql://root@127.0.0.1:3306/test, sqlite://$TMPDIR/fsm-load.sqlite).
    #[arg(long)]
    url: Option<String>,
    /// Prepare the table and exit.
    #[arg(long)]
    setup_only: bool,
    /// Connections in the pool (default: one per client).
    #[arg(long)]
    pool_size: Option<usize>,
    /// Ping each connection when it leaves the pool (sqlx's default, one more round trip per
    /// acquire); off by default.
    #[arg(long)]
    test_before_acquire: bool,
    /// Requests per `apply_many` in the `batch` scenario (transitions of distinct entities of
    /// the client); throughput counts transitions, latency batches.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Each client sends its transitions through a `Session` (one connection kept across its
    /// requests) instead of taking a pooled connection per call (SQL backends).
    #[arg(long)]
    session: bool,
}

/// How a client sends its transitions: through the store, which takes a pooled connection
/// per call, or through a session that keeps one.
trait Sender<S: Store<Toggle>>: Send {
    fn apply<'a>(
        &'a mut self,
        store: &'a S,
        request: TransitionRequest<'a, Toggle, S::Tx>,
    ) -> impl std::future::Future<Output = Result<Outcome<Toggle>, fsm_runtime::Error>> + Send + 'a;
}

/// A pooled connection per call (`Store::apply`).
struct Pooled;

impl<S: Store<Toggle>> Sender<S> for Pooled {
    fn apply<'a>(
        &'a mut self,
        store: &'a S,
        request: TransitionRequest<'a, Toggle, S::Tx>,
    ) -> impl std::future::Future<Output = Result<Outcome<Toggle>, fsm_runtime::Error>> + Send + 'a {
        store.apply(request)
    }
}

impl<B: fsm_runtime::sql::Backend> Sender<SqlStore<Toggle, B>> for Session<Toggle, B> {
    fn apply<'a>(
        &'a mut self,
        _store: &'a SqlStore<Toggle, B>,
        request: TransitionRequest<'a, Toggle, fsm_runtime::sql::SqlTx<B>>,
    ) -> impl std::future::Future<Output = Result<Outcome<Toggle>, fsm_runtime::Error>> + Send + 'a {
        Session::apply(self, request)
    }
}

/// What one client counted.
struct Tally {
    ops: u64,
    applied: u64,
    already_applied: u64,
    replayed: u64,
    errors: u64,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            ops: 0,
            applied: 0,
            already_applied: 0,
            replayed: 0,
            errors: 0,
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"),
        }
    }

    fn merge(&mut self, other: &Self) {
        self.ops += other.ops;
        self.applied += other.applied;
        self.already_applied += other.already_applied;
        self.replayed += other.replayed;
        self.errors += other.errors;
        self.latency_us.add(&other.latency_us).expect("histograms of the same bounds");
    }

    fn record(&mut self, started: Instant, result: &Result<Outcome<Toggle>, fsm_runtime::Error>) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
        self.latency_us.saturating_record(micros);
        self.count(result);
    }

    /// A batch: its latency once, each answer as an operation.
    fn record_batch(&mut self, started: Instant, answers: &[Result<Outcome<Toggle>, fsm_runtime::Error>]) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
        self.latency_us.saturating_record(micros);
        for answer in answers {
            self.count(answer);
        }
    }

    fn count(&mut self, result: &Result<Outcome<Toggle>, fsm_runtime::Error>) {
        match result {
            Ok(outcome) => {
                self.ops += 1;
                match outcome {
                    Outcome::Applied { .. } => self.applied += 1,
                    Outcome::AlreadyApplied { .. } => self.already_applied += 1,
                    Outcome::Replayed { .. } => self.replayed += 1,
                    _ => {}
                }
            }
            Err(error) => {
                if self.errors < 3 {
                    eprintln!("fsm-load: error: {error}");
                }
                self.errors += 1;
            }
        }
    }
}

/// SplitMix64: a small, fast generator; the harness needs spread, not quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the clients share.
struct Run {
    scenario: Scenario,
    clients: usize,
    entities: i64,
    deadline: Instant,
    /// The sources of the idempotency keys: `bench-<run>-<client>`.
    run_tag: String,
    /// The state each client last saw of each hot entity (`contended`).
    hot: Vec<AtomicU8>,
    /// Requests per `apply_many` (`batch`).
    batch_size: usize,
}

/// One client's loop.
async fn client<S: Store<Toggle> + 'static>(
    store: Arc<S>,
    mut sender: impl Sender<S>,
    run: Arc<Run>,
    index: usize,
) -> Tally {
    let mut tally = Tally::new();
    let mut rng = Rng(0x5EED_0000 + index as u64 * 7919);
    // The entities this client owns: id = 1 + index + clients * j.
    let clients = run.clients as i64;
    let owned = ((run.entities - index as i64 + clients - 1) / clients).max(1);
    let mut states = vec![Toggle::A; usize::try_from(owned).unwrap_or(1)];
    let source = format!("{}-{index}", run.run_tag);
    let mut seq = 0i64;
    while Instant::now() < run.deadline {
        let started = Instant::now();
        if run.scenario == Scenario::Batch {
            // `batch_size` of this client's entities (distinct), each to the state it is not in.
            let first = rng.below(owned as u64) as usize;
            let slots: Vec<usize> = (0..run.batch_size.min(states.len())).map(|k| (first + k) % states.len()).collect();
            let requests = slots
                .iter()
                .map(|&j| TransitionRequest::to(1 + index as i64 + clients * j as i64, states[j].other()))
                .collect();
            let answers = store.apply_many(requests).await;
            for (&j, answer) in slots.iter().zip(&answers) {
                if let Ok(outcome) = answer {
                    states[j] = outcome.state();
                }
            }
            tally.record_batch(started, &answers);
            continue;
        }
        let result = match run.scenario {
            Scenario::Applied | Scenario::Keyed | Scenario::Pessimistic | Scenario::Batch => {
                let j = rng.below(owned as u64) as usize;
                let id = 1 + index as i64 + clients * j as i64;
                let to = states[j].other();
                let result = match run.scenario {
                    Scenario::Applied => sender.apply(&store, TransitionRequest::to(id, to)).await,
                    Scenario::Keyed => {
                        seq += 1;
                        let key = IdempotencyKey::new(source.as_str(), seq).expect("a valid key");
                        let fingerprint = Fingerprint::of_bytes(format!("{id}:{}", to.as_str()).as_bytes());
                        sender.apply(&store, TransitionRequest::to(id, to).idempotency_key(key, fingerprint)).await
                    }
                    _ => locked_toggle(&*store, id).await,
                };
                if let Ok(outcome) = &result {
                    states[j] = outcome.state();
                }
                result
            }
            Scenario::Replay => {
                let id = 1 + rng.below(run.entities as u64) as i64;
                sender.apply(&store, TransitionRequest::to(id, Toggle::A)).await
            }
            Scenario::Contended => {
                let hot = rng.below(HOT_ENTITIES as u64) as usize;
                let to = Toggle::of_code(run.hot[hot].load(Ordering::Relaxed)).other();
                let result = sender.apply(&store, TransitionRequest::to(hot as i64 + 1, to)).await;
                if let Ok(outcome) = &result {
                    run.hot[hot].store(outcome.state().code(), Ordering::Relaxed);
                }
                result
            }
        };
        tally.record(started, &result);
    }
    tally
}

/// Pessimistic read-decide-write: lock, read, move to the other state, commit.
async fn locked_toggle<S: Store<Toggle>>(store: &S, id: i64) -> Result<Outcome<Toggle>, fsm_runtime::Error> {
    let mut lock = store.lock(id).await?;
    let to = lock.snapshot().state.other();
    let outcome = lock.transition(to).await?;
    lock.commit().await?;
    Ok(outcome)
}

/// Runs the clients, each sending through `Pooled`, and merges what they counted; returns it
/// with the measured duration.
async fn drive<S: Store<Toggle> + 'static>(store: Arc<S>, args: &Args, run_tag: &str) -> (Tally, Duration) {
    drive_with(store, args, run_tag, |_| Pooled).await
}

/// Runs the clients, each with the sender `sender` makes, and merges what they counted.
async fn drive_with<S, X>(store: Arc<S>, args: &Args, run_tag: &str, sender: impl Fn(&S) -> X) -> (Tally, Duration)
where
    S: Store<Toggle> + 'static,
    X: Sender<S> + 'static,
{
    let started = Instant::now();
    let run = Arc::new(Run {
        scenario: args.scenario,
        clients: args.clients,
        entities: args.entities,
        deadline: started + Duration::from_secs_f64(args.seconds),
        run_tag: run_tag.to_owned(),
        hot: (0..HOT_ENTITIES).map(|_| AtomicU8::new(Toggle::A.code())).collect(),
        batch_size: args.batch_size.max(1),
    });
    let tasks: Vec<_> = (0..args.clients)
        .map(|index| tokio::spawn(client(store.clone(), sender(&store), run.clone(), index)))
        .collect();
    let mut total = Tally::new();
    for task in tasks {
        total.merge(&task.await.expect("a client task"));
    }
    (total, started.elapsed())
}

/// The process's peak resident set (VmHWM), in kB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn backend_name(backend: BackendKind) -> &'static str {
    match backend {
        BackendKind::Memory => "memory",
        BackendKind::Sqlite => "sqlite",
        BackendKind::Postgres => "postgres",
        BackendKind::Mysql => "mysql",
    }
}

fn scenario_name(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Applied => "applied",
        Scenario::Replay => "replay",
        Scenario::Keyed => "keyed",
        Scenario::Contended => "contended",
        Scenario::Pessimistic => "pessimistic",
        Scenario::Batch => "batch",
    }
}

/// What the tables hold after a run: history rows, the sum of versions, keys of this run.
#[derive(Debug, PartialEq, Eq)]
struct Written {
    history: i64,
    versions: i64,
    keys: i64,
}

/// Statements that prepare and check the table, per database.
struct Setup {
    create: &'static str,
    fill: &'static str,
    /// Run before `fill`, errors ignored (the recursion limits of MySQL and of MariaDB, each of
    /// which rejects the other's variable).
    before_fill: &'static [&'static str],
    /// Run after the store exists (it creates the runtime's tables).
    after: &'static [&'static str],
    count_history: &'static str,
    sum_versions: &'static str,
    count_keys: &'static str,
}

const POSTGRES_SETUP: Setup = Setup {
    create: "CREATE TABLE bench_orders (id BIGINT PRIMARY KEY, state TEXT NOT NULL, version BIGINT NOT NULL)",
    fill: "INSERT INTO bench_orders (id, state, version) SELECT g, 'a', 0 FROM generate_series(1, $1::bigint) g",
    before_fill: &[],
    after: &[
        "DELETE FROM fsm_history WHERE entity_table = 'bench_orders'",
        "DELETE FROM fsm_idempotency_keys WHERE source LIKE 'bench-%' OR source LIKE 'pgbench-%'",
        "VACUUM ANALYZE bench_orders",
        "VACUUM ANALYZE fsm_history",
        "VACUUM ANALYZE fsm_idempotency_keys",
        "CHECKPOINT",
    ],
    count_history: "SELECT COUNT(*) FROM fsm_history WHERE entity_table = 'bench_orders'",
    sum_versions: "SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM bench_orders",
    count_keys: "SELECT COUNT(*) FROM fsm_idempotency_keys WHERE source LIKE $1",
};

const MYSQL_SETUP: Setup = Setup {
    create: "CREATE TABLE bench_orders (id BIGINT PRIMARY KEY, state VARCHAR(64) NOT NULL, version BIGINT NOT NULL) \
             ENGINE = InnoDB",
    fill: "INSERT INTO bench_orders (id, state, version) \
           WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?) SELECT n, 'a', 0 FROM s",
    before_fill: &[
        "SET SESSION cte_max_recursion_depth = 100000000",
        "SET SESSION max_recursive_iterations = 100000000",
    ],
    after: &[
        "DELETE FROM fsm_history WHERE entity_table = 'bench_orders'",
        "DELETE FROM fsm_idempotency_keys WHERE source LIKE 'bench-%'",
        "ANALYZE TABLE bench_orders",
    ],
    count_history: "SELECT COUNT(*) FROM fsm_history WHERE entity_table = 'bench_orders'",
    sum_versions: "SELECT CAST(COALESCE(SUM(version), 0) AS SIGNED) FROM bench_orders",
    count_keys: "SELECT COUNT(*) FROM fsm_idempotency_keys WHERE source LIKE ?",
};

const SQLITE_SETUP: Setup = Setup {
    create: "CREATE TABLE bench_orders (id INTEGER PRIMARY KEY, state TEXT NOT NULL, version INTEGER NOT NULL)",
    fill: "INSERT INTO bench_orders (id, state, version) \
           WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?) SELECT n, 'a', 0 FROM s",
    before_fill: &[],
    after: &[
        "DELETE FROM fsm_history WHERE entity_table = 'bench_orders'",
        "DELETE FROM fsm_idempotency_keys WHERE source LIKE 'bench-%'",
        "PRAGMA wal_checkpoint(TRUNCATE)",
    ],
    count_history: "SELECT COUNT(*) FROM fsm_history WHERE entity_table = 'bench_orders'",
    sum_versions: "SELECT COALESCE(SUM(version), 0) FROM bench_orders",
    count_keys: "SELECT COUNT(*) FROM fsm_idempotency_keys WHERE source LIKE ?",
};

/// Prepares the table on a one-connection pool (a pool of many would open its other
/// connections meanwhile, and on SQLite they wait for the writer), then builds the run's pool
/// and store, runs, and checks the tables. A macro, because the three pools are different types
/// with the same methods; `$connect` is an async closure from a pool size to a pool.
macro_rules! sql_run {
    ($db:ty, $store:ident, $setup:expr, $connect:expr, $args:expr, $run_tag:expr) => {{
        let setup: &Setup = &$setup;
        let connect = $connect;
        let pool: sqlx::Pool<$db> = connect(1).await;
        pool.execute("DROP TABLE IF EXISTS bench_orders").await.expect("drop bench_orders");
        pool.execute(setup.create).await.expect("create bench_orders");
        for statement in setup.before_fill {
            let _ = pool.execute(*statement).await;
        }
        sqlx::query(setup.fill).bind($args.entities).execute(&pool).await.expect("fill bench_orders");
        // Creates the runtime's tables.
        $store::<Toggle>::new(pool.clone()).await.expect("build the store");
        for statement in setup.after {
            pool.execute(*statement).await.expect("prepare the runtime's tables");
        }
        pool.close().await;
        if $args.setup_only {
            return None;
        }
        let size = $args.pool_size.unwrap_or($args.clients).max(1);
        let pool: sqlx::Pool<$db> = connect(size).await;
        let store = $store::<Toggle>::new(pool.clone()).await.expect("build the store");
        // Open every connection before the clock starts, as pgbench does.
        let mut held = Vec::new();
        for _ in 0..size {
            held.push(pool.acquire().await.expect("a connection"));
        }
        drop(held);
        let (tally, elapsed) = if $args.session {
            drive_with(Arc::new(store), &$args, &$run_tag, |store| store.session()).await
        } else {
            drive(Arc::new(store), &$args, &$run_tag).await
        };
        let count = |sql: &'static str| {
            let pool = pool.clone();
            async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.expect("count") }
        };
        let keys = sqlx::query_scalar::<_, i64>(setup.count_keys)
            .bind(format!("{}-%", $run_tag))
            .fetch_one(&pool)
            .await
            .expect("count keys");
        let written =
            Written { history: count(setup.count_history).await, versions: count(setup.sum_versions).await, keys };
        pool.close().await;
        Some((tally, elapsed, Some(written)))
    }};
}

fn pool_options<DB: sqlx::Database>(args: &Args, size: usize) -> sqlx::pool::PoolOptions<DB> {
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(size)
        .min_connections(size)
        .acquire_timeout(Duration::from_secs(60))
        .test_before_acquire(args.test_before_acquire)
}

async fn run_backend(args: &Args, run_tag: &str) -> Option<(Tally, Duration, Option<Written>)> {
    match args.backend {
        BackendKind::Memory => {
            let store = MemoryStore::<Toggle>::new();
            for id in 1..=args.entities {
                store.create(id).await.expect("create an entity");
            }
            if args.setup_only {
                return None;
            }
            let (tally, elapsed) = drive(Arc::new(store), args, run_tag).await;
            Some((tally, elapsed, None))
        }
        BackendKind::Postgres => {
            let url = args.url.clone().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
            let connect = async |size| {
                pool_options::<sqlx::Postgres>(args, size).connect(&url).await.expect("connect to PostgreSQL")
            };
            sql_run!(sqlx::Postgres, PostgresStore, POSTGRES_SETUP, connect, args, run_tag)
        }
        BackendKind::Mysql => {
            let url = args.url.clone().unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".to_owned());
            let connect =
                async |size| pool_options::<sqlx::MySql>(args, size).connect(&url).await.expect("connect to MySQL");
            sql_run!(sqlx::MySql, MySqlStore, MYSQL_SETUP, connect, args, run_tag)
        }
        BackendKind::Sqlite => {
            let url = args
                .url
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", std::env::temp_dir().join("fsm-load.sqlite").display()));
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .expect("a SQLite URL")
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(60));
            let path = options.get_filename().to_owned();
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            let connect = async |size| {
                pool_options::<sqlx::Sqlite>(args, size).connect_with(options.clone()).await.expect("open SQLite")
            };
            sql_run!(sqlx::Sqlite, SqliteStore, SQLITE_SETUP, connect, args, run_tag)
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(args.clients > 0, "--clients must be at least 1");
    assert!(!(args.session && args.backend == BackendKind::Memory), "--session needs an SQL backend");
    assert!(args.entities >= args.clients as i64, "--entities must be at least --clients");
    assert!(args.entities >= HOT_ENTITIES as i64, "--entities must be at least {HOT_ENTITIES}");
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let run_tag = format!("bench-{}-{nanos}", std::process::id());
    let Some((tally, elapsed, written)) = run_backend(&args, &run_tag).await else {
        println!(r#"{{"backend":"{}","setup":"done","entities":{}}}"#, backend_name(args.backend), args.entities);
        return;
    };
    let seconds = elapsed.as_secs_f64();
    let applied = i64::try_from(tally.applied).unwrap_or(i64::MAX);
    let verified = written.as_ref().map(|w| {
        let keys = if args.scenario == Scenario::Keyed { applied } else { 0 };
        *w == Written { history: applied, versions: applied, keys }
    });
    let line = serde_json::json!({
        "backend": backend_name(args.backend),
        "scenario": scenario_name(args.scenario),
        "clients": args.clients,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "ops": tally.ops,
        "tps": (tally.ops as f64 / seconds).round() as u64,
        "p50_us": tally.latency_us.value_at_quantile(0.50),
        "p99_us": tally.latency_us.value_at_quantile(0.99),
        "errors": tally.errors,
        "applied": tally.applied,
        "already_applied": tally.already_applied,
        "already_applied_rate": if tally.ops == 0 { 0.0 } else {
            (tally.already_applied as f64 / tally.ops as f64 * 10_000.0).round() / 10_000.0
        },
        "replayed": tally.replayed,
        "verified": verified,
        "pool_size": args.pool_size.unwrap_or(args.clients),
        "test_before_acquire": args.test_before_acquire,
        "session": args.session,
        "peak_rss_kb": peak_rss_kb(),
    });
    println!("{line}");
}
