//! [`MemoryLeases`]: leases in the process's memory, for tests and single-process applications.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::lock::{ExtendOutcome, FencingToken, Lease, LeaseStore, LockError, ReleaseOutcome, check_names, deadline};

/// The lease of one resource. Kept after a release, so that the fencing token keeps growing.
#[derive(Debug, Clone)]
struct Row {
    owner: String,
    fence: FencingToken,
    /// `None` once released.
    expires_at: Option<Instant>,
}

impl Row {
    fn is_held(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at > now)
    }

    fn is_held_by(&self, lease: &Lease, now: Instant) -> bool {
        self.is_held(now) && self.owner == lease.owner() && self.fence == lease.fence()
    }
}

/// Leases in memory: every operation is one step under one lock. Clones share the leases.
#[derive(Debug, Clone, Default)]
pub struct MemoryLeases {
    rows: Arc<Mutex<HashMap<String, Row>>>,
}

impl MemoryLeases {
    /// No leases yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Row>> {
        // Every update is one assignment: a panic elsewhere cannot leave a row half-written.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LeaseStore for MemoryLeases {
    async fn try_acquire(&self, resource: &str, owner: &str, ttl: Duration) -> Result<Option<Lease>, LockError> {
        check_names(resource, owner)?;
        let now = Instant::now();
        let mut rows = self.lock();
        let fence = match rows.get(resource) {
            Some(row) if row.is_held(now) => return Ok(None),
            Some(row) => FencingToken::new(row.fence.value() + 1),
            None => FencingToken::new(1),
        };
        rows.insert(resource.to_owned(), Row { owner: owner.to_owned(), fence, expires_at: Some(deadline(now, ttl)) });
        Ok(Some(Lease::new(resource, owner, fence, now, ttl)))
    }

    async fn extend(&self, lease: &mut Lease, ttl: Duration) -> Result<ExtendOutcome, LockError> {
        let now = Instant::now();
        let mut rows = self.lock();
        match rows.get_mut(lease.resource()) {
            Some(row) if row.is_held_by(lease, now) => {
                row.expires_at = Some(deadline(now, ttl));
                lease.extended(now, ttl);
                Ok(ExtendOutcome::Extended)
            }
            _ => Ok(ExtendOutcome::NotHeld),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<ReleaseOutcome, LockError> {
        let now = Instant::now();
        let mut rows = self.lock();
        match rows.get_mut(lease.resource()) {
            Some(row) if row.is_held_by(lease, now) => {
                row.expires_at = None;
                Ok(ReleaseOutcome::Released)
            }
            _ => Ok(ReleaseOutcome::NotHeld),
        }
    }
}
