//! The outbox: jobs' ends and output, written in the order they were handed over, by one task
//! that retries with backoff while the database cannot be reached. Nothing handed to it is lost
//! while the process lives: a job's end is recorded once the database is back.
//!
//! Output is gathered per job ([`RowsWriter`]) and handed over at most every
//! [`OUTPUT_LINGER`] or [`OUTPUT_CHUNK`] bytes, and always before the job's end.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, watch};

use self::batch::Batch;
use super::Cached;
use super::{lock, Failure};
use crate::job::{Job, JobId};
use crate::store::{Committed, Durability, StoreError, StoreStats};

mod batch;

/// The longest output waits in memory before it is handed to the outbox.
const OUTPUT_LINGER: Duration = Duration::from_millis(100);

/// The most output one row holds; a job's buffer is handed over when it reaches this.
const OUTPUT_CHUNK: usize = 64 << 10;

/// The most output (bytes) waiting for the database, all jobs together: past it, a job's output
/// is dropped (a marker says where in its log) until the backlog shrinks, so a database that is
/// away for long does not make the process grow without bound. Jobs' ends are always kept.
pub(super) const OUTPUT_BACKLOG: usize = 32 << 20;

/// What a job's log holds where its output was dropped.
pub(super) const DROPPED_MARKER: &[u8] =
    b"\n[hookrunner: output dropped here: the job store's database was away or too slow to keep it]\n";

/// The most items one transaction writes.
const MAX_BATCH: usize = 256;

/// The first and the longest wait between two tries while the database cannot be reached.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

