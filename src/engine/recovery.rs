//! Recovery: at start, the store takes back what a previous run of this instance left, and the
//! jobs still to run are claimed like any others.

use super::Engine;
use crate::config::Concurrency;
use crate::store::StoreError;

impl Engine {
    /// Has the store interrupt the jobs a previous run left running and put back in line the
    /// queued ones that run after a restart; returns how many were put back.
    pub async fn recover(
        &self,
        concurrency_of: impl Fn(&str) -> Concurrency + Sync,
    ) -> Result<usize, StoreError> {
        let recovered = self.inner.store.recover(&concurrency_of).await?;
        self.inner.wake();
        Ok(recovered.len())
    }
}
