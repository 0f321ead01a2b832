//! `GET /jobs/{id}/log`: a job's log read through the store a bounded piece at a time (a slow
//! reader holds a position, not a copy), and with `follow=1` followed until the job ends: woken by
//! the job's sink when it runs on this instance, polled from the store when another one runs it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use tokio::sync::watch;

use crate::engine::JobSink;
use crate::job::{Job, JobId};
use crate::store::{Store, StoreError};

/// How often a follower of a job that runs on another instance asks the store for more.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long a follower waits when the sink has taken output the store cannot show yet.
const UNREADABLE_RETRY: Duration = Duration::from_millis(50);

/// Where a follower learns that there is more to read.
pub enum Source {
    /// The job runs here: its sink says how long the log is, its watch when it ended.
    Local {
        job: watch::Receiver<Job>,
        sink: Arc<JobSink>,
    },
    /// Another instance runs it (or it ended): ask the store.
    Store,
}

struct Reader {
    store: Store,
    id: JobId,
    offset: u64,
    follow: Option<Follow>,
    done: bool,
}

struct Follow {
    source: Source,
    length: Option<watch::Receiver<u64>>,
    /// The job ended: read what is left, then end.
    finished: bool,
}

/// The log from byte `offset` as it is now; with `follow`, then what comes until the job ends.
pub fn read(
    store: Store,
    id: JobId,
    offset: u64,
    follow: Option<Source>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let follow = follow.map(|source| Follow {
        length: match &source {
            Source::Local { sink, .. } => Some(sink.log_len()),
            Source::Store => None,
        },
        source,
        finished: false,
    });
    let reader = Reader {
        store,
        id,
        offset,
        follow,
        done: false,
    };
    stream::unfold(reader, |mut reader| async move {
        loop {
            if reader.done {
                return None;
            }
            // Whether the job had ended is read before the log, so nothing written before the
            // end is missed.
            let finished = match &mut reader.follow {
                None => true,
                Some(follow) => follow.check_finished(&reader.store, &reader.id).await,
            };
            match reader.store.read_log(&reader.id, reader.offset).await {
                Ok(piece) if !piece.is_empty() => {
                    reader.offset += piece.len() as u64;
                    return Some((Ok(piece), reader));
                }
                Ok(_) => {}
                Err(error) => {
                    reader.done = true;
                    return Some((Err(io_error(error)), reader));
                }
            }
            if finished {
                return None;
            }
            if let Some(follow) = &mut reader.follow {
                follow.wait(reader.offset).await;
            }
        }
    })
}

impl Follow {
    async fn check_finished(&mut self, store: &Store, id: &JobId) -> bool {
        if self.finished {
            return true;
        }
        self.finished = match &mut self.source {
            Source::Local { job, .. } => job.borrow_and_update().status().is_final(),
            // A job the store cannot read any more (pruned, or the store is down) ends the follow.
            Source::Store => match store.get(id).await {
                Ok(Some(job)) => job.status().is_final(),
                Ok(None) | Err(_) => true,
            },
        };
        self.finished
    }

    /// Waits until the log may be longer than `offset` or the job may have ended.
    async fn wait(&mut self, offset: u64) {
        match (&mut self.source, &mut self.length) {
            (Source::Local { job, .. }, Some(length)) => {
                if *length.borrow_and_update() > offset {
                    // Written but not readable yet (a backend that keeps output in batches).
                    return tokio::time::sleep(UNREADABLE_RETRY).await;
                }
                let closed = tokio::select! {
                    changed = length.changed() => changed.is_err(),
                    changed = job.changed() => changed.is_err(),
                };
                if closed {
                    // The run here is over but the job goes on (its next attempt, wherever
                    // it runs): follow it through the store until it ends.
                    self.source = Source::Store;
                    self.length = None;
                }
            }
            _ => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

fn io_error(error: StoreError) -> std::io::Error {
    match error {
        StoreError::Io(error) => error,
        other => std::io::Error::other(other),
    }
}
