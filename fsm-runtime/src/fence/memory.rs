//! [`MemoryFences`]: the fences of a [`MemoryStore`](crate::MemoryStore).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::entity_id::EntityId;
use crate::error::BoxError;
use crate::fence::{StaleFencingToken, entity_resource};
use crate::lock::FencingToken;
use crate::memory_tx::MemoryTx;
use crate::store::EffectFuture;

/// The highest fencing token each resource accepted, in memory, for transitions of a
/// [`MemoryStore`](crate::MemoryStore). Clones share the fences.
///
/// A memory effect cannot be rolled back, so a check that passes raises the highest token even
/// if a later effect of the same transition fails. That is safe: the raised token belongs to
/// the newest lease, and the holders it shuts out had already lost theirs.
#[derive(Debug, Clone, Default)]
pub struct MemoryFences {
    highest: Arc<Mutex<HashMap<String, FencingToken>>>,
}

impl MemoryFences {
    /// No fences yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` for `resource` if no higher token was accepted before, and records it as
    /// the highest; else the [`StaleFencingToken`].
    pub fn check(&self, resource: &str, token: FencingToken) -> Result<(), StaleFencingToken> {
        // Every update is one assignment: a panic elsewhere cannot leave a row half-written.
        let mut highest = self.highest.lock().unwrap_or_else(PoisonError::into_inner);
        match highest.get(resource) {
            Some(&seen) if seen > token => {
                Err(StaleFencingToken { resource: resource.to_owned(), token, highest: seen })
            }
            _ => {
                highest.insert(resource.to_owned(), token);
                Ok(())
            }
        }
    }

    /// The effect of [`fence::guard`](crate::fence::guard) for a
    /// [`MemoryStore`](crate::MemoryStore): the transition applies only if `token` is at least
    /// the highest the entity accepted.
    pub fn guard(
        &self,
        entity_table: &str,
        entity_id: impl Into<EntityId>,
        token: FencingToken,
    ) -> impl for<'t> FnOnce(&'t mut MemoryTx) -> EffectFuture<'t> + Send + 'static {
        let fences = self.clone();
        let resource = entity_resource(entity_table, &entity_id.into());
        move |_tx: &mut MemoryTx| -> EffectFuture<'_> {
            let checked = fences.check(&resource, token).map_err(|stale| Box::new(stale) as BoxError);
            Box::pin(std::future::ready(checked))
        }
    }
}
