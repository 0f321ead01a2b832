//! The writer of admissions straight to running (`direct.rs`): the admissions that arrive while
//! one batch is written go together in the next, one statement and one commit for all of them,
//! as the SQLite store's writer gathers its rows. A durable batch and a fast one are written by
//! two workers, so a job that need not wait for the disk never waits behind one that must.

use std::collections::HashSet;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{now_ms, Cached, Failure, Pools};
use crate::store::{Durability, StoreError};

/// The most admissions one statement writes.
const MAX_BATCH: usize = 128;

/// The most batches of one durability written at once (each on a connection of its own).
const IN_FLIGHT: usize = 3;

/// Inserts each job `running` on this instance, with its duplicate key, when its lane is a known
/// unlimited `parallel` lane and its key is free; the others are left out, with nothing written
/// for them, for the full admission to decide (a lane that is new or changed mode, a key that is
/// taken, by another job or by one of the same batch). Returns the ids inserted.
///
/// Jobs of the lane may be waiting: in an unlimited lane they wait only for an instance with
/// room, and this one has room. They are not passed over for long: a slot that frees up goes to
/// this instance's claim, oldest first, before any admission can hold it.
///
/// Reading the lane without locking its row is what every `parallel` admission does: only the
/// modes whose limits count waiting or running jobs lock it, and those never come here.
const INSERT_RUNNING: &str = "\
    WITH new AS ( \
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
                             $6::int[], $7::int[], $8::text[], $9::text[], $10::text[], \
                             $11::bool[]) \
            AS n(id, hook, request_id, dedupe_key, created_ms, attempt, attempts, placement, \
                 lane, command, notify) \
    ), open AS ( \
        SELECT new.* FROM new JOIN lanes l \
            ON l.lane = new.lane AND l.mode = 'parallel' AND l.parallel_limit IS NULL \
    ), key AS ( \
        INSERT INTO dedupe (hook, key, job_id) \
        SELECT hook, dedupe_key, id FROM open WHERE dedupe_key IS NOT NULL \
        ON CONFLICT DO NOTHING RETURNING job_id \
    ) \
    INSERT INTO jobs (id, hook, request_id, status, dedupe_key, created_ms, attempt, attempts, \
                      placement, lane, command, notify, instance, started_ms) \
    SELECT id, hook, request_id, 'running', dedupe_key, created_ms, attempt, attempts, \
           placement, lane, command, notify, $12, $13 FROM open \
    WHERE dedupe_key IS NULL OR id IN (SELECT job_id FROM key) \
    RETURNING id";

/// One job's row, as the statement takes it.
pub(super) struct Row {
    pub id: String,
    pub hook: String,
    pub request_id: String,
    pub dedupe_key: Option<String>,
    pub created_ms: i64,
    pub attempt: i32,
    pub attempts: i32,
    pub placement: Option<String>,
    pub lane: String,
    pub command: String,
    /// Its end is to be announced ([`NewJob::notify`](crate::store::NewJob)).
    pub notify: bool,
}

/// What a batch did for one job: `Some(started_ms)` when it is running here, `None` when it was
/// left out.
type Reply = Result<Option<i64>, StoreError>;

struct Pending {
    row: Row,
    reply: oneshot::Sender<Reply>,
}

pub(super) struct Starter {
    disk: mpsc::UnboundedSender<Pending>,
    fast: mpsc::UnboundedSender<Pending>,
}

impl Starter {
    /// Starts the two workers on the current runtime; each ends once the starter is dropped.
    pub fn start(pools: &Pools, failure: &Failure, instance: &str) -> Starter {
        let worker = |pool: &Pool| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let worker = Worker {
                pool: pool.clone(),
                failure: failure.clone(),
                instance: instance.to_string(),
            };
            tokio::spawn(worker.run(receiver));
            sender
        };
        Starter {
            disk: worker(pools.of(Durability::Disk)),
            fast: worker(pools.of(Durability::Os)),
        }
    }

    /// Writes the job with the next batch of its durability: committed as `durability` says once
    /// this resolves.
    pub async fn start_running(&self, row: Row, durability: Durability) -> Reply {
        let (reply, answer) = oneshot::channel();
        let sender = match durability {
            Durability::Disk => &self.disk,
            Durability::Os => &self.fast,
        };
        if sender.send(Pending { row, reply }).is_err() {
            return Err(StoreError::Closed);
        }
        answer.await.unwrap_or(Err(StoreError::Closed))
    }
}

