//! The fence check on [`SqlTx`], in the runtime-owned table `fsm_fences`.

use crate::fence::{CheckFence, FenceError, StaleFencingToken};
use crate::lock::FencingToken;
use crate::sql::Driver;
use crate::sql::{Backend, SqlTx};

/// Creates or upgrades the runtime's tables on `pool`, `fsm_fences` among them (for fences
/// whose leases live elsewhere, such as Redis; [`SqlLeases::new`](crate::lock::SqlLeases::new)
/// does it too).
pub async fn create_table<B: Backend>(pool: &sqlx::Pool<B>) -> Result<(), FenceError> {
    crate::sql::migrate::migrate::<B>(pool).await.map_err(|e| FenceError::Backend {
        backend: B::NAME,
        resource: "*".to_owned(),
        operation: "migrate",
        source: Box::new(e),
    })
}

impl<B: Backend> CheckFence for SqlTx<B> {
    async fn check_fence(&mut self, resource: &str, token: FencingToken) -> Result<(), FenceError> {
        let refused = <B::Driver as Driver>::raise_fence(self, resource, token.value()).await.map_err(|e| {
            FenceError::Backend {
                backend: B::NAME,
                resource: resource.to_owned(),
                operation: "check",
                source: Box::new(e),
            }
        })?;
        match refused {
            None => Ok(()),
            Some(highest) => Err(FenceError::Stale(StaleFencingToken {
                resource: resource.to_owned(),
                token,
                highest: FencingToken::new(highest),
            })),
        }
    }
}
