//! When jobs change, for the page's lists: one look at the store every [`POLL`] shared by every
//! open page, made only while a page listens. No signal reaches every instance when a job is
//! admitted or changes state, so it polls; a look costs three short listings of the store.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::job::{JobId, Status};
use crate::store::{ListQuery, Store};

/// How often the store is looked at while a page listens.
const POLL: Duration = Duration::from_secs(2);

/// How many of the queued and of the running jobs a look compares.
const WINDOW: usize = 100;

/// Counts the changes seen; a page's stream wakes when the count moves.
pub struct Changes {
    count: watch::Sender<u64>,
    /// Whether the poller runs. Held while it decides to stop and while a listener joins, so
    /// that a listener never joins a poller that is stopping.
    polling: Arc<Mutex<bool>>,
}

impl Default for Changes {
    fn default() -> Changes {
        Changes {
            count: watch::Sender::new(0),
            polling: Arc::new(Mutex::new(false)),
        }
    }
}

impl Changes {
    /// A receiver that is told of each change from now on; starts the poller if none runs.
    pub fn listen(&self, store: &Store) -> watch::Receiver<u64> {
        let mut polling = self.polling.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = self.count.subscribe();
        if !*polling {
            *polling = true;
            tokio::spawn(poll(
                store.clone(),
                self.count.clone(),
                Arc::clone(&self.polling),
            ));
        }
        receiver
    }
}

/// Looks at the store every [`POLL`] and counts each change, until no one listens.
async fn poll(store: Store, count: watch::Sender<u64>, polling: Arc<Mutex<bool>>) {
    let mut last = fingerprint(&store).await;
    loop {
        tokio::time::sleep(POLL).await;
        {
            let mut polling = polling.lock().unwrap_or_else(PoisonError::into_inner);
            if count.receiver_count() == 0 {
                *polling = false;
                return;
            }
        }
        let now = fingerprint(&store).await;
        if now.is_some() && now != last {
            last = now;
            count.send_modify(|count| *count += 1);
        }
    }
}

/// What the jobs look like, as far as the lists care: the newest job and the queued, running and
/// awaiting ones, each with its status (one that ends leaves its list). An admission or a change of state changes it. `None` when the
/// store cannot be read.
async fn fingerprint(store: &Store) -> Option<Vec<(JobId, Status)>> {
    let mut seen = Vec::new();
    for (status, limit) in [
        (None, 1),
        (Some(Status::Queued), WINDOW),
        (Some(Status::Running), WINDOW),
        (Some(Status::AwaitingApproval), WINDOW),
    ] {
        let query = ListQuery {
            hook: None,
            status,
            before: None,
            limit,
        };
        let page = store.list(query).await.ok()?;
        seen.extend(page.jobs.iter().map(|job| (job.id.clone(), job.status())));
    }
    Some(seen)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn the_poller_stops_when_no_page_listens_and_starts_again_when_one_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite(dir.path(), "test").unwrap();
        let changes = Changes::default();
        let polling = || *changes.polling.lock().unwrap();
        let listener = changes.listen(&store);
        assert!(polling());
        drop(listener);
        let deadline = Instant::now() + POLL * 3;
        while polling() {
            assert!(
                Instant::now() < deadline,
                "the poller goes on with no one to tell"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _listener = changes.listen(&store);
        assert!(polling());
    }
}
