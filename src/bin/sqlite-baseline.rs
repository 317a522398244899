//! `sqlite-baseline`: the statements `SqliteStore` sends for one transition, in a plain rusqlite
//! loop on one connection (WAL, `synchronous = NORMAL`), as the ceiling the store is compared
//! with. Prints one JSON line in the format of `fsm-load`.
//!
//! ```text
//! fsm-load --backend sqlite --url sqlite:///tmp/b.sqlite --setup-only
//! sqlite-baseline --path /tmp/b.sqlite --scenario applied --seconds 10
//! ```
//!
//! The statements, with the text `SqliteStore` builds (`fsm-runtime/src/store/sql/dialect.rs`):
//! - `applied`: `SELECT state, version` · `BEGIN` · `UPDATE … WHERE id = ? AND state = ? AND
//!   version = ?` · `INSERT INTO fsm_history` · `COMMIT`;
//! - `keyed`: the read joined with the key (`read_with_key`) · `BEGIN` · `INSERT INTO
//!   fsm_idempotency_keys` · the `UPDATE` · the history row · `COMMIT`;
//! - `replay`: the `SELECT` alone, on a row already in the target.
//!
//! `--driver sqlx` runs the same loop through sqlx on one `SqliteConnection` (no pool), which
//! separates what the driver costs from what the store adds.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use fsm_runtime::sqlx;
use hdrhistogram::Histogram;
use rusqlite::{Connection, OptionalExtension as _, params};
use sqlx::{Connection as _, Row as _};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Driver {
    /// rusqlite, called from the async loop directly.
    Rusqlite,
    /// rusqlite, each transition in one `spawn_blocking` call: what a store on rusqlite that
    /// hands a whole transition to a blocking thread would cost.
    RusqliteBlocking,
    /// sqlx, one `SqliteConnection`: a worker-thread round trip per statement.
    Sqlx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Applied,
    Replay,
    Keyed,
}

/// The SQLite ceiling: the store's statements in a rusqlite loop.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The database file prepared by `fsm-load --backend sqlite --setup-only`.
    #[arg(long)]
    path: String,
    /// What each iteration does.
    #[arg(long, value_enum, default_value = "applied")]
    scenario: Scenario,
    /// Duration of the measured run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Rows in the entity table.
    #[arg(long, default_value_t = 100_000)]
    entities: i64,
    /// The driver of the loop.
    #[arg(long, value_enum, default_value = "rusqlite")]
    driver: Driver,
}

const READ: &str = "SELECT `state`, `version` FROM `bench_orders` WHERE `id` = ?";
const READ_WITH_KEY: &str = "SELECT t.`state`, t.`version`, k.fingerprint, k.outcome FROM (SELECT 1 AS one) o \
     LEFT JOIN `bench_orders` t ON t.`id` = ? \
     LEFT JOIN fsm_idempotency_keys k ON k.source = ? AND k.seq = ?";
const CAS: &str = "UPDATE `bench_orders` SET `state` = ?, `version` = `version` + 1 \
     WHERE `id` = ? AND `state` = ? AND `version` = ?";
const INSERT_HISTORY: &str = "INSERT INTO fsm_history \
     (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_KEY: &str = "INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) \
     VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// SplitMix64, as in `fsm-load`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

fn other(state: &str) -> &'static str {
    if state == "a" { "b" } else { "a" }
}