struct Worker {
    pool: Pool,
    failure: Failure,
    instance: String,
}

impl Worker {
    /// Takes a batch whenever fewer than [`IN_FLIGHT`] are being written: a batch does not wait
    /// for the one before it, and what arrives while all are in flight makes the next one bigger.
    async fn run(self, mut receiver: mpsc::UnboundedReceiver<Pending>) {
        let worker = std::sync::Arc::new(self);
        let in_flight = std::sync::Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let Ok(permit) = std::sync::Arc::clone(&in_flight).acquire_owned().await else {
                return;
            };
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(_) => break,
                }
            }
            // Duplicate keys are taken in one order in every batch, so two batches never wait
            // for each other's keys the other way round.
            batch.sort_by(|a, b| {
                (&a.row.hook, &a.row.dedupe_key).cmp(&(&b.row.hook, &b.row.dedupe_key))
            });
            let worker = std::sync::Arc::clone(&worker);
            tokio::spawn(async move {
                worker.write_and_answer(batch).await;
                drop(permit);
            });
        }
    }

    async fn write_and_answer(&self, batch: Vec<Pending>) {
        let started_ms = now_ms();
        match self.write(&batch, started_ms).await {
            Ok(inserted) => {
                for pending in batch {
                    let started = inserted.contains(&pending.row.id).then_some(started_ms);
                    let _ = pending.reply.send(Ok(started));
                }
            }
            // Nothing of the statement was kept. A database that is away fails them all; any
            // other refusal (a deadlock, one job's value the database refuses) sends each job
            // to the full admission, which judges it alone and tries a conflict again.
            Err(error @ StoreError::Unavailable { .. }) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(copy(&error)));
                }
            }
            Err(error) => {
                tracing::debug!(%error, "a batch of admissions was refused; admitting each on its own");
                for pending in batch {
                    let _ = pending.reply.send(Ok(None));
                }
            }
        }
    }

    async fn write(
        &self,
        batch: &[Pending],
        started_ms: i64,
    ) -> Result<HashSet<String>, StoreError> {
        let column = |field: fn(&Row) -> &str| -> Vec<&str> {
            batch.iter().map(|pending| field(&pending.row)).collect()
        };
        let ids = column(|row| &row.id);
        let hooks = column(|row| &row.hook);
        let request_ids = column(|row| &row.request_id);
        let lanes = column(|row| &row.lane);
        let commands = column(|row| &row.command);
        let keys: Vec<Option<&str>> = batch
            .iter()
            .map(|pending| pending.row.dedupe_key.as_deref())
            .collect();
        let placements: Vec<Option<&str>> = batch
            .iter()
            .map(|pending| pending.row.placement.as_deref())
            .collect();
        let created: Vec<i64> = batch.iter().map(|pending| pending.row.created_ms).collect();
        let attempts: Vec<i32> = batch.iter().map(|pending| pending.row.attempt).collect();
        let of: Vec<i32> = batch.iter().map(|pending| pending.row.attempts).collect();
        let notify: Vec<bool> = batch.iter().map(|pending| pending.row.notify).collect();
        let client = self
            .pool
            .get()
            .await
            .map_err(|error| self.failure.pool(error))?;
        let rows = Cached(&client)
            .query(
                INSERT_RUNNING,
                &[
                    &ids,
                    &hooks,
                    &request_ids,
                    &keys,
                    &created,
                    &attempts,
                    &of,
                    &placements,
                    &lanes,
                    &commands,
                    &notify,
                    &self.instance,
                    &started_ms,
                ],
            )
            .await
            .map_err(|error| self.failure.sql(error))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

/// The batch's error, for each of its jobs: the same kind (so a database that is away is still
/// `Unavailable`), with the cause as text.
fn copy(error: &StoreError) -> StoreError {
    let cause = || Box::new(std::io::Error::other(error.to_string()));
    match error {
        StoreError::Unavailable { target, .. } => StoreError::Unavailable {
            target: target.clone(),
            source: cause(),
        },
        StoreError::Refused { target, .. } => StoreError::Refused {
            target: target.clone(),
            source: cause(),
        },
        StoreError::Closed => StoreError::Closed,
        _ => StoreError::Database(cause()),
    }
}
