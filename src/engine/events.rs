//! What other instances ask of this one, through the store: claim (work may be waiting), stop a
//! job that runs here, or learn that a job waiting here ended elsewhere.

use std::sync::Arc;

use super::Inner;
use crate::store::StoreEvent;

impl Inner {
    /// Serves the store's events until the store stops sending them.
    pub(super) fn listen(self: &Arc<Self>) {
        let Some(mut events) = self.store.events() else {
            return;
        };
        let inner = Arc::clone(self);
        self.runtime.spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    StoreEvent::Work => inner.wake(),
                    StoreEvent::Cancel(id) => {
                        inner.cancel_running(&id);
                    }
                    StoreEvent::Ended(id) => match inner.store.get(&id).await {
                        Ok(Some(job)) if job.status().is_final() => inner.ended_elsewhere(job),
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(job_id = %id, %error, "cannot read a job another instance ended")
                        }
                    },
                }
            }
        });
    }
}