enum Item {
    Output {
        job_id: String,
        start: i64,
        data: Vec<u8>,
    },
    Finish {
        job: Box<Job>,
        durability: Durability,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl Item {
    /// The bytes of output it holds, which count in the backlog.
    fn output_len(&self) -> usize {
        match self {
            Item::Output { data, .. } => data.len(),
            _ => 0,
        }
    }
}

/// What the outbox and every job's [`RowsWriter`] share.
struct Shared {
    sender: mpsc::UnboundedSender<Item>,
    /// Items handed over so far, and (below) the number of them the worker is done with: a read
    /// waits until the second reaches what the first was when it started.
    handed: AtomicU64,
    done: watch::Sender<u64>,
    /// Bytes of output handed over and not yet written (at most [`OUTPUT_BACKLOG`], and a
    /// marker per job past it).
    backlog: AtomicUsize,
    /// Each running job's output not yet handed over.
    buffers: Mutex<HashMap<JobId, Buffer>>,
}

#[derive(Default)]
struct Buffer {
    /// Where `data` starts in the job's log.
    start: u64,
    data: Vec<u8>,
    /// When the oldest byte of `data` arrived.
    since: Option<Instant>,
    /// Output is being dropped (the marker was handed over) until the backlog has room again.
    dropping: bool,
}

impl Shared {
    /// Hands over the job's gathered output; called with its buffer locked, so the order of
    /// items is the order of the output.
    fn send_output(&self, id: &JobId, buffer: &mut Buffer) {
        if buffer.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut buffer.data);
        buffer.since = None;
        let backlog = self.backlog.load(Ordering::SeqCst);
        if backlog.saturating_add(data.len()) > OUTPUT_BACKLOG {
            if buffer.dropping {
                return;
            }
            buffer.dropping = true;
            tracing::warn!(
                job_id = %id,
                backlog_bytes = backlog,
                "the job store's database is away or too slow: this job's output is dropped until it catches up (its log says where); its end will still be recorded"
            );
            data = DROPPED_MARKER.to_vec();
        } else {
            buffer.dropping = false;
        }
        self.backlog.fetch_add(data.len(), Ordering::SeqCst);
        let start = buffer.start;
        buffer.start += data.len() as u64;
        self.send(Item::Output {
            job_id: id.to_string(),
            start: i64::try_from(start).unwrap_or(i64::MAX),
            data,
        });
    }

    fn send(&self, item: Item) {
        self.handed.fetch_add(1, Ordering::SeqCst);
        if self.sender.send(item).is_err() {
            // The worker is gone (the runtime is shutting down): nobody will wait for this.
            self.done.send_modify(|done| *done += 1);
        }
    }

    fn flush_stale(&self) {
        let mut buffers = lock(&self.buffers);
        for (id, buffer) in buffers.iter_mut() {
            if buffer
                .since
                .is_some_and(|since| since.elapsed() >= OUTPUT_LINGER)
            {
                self.send_output(id, buffer);
            }
        }
    }
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    synced: AtomicU64,
    writes: AtomicU64,
}

pub(super) struct Outbox {
    shared: Arc<Shared>,
    counters: Arc<Counters>,
}

impl Outbox {
    /// Starts the task that writes what is handed over, on the current runtime. It ends once
    /// every handle is gone and everything handed over is written.
    /// `pools`: connections that commit to the disk, and ones that do not wait for it.
    pub fn start(pools: (Pool, Pool), failure: Failure, instance: String) -> Outbox {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            sender,
            handed: AtomicU64::new(0),
            done: watch::channel(0).0,
            backlog: AtomicUsize::new(0),
            buffers: Mutex::default(),
        });
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            pools,
            failure,
            instance,
            shared: Arc::downgrade(&shared),
            counters: Arc::clone(&counters),
        };
        tokio::spawn(worker.run(receiver));
        Outbox { shared, counters }
    }

    /// Where a job's output goes.
    pub fn writer(&self, id: &JobId) -> RowsWriter {
        RowsWriter {
            id: id.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Hands over the job's end, after what is left of its output.
    pub fn finish(&self, job: &Job, durability: Durability) -> Committed {
        let (reply, receiver) = oneshot::channel();
        let mut buffers = lock(&self.shared.buffers);
        if let Some(mut buffer) = buffers.remove(&job.id) {
            self.shared.send_output(&job.id, &mut buffer);
        }
        self.shared.send(Item::Finish {
            job: Box::new(job.clone()),
            durability,
            reply,
        });
        Committed::from(receiver)
    }

    /// Waits until what was handed over before the call is written, so a read sees it: at
    /// most `limit`, after which the read goes on (and fails itself if the database is away).
    pub async fn settle(&self, limit: Duration) {
        let handed = self.shared.handed.load(Ordering::SeqCst);
        let mut done = self.shared.done.subscribe();
        let _ = tokio::time::timeout(limit, done.wait_for(|done| *done >= handed)).await;
    }

    /// Resolves once everything handed over before it is written.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, receiver) = oneshot::channel();
        {
            let buffers = &mut *lock(&self.shared.buffers);
            for (id, buffer) in buffers.iter_mut() {
                self.shared.send_output(id, buffer);
            }
            self.shared.send(Item::Flush { reply });
        }
        Committed::from(receiver).await
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            synced: self.counters.synced.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }
}

/// Gathers one job's output for the outbox: see [`crate::store::LogWriter::Rows`].
pub struct RowsWriter {
    id: JobId,
    shared: Arc<Shared>,
}

