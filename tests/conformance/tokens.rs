//! Single-use tokens on every backend: memory, SQLite, PostgreSQL, MySQL/MariaDB and Redis.
//!
//! - 64 concurrent redeems of one token: exactly one `Redeemed`, 63 `AlreadyUsed`;
//! - a redeemed token is `AlreadyUsed` afterwards, and does not use up other tokens;
//! - a token past its time to live is `Expired` (and stays so: it is never redeemed late);
//! - a forged, malformed, or other-scope token is `Unknown`, and the other scope's token is
//!   still live in its own scope;
//! - after the tombstone period (0 here) and a purge, used and expired tokens are `Unknown`;
//! - an empty or overlong scope is a typed error;
//! - SQL: a redeem inside a transition's effect shares its transaction: a used token fails the
//!   transition with `Error::Effect` (`NotRedeemed`) and nothing is written, and a transition
//!   rolled back by a later effect leaves its token live;
//! - a server that is down (a closed port) is a typed error, at connect and at the first
//!   operation, never a panic.
//!
//! Servers are found, and skipped when missing, by `fixture/backends.rs` (`FSM_POSTGRES_URL`,
//! `FSM_MYSQL_URL`, `FSM_REDIS_URL`, `FSM_REQUIRE_SERVERS`). Every test uses scopes (and, on
//! Redis, a key prefix) of its own; the SQLite files are removed when the test ends, passed or
//! failed.

use std::sync::Arc;
use std::time::Duration;

use crate::fixture::backends;
use crate::fixture::{Leftovers, guarded};
use fsm_runtime::sql::SqlTx;
use fsm_runtime::sqlx;
use fsm_runtime::token::{MemoryTokens, Redemption, RedisTokens, SqlTokens, TokenError, TokenStore};

/// A token store for `test`, remembering used and expired tokens for `tombstone`, and what it
/// leaves behind.
async fn memory(_test: &str, tombstone: Duration) -> Option<(MemoryTokens, Leftovers)> {
    Some((MemoryTokens::new().with_tombstone(tombstone), Leftovers::none()))
}

async fn sqlite(test: &str, tombstone: Duration) -> Option<(SqlTokens<sqlx::Sqlite>, Leftovers)> {
    let name = backends::unique_table(test);
    let leftovers = Leftovers::sqlite(&name);
    let pool = backends::sqlite_pool(&name).await;
    Some((SqlTokens::new(pool).await.expect("tokens on SQLite").with_tombstone(tombstone), leftovers))
}

async fn postgres(test: &str, tombstone: Duration) -> Option<(SqlTokens<sqlx::Postgres>, Leftovers)> {
    let pool = backends::postgres_pool(test).await?;
    Some((SqlTokens::new(pool).await.expect("tokens on PostgreSQL").with_tombstone(tombstone), Leftovers::none()))
}

async fn mysql(test: &str, tombstone: Duration) -> Option<(SqlTokens<sqlx::MySql>, Leftovers)> {
    let pool = backends::mysql_pool(test).await?;
    Some((SqlTokens::new(pool).await.expect("tokens on MySQL").with_tombstone(tombstone), Leftovers::none()))
}

async fn redis(test: &str, tombstone: Duration) -> Option<(RedisTokens, Leftovers)> {
    let url = backends::redis_available(test)?;
    let tokens = RedisTokens::connect(&url).await.expect("tokens on Redis");
    Some((tokens.with_prefix(backends::unique_prefix(test)).with_tombstone(tombstone), Leftovers::none()))
}

/// The cases, generic over the store.
mod cases {
    use super::*;