/// One transition; returns whether it applied.
fn step(conn: &Connection, scenario: Scenario, id: i64, key: (&str, i64)) -> rusqlite::Result<bool> {
    let (from, version) = match scenario {
        Scenario::Keyed => {
            let mut read = conn.prepare_cached(READ_WITH_KEY)?;
            let (row, stored): (Option<(String, i64)>, Option<String>) =
                read.query_row(params![id, key.0, key.1], |r| {
                    let state: Option<String> = r.get(0)?;
                    let version: Option<i64> = r.get(1)?;
                    Ok((state.zip(version), r.get(2)?))
                })?;
            if stored.is_some() {
                return Ok(false);
            }
            row.ok_or(rusqlite::Error::QueryReturnedNoRows)?
        }
        Scenario::Applied | Scenario::Replay => {
            let mut read = conn.prepare_cached(READ)?;
            read.query_row(params![id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .optional()?
                .ok_or(rusqlite::Error::QueryReturnedNoRows)?
        }
    };
    if scenario == Scenario::Replay {
        // Already in the target: the store answers from the read alone.
        return Ok(false);
    }
    let to = other(&from);
    conn.prepare_cached("BEGIN")?.execute([])?;
    if scenario == Scenario::Keyed {
        let outcome = format!(r#"{{"from":"{from}","to":"{to}","version":{}}}"#, version + 1);
        let fingerprint = format!("{id:064x}");
        let inserted =
            conn.prepare_cached(INSERT_KEY)?.execute(params![key.0, key.1, fingerprint, outcome, now_micros()])?;
        if inserted == 0 {
            conn.prepare_cached("ROLLBACK")?.execute([])?;
            return Ok(false);
        }
    }
    let matched = conn.prepare_cached(CAS)?.execute(params![to, id, from, version])?;
    if matched == 0 {
        conn.prepare_cached("ROLLBACK")?.execute([])?;
        return Ok(false);
    }
    conn.prepare_cached(INSERT_HISTORY)?.execute(params![
        "bench_orders",
        "BenchToggle",
        id.to_string(),
        version + 1,
        from,
        to,
        Option::<&str>::None,
        now_micros()
    ])?;
    conn.prepare_cached("COMMIT")?.execute([])?;
    Ok(true)
}

/// The same transition through sqlx on one connection; returns whether it applied.
async fn step_sqlx(
    conn: &mut sqlx::SqliteConnection,
    scenario: Scenario,
    id: i64,
    key: (&str, i64),
) -> Result<bool, sqlx::Error> {
    let (from, version): (String, i64) = match scenario {
        Scenario::Keyed => {
            let row = sqlx::query(READ_WITH_KEY).bind(id).bind(key.0).bind(key.1).fetch_one(&mut *conn).await?;
            let stored: Option<String> = row.try_get(2)?;
            if stored.is_some() {
                return Ok(false);
            }
            let state: Option<String> = row.try_get(0)?;
            let version: Option<i64> = row.try_get(1)?;
            state.zip(version).ok_or(sqlx::Error::RowNotFound)?
        }
        Scenario::Applied | Scenario::Replay => {
            let row = sqlx::query(READ).bind(id).fetch_optional(&mut *conn).await?.ok_or(sqlx::Error::RowNotFound)?;
            (row.try_get(0)?, row.try_get(1)?)
        }
    };
    if scenario == Scenario::Replay {
        return Ok(false);
    }
    let to = other(&from);
    let mut tx = conn.begin().await?;
    if scenario == Scenario::Keyed {
        let outcome = format!(r#"{{"from":"{from}","to":"{to}","version":{}}}"#, version + 1);
        let fingerprint = format!("{id:064x}");
        let inserted = sqlx::query(INSERT_KEY)
            .bind(key.0)
            .bind(key.1)
            .bind(fingerprint)
            .bind(outcome)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
    }
    let matched = sqlx::query(CAS).bind(to).bind(id).bind(&from).bind(version).execute(&mut *tx).await?.rows_affected();
    if matched == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(INSERT_HISTORY)
        .bind("bench_orders")
        .bind("BenchToggle")
        .bind(id.to_string())
        .bind(version + 1)
        .bind(&from)
        .bind(to)
        .bind(Option::<&str>::None)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// The loop's driver.
enum Conn {
    Rusqlite(Connection),
    Blocking(std::sync::Arc<std::sync::Mutex<Connection>>),
    Sqlx(Box<sqlx::SqliteConnection>),
}

impl Conn {
    async fn open(args: &Args) -> Result<Self, Box<dyn std::error::Error>> {
        Ok(match args.driver {
            Driver::Rusqlite | Driver::RusqliteBlocking => {
                let conn = Connection::open(&args.path)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                conn.busy_timeout(Duration::from_secs(60))?;
                if args.driver == Driver::Rusqlite {
                    Self::Rusqlite(conn)
                } else {
                    Self::Blocking(std::sync::Arc::new(std::sync::Mutex::new(conn)))
                }
            }
            Driver::Sqlx => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&args.path)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(60));
                Self::Sqlx(Box::new(sqlx::SqliteConnection::connect_with(&options).await?))
            }
        })
    }

    async fn step(
        &mut self,
        scenario: Scenario,
        id: i64,
        key: (&str, i64),
    ) -> Result<bool, Box<dyn std::error::Error>> {
        Ok(match self {
            Self::Rusqlite(conn) => step(conn, scenario, id, key)?,
            Self::Blocking(conn) => {
                let (conn, source, seq) = (conn.clone(), key.0.to_owned(), key.1);
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    step(&conn, scenario, id, (&source, seq))
                })
                .await??
            }
            Self::Sqlx(conn) => step_sqlx(conn, scenario, id, key).await?,
        })
    }
}

/// Runs on a multi-threaded tokio runtime, like `fsm-load`; the rusqlite loop never yields.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut conn = Conn::open(&args).await?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
    let mut rng = Rng(0x5EED_0000);
    let source = format!("bench-baseline-{}", std::process::id());
    let (mut ops, mut applied, mut seq) = (0u64, 0u64, 0i64);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    while Instant::now() < deadline {
        let t = Instant::now();
        let id = 1 + rng.below(args.entities as u64) as i64;
        seq += 1;
        // `replay` asks for `a` on rows all in `a`; the others move the row to the other state.
        if conn.step(args.scenario, id, (&source, seq)).await? {
            applied += 1;
        }
        ops += 1;
        histogram.saturating_record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX).max(1));
    }
    let seconds = started.elapsed().as_secs_f64();
    let scenario = match args.scenario {
        Scenario::Applied => "applied",
        Scenario::Replay => "replay",
        Scenario::Keyed => "keyed",
    };
    let line = serde_json::json!({
        "backend": match args.driver {
            Driver::Rusqlite => "sqlite-rusqlite-loop",
            Driver::RusqliteBlocking => "sqlite-rusqlite-spawn-blocking-loop",
            Driver::Sqlx => "sqlite-sqlx-loop",
        },
        "scenario": scenario,
        "clients": 1,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "ops": ops,
        "tps": (ops as f64 / seconds).round() as u64,
        "p50_us": histogram.value_at_quantile(0.50),
        "p99_us": histogram.value_at_quantile(0.99),
        "errors": 0,
        "applied": applied,
    });
    println!("{line}");
    Ok(())
}