impl RowsWriter {
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut buffers = lock(&self.shared.buffers);
        let buffer = buffers.entry(self.id.clone()).or_default();
        for piece in data.chunks(OUTPUT_CHUNK) {
            buffer.data.extend_from_slice(piece);
            let since = *buffer.since.get_or_insert_with(Instant::now);
            if buffer.data.len() >= OUTPUT_CHUNK || since.elapsed() >= OUTPUT_LINGER {
                self.shared.send_output(&self.id, buffer);
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!("the job store's output of job {}", self.id)
    }
}

struct Worker {
    /// Connections that commit to the disk, and ones that do not wait for it.
    pools: (Pool, Pool),
    failure: Failure,
    instance: String,
    /// Weak, so the task ends when the last [`Outbox`] and [`RowsWriter`] are gone.
    shared: std::sync::Weak<Shared>,
    counters: Arc<Counters>,
}

impl Worker {
    async fn run(self, mut receiver: mpsc::UnboundedReceiver<Item>) {
        loop {
            let first = tokio::select! {
                item = receiver.recv() => item,
                () = tokio::time::sleep(OUTPUT_LINGER) => {
                    match self.shared.upgrade() {
                        Some(shared) => shared.flush_stale(),
                        None if receiver.is_empty() => return,
                        None => {}
                    }
                    continue;
                }
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            let count = batch.len() as u64;
            let bytes: usize = batch.iter().map(Item::output_len).sum();
            self.write_until_done(batch).await;
            if let Some(shared) = self.shared.upgrade() {
                shared.backlog.fetch_sub(bytes, Ordering::SeqCst);
                shared.done.send_modify(|done| *done += count);
            }
        }
    }

    /// Writes the batch in one transaction, retrying while the database cannot be reached. A
    /// batch the database refuses is written one item at a time, so only the refused item is
    /// dropped (and logged).
    async fn write_until_done(&self, batch: Vec<Item>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.write(&batch).await {
                Ok(()) => return answer(batch, |_| Ok(())),
                Err(error) if super::conflicted(&error) => {
                    // Aborted only because it met another transaction: nothing is wrong with it.
                    tracing::debug!(%error, "a batch of jobs' ends met another transaction; trying it again");
                    tokio::time::sleep(FIRST_BACKOFF).await;
                }
                Err(StoreError::Unavailable { .. }) => {
                    tracing::warn!(
                        waiting = batch.len(),
                        "the job store's database cannot be reached; keeping jobs' ends and output until it is back"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(error) if batch.len() > 1 => {
                    tracing::warn!(%error, "the job store refused a batch; writing it one item at a time");
                    for item in batch {
                        Box::pin(self.write_until_done(vec![item])).await;
                    }
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, "the job store refused a job's end or output; dropping it");
                    let message = error.to_string();
                    return answer(batch, |_| Err(StoreError::Database(message.clone().into())));
                }
            }
        }
    }

    async fn write(&self, items: &[Item]) -> Result<(), StoreError> {
        let sql = |error| self.failure.sql(error);
        let batch = Batch::of(items);
        if batch.is_empty() {
            // Only flushes (and ends of jobs not finished): what came before is written.
            return Ok(());
        }
        let pool = if batch.durable {
            &self.pools.0
        } else {
            &self.pools.1
        };
        let client = pool.get().await.map_err(|error| self.failure.pool(error))?;
        let ended = batch.write(&client, &self.instance).await.map_err(sql)?;
        if ended {
            wake_claims(&client).await;
        }
        if batch.writes > 0 {
            self.counters.commits.fetch_add(1, Ordering::Relaxed);
            self.counters
                .writes
                .fetch_add(batch.writes, Ordering::Relaxed);
            if batch.durable {
                self.counters.synced.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// After ends are committed: a lane may have room now, which matters only to a queued job, so
/// the instances are told to claim only when one is queued. Asked after the commit, not in the
/// transaction: a job admitted after this look notifies by itself, and the claim that notice
/// starts sees these ends; a job admitted before it is seen here. (Asked before the commit, an
/// admission committing in between could be claimed for, and found with no room, before these
/// ends were visible.) Not heard, it is told again by every instance's heartbeat.
async fn wake_claims(client: &deadpool_postgres::Client) {
    let notified = Cached(client)
        .execute(
            "SELECT pg_notify('hookrunner_work', '') \
             WHERE EXISTS (SELECT 1 FROM jobs WHERE status = 'queued')",
            &[],
        )
        .await;
    if let Err(error) = notified {
        tracing::warn!(%error, "cannot tell the instances that jobs ended; they look for work again at their next heartbeat");
    }
}

/// Answers every waiter of the batch.
fn answer(batch: Vec<Item>, result: impl Fn(&Item) -> Result<(), StoreError>) {
    for item in batch {
        let answer = result(&item);
        match item {
            Item::Finish { reply, .. } | Item::Flush { reply } => {
                let _ = reply.send(answer);
            }
            Item::Output { .. } => {}
        }
    }
}