    /// 64 concurrent redeems of one token: exactly one wins.
    pub async fn concurrent_redeems_one_wins<T: TokenStore + 'static>(tokens: T, scope: String) {
        let tokens = Arc::new(tokens);
        let token = tokens.issue(&scope, Duration::from_secs(60)).await.unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(64));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (tokens, scope, token, start) = (tokens.clone(), scope.clone(), token.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    tokens.redeem(&scope, token.as_str()).await.unwrap()
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let redeemed = outcomes.iter().filter(|o| o.is_redeemed()).count();
        let used = outcomes.iter().filter(|o| **o == Redemption::AlreadyUsed).count();
        assert_eq!((redeemed, used), (1, 63), "{outcomes:?}");
    }

    /// Redeemed once, then `AlreadyUsed`; another token of the scope is untouched.
    pub async fn used_token_is_already_used<T: TokenStore>(tokens: T, scope: String) {
        let first = tokens.issue(&scope, Duration::from_secs(60)).await.unwrap();
        let second = tokens.issue(&scope, Duration::from_secs(60)).await.unwrap();
        assert_ne!(first, second);
        assert_eq!(first.as_str().len(), 64);
        assert_eq!(tokens.redeem(&scope, first.as_str()).await.unwrap(), Redemption::Redeemed);
        assert_eq!(tokens.redeem(&scope, first.as_str()).await.unwrap(), Redemption::AlreadyUsed);
        assert_eq!(tokens.redeem(&scope, first.as_str()).await.unwrap(), Redemption::AlreadyUsed);
        assert_eq!(tokens.redeem(&scope, second.as_str()).await.unwrap(), Redemption::Redeemed);
    }

    /// Past its time to live a token is `Expired`, and never redeemed late.
    pub async fn expired_token_is_expired<T: TokenStore>(tokens: T, scope: String) {
        let token = tokens.issue(&scope, Duration::from_millis(100)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(tokens.redeem(&scope, token.as_str()).await.unwrap(), Redemption::Expired);
        assert_eq!(tokens.redeem(&scope, token.as_str()).await.unwrap(), Redemption::Expired);
    }

    /// Forged, malformed and other-scope tokens are `Unknown`.
    pub async fn forged_token_is_unknown<T: TokenStore>(tokens: T, scope: String) {
        let forged = "0123456789abcdef".repeat(4);
        assert_eq!(tokens.redeem(&scope, &forged).await.unwrap(), Redemption::Unknown);
        assert_eq!(tokens.redeem(&scope, "nope").await.unwrap(), Redemption::Unknown);
        assert_eq!(tokens.redeem(&scope, "' OR 1=1 --").await.unwrap(), Redemption::Unknown);
        let other_scope = format!("{scope}-other");
        let token = tokens.issue(&other_scope, Duration::from_secs(60)).await.unwrap();
        assert_eq!(tokens.redeem(&scope, token.as_str()).await.unwrap(), Redemption::Unknown);
        let upper = token.as_str().to_uppercase();
        assert_eq!(tokens.redeem(&other_scope, &upper).await.unwrap(), Redemption::Unknown);
        assert_eq!(tokens.redeem(&other_scope, token.as_str()).await.unwrap(), Redemption::Redeemed);
    }

    /// With a tombstone of 0, used and expired tokens are forgotten once expired and purged.
    pub async fn forgotten_after_the_tombstone<T: TokenStore>(tokens: T, scope: String) {
        let used = tokens.issue(&scope, Duration::from_millis(100)).await.unwrap();
        let unused = tokens.issue(&scope, Duration::from_millis(100)).await.unwrap();
        assert_eq!(tokens.redeem(&scope, used.as_str()).await.unwrap(), Redemption::Redeemed);
        tokio::time::sleep(Duration::from_millis(400)).await;
        tokens.purge().await.unwrap();
        assert_eq!(tokens.redeem(&scope, used.as_str()).await.unwrap(), Redemption::Unknown);
        assert_eq!(tokens.redeem(&scope, unused.as_str()).await.unwrap(), Redemption::Unknown);
    }

    /// An empty or overlong scope is a typed error naming it.
    pub async fn invalid_scope_is_refused<T: TokenStore>(tokens: T, _scope: String) {
        let error = tokens.issue("", Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(error, TokenError::InvalidScope { .. }), "{error:?}");
        let long = "s".repeat(192);
        let error = tokens.redeem(&long, &"a".repeat(64)).await.unwrap_err();
        assert!(matches!(&error, TokenError::InvalidScope { scope, .. } if *scope == long), "{error:?}");
        assert!(!error.is_retryable());
    }
}

macro_rules! token_tests {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            token_tests!(@cases $backend;
                concurrent_redeems_one_wins: DEFAULT,
                used_token_is_already_used: DEFAULT,
                expired_token_is_expired: DEFAULT,
                forged_token_is_unknown: DEFAULT,
                forgotten_after_the_tombstone: ZERO,
                invalid_scope_is_refused: DEFAULT,
            );
        }
    };
    (@cases $backend:ident; $($case:ident: $tombstone:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let test = concat!(stringify!($backend), "_", stringify!($case));
                let tombstone = if stringify!($tombstone) == "ZERO" { Duration::ZERO } else { fsm_runtime::token::DEFAULT_TOMBSTONE };
                let Some((tokens, leftovers)) = super::$backend(test, tombstone).await else { return };
                guarded(leftovers, cases::$case(tokens, backends::unique_table(test))).await;
            }
        )*
    };
}

token_tests!(memory);
token_tests!(sqlite);
token_tests!(postgres);
token_tests!(mysql);
token_tests!(redis);

/// A redeem inside a transition's effect shares the transition's transaction.
mod in_transaction {
    use super::*;
    use crate::fixture::backends::RawAccess;
    use crate::fixture::machines::Order;
    use fsm_runtime::sql::Backend;
    use fsm_runtime::store::Snapshot;
    use fsm_runtime::store::SqlStore;
    use fsm_runtime::token::RedeemToken;
    use fsm_runtime::{Error, Store, TransitionRequest};

    async fn shares_the_transaction<B>(store: SqlStore<Order, B>, table: String)
    where
        B: Backend + fsm_runtime::sql::Backend,
        SqlStore<Order, B>: RawAccess,
    {
        let tokens = SqlTokens::new(store.pool().clone()).await.unwrap();
        let scope = format!("{table}-checkout");
        let token = tokens.issue(&scope, Duration::from_secs(60)).await.unwrap();
        let pay = |id: i64, token: String, scope: String| {
            TransitionRequest::<Order, SqlTx<B>>::to(id, Order::Paid).effect(move |conn| {
                Box::pin(async move {
                    conn.require_token(&scope, &token).await?;
                    Ok(())
                })
            })
        };
        for id in 1..=3 {
            store.create(id).await.unwrap();
        }

        // A later effect fails: the transition and the redeem roll back together.
        let failing = pay(1, token.to_string(), scope.clone())
            .effect(|_conn| Box::pin(async { Err("the card was declined".into()) }));
        let error = store.apply(failing).await.unwrap_err();
        assert!(matches!(error, Error::Effect { .. }), "{error:?}");
        assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });

        // The token is still live: the first real use applies.
        assert!(store.apply(pay(1, token.to_string(), scope.clone())).await.unwrap().is_applied());

        // The same token on another entity: refused, nothing written.
        let error = store.apply(pay(2, token.to_string(), scope.clone())).await.unwrap_err();
        match &error {
            Error::Effect { source, .. } => match source.downcast_ref::<TokenError>() {
                Some(TokenError::NotRedeemed { scope: s, redemption: Redemption::AlreadyUsed, .. }) => {
                    assert_eq!(*s, scope)
                }
                other => panic!("expected NotRedeemed(AlreadyUsed), got {other:?}"),
            },
            other => panic!("expected Error::Effect, got {other:?}"),
        }
        assert_eq!(store.get(2).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
        assert!(store.history(2).await.unwrap().is_empty());

        // A forged token: refused as Unknown.
        let error = store.apply(pay(3, "f".repeat(64), scope.clone())).await.unwrap_err();
        assert!(error.to_string().contains("unknown"), "{error}");
        assert_eq!(tokens.redeem(&scope, token.as_str()).await.unwrap(), Redemption::AlreadyUsed);
        store.cleanup(&table).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let Some((store, table)) = backends::sqlite_store::<Order>("tokens_in_tx_sqlite").await else { return };
        guarded(store.leftovers(&table), shares_the_transaction(store, table)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        let Some((store, table)) = backends::postgres_store::<Order>("tokens_in_tx_postgres").await else { return };
        guarded(store.leftovers(&table), shares_the_transaction(store, table)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mysql() {
        let Some((store, table)) = backends::mysql_store::<Order>("tokens_in_tx_mysql").await else { return };
        guarded(store.leftovers(&table), shares_the_transaction(store, table)).await;
    }
}

/// A server that is down: a typed error, no panic, no hang.
mod server_down {
    use super::*;
    use fsm_runtime::redis;

    fn assert_connect_error(result: Result<impl std::fmt::Debug, TokenError>, backend: &str) {
        match result {
            Err(error @ TokenError::Connect { .. }) => {
                assert!(error.is_retryable());
                assert!(error.to_string().contains(backend), "{error}");
            }
            other => panic!("expected TokenError::Connect from {backend}, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn redis_connect() {
        assert_connect_error(RedisTokens::connect("redis://127.0.0.1:1").await, "Redis");
    }

    #[tokio::test]
    async fn redis_operation() {
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let config = redis::aio::ConnectionManagerConfig::new().set_number_of_retries(0);
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, config).unwrap();
        let error = RedisTokens::new(conn).issue("down", Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(&error, TokenError::Backend { backend: "Redis", scope, .. } if scope == "down"), "{error:?}");
        assert!(error.is_retryable(), "{error:?}");
    }

    #[tokio::test]
    async fn postgres_connect() {
        assert_connect_error(
            SqlTokens::<sqlx::Postgres>::connect("postgres://postgres@127.0.0.1:1/test").await,
            "PostgreSQL",
        );
    }

    #[tokio::test]
    async fn postgres_operation() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy("postgres://postgres@127.0.0.1:1/test")
            .unwrap();
        let error = SqlTokens::new(pool).await.unwrap_err();
        assert!(matches!(error, TokenError::Backend { backend: "PostgreSQL", retryable: true, .. }), "{error:?}");
    }

    #[tokio::test]
    async fn mysql_connect() {
        assert_connect_error(SqlTokens::<sqlx::MySql>::connect("mysql://root@127.0.0.1:1/test").await, "MySQL");
    }

    #[tokio::test]
    async fn sqlite_cannot_open() {
        let url = "sqlite:///nonexistent-directory/tokens.db";
        assert_connect_error(SqlTokens::<sqlx::Sqlite>::connect(url).await, "SQLite");
    }
}
