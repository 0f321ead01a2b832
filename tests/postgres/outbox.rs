//! The outbox writes a batch of ends and output in one transaction of a few statements, however
//! many items it holds, and wakes the cluster's claims only when a job waits.
//!
//! A batch is formed by holding the row of a first ("sentinel") end: the outbox waits on it
//! while the test hands over the rest, which all go into the next batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use hookrunner::config::Concurrency;
use hookrunner::job::{now_ms, Job, JobId, Outcome, Status};
use hookrunner::store::{Admission, Committed, Durability, Placement, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::helpers::*;
use crate::proxy::{port_of, with_port};

const ANY: Concurrency = Concurrency::Parallel { limit: None };

/// A TCP proxy to the test server that counts the statements its clients send: each `Query`
/// message (the simple protocol, however many statements its text holds) and each `Execute`.
struct StatementCounter {
    port: u16,
    statements: Arc<AtomicU64>,
}

impl StatementCounter {
    async fn start(server_port: u16) -> StatementCounter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let statements = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&statements);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let server = tokio::net::TcpStream::connect(("127.0.0.1", server_port))
                        .await
                        .unwrap();
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async {
                        let mut messages = Messages::default();
                        let mut buffer = vec![0; 64 << 10];
                        loop {
                            let read = client_read.read(&mut buffer).await.unwrap_or(0);
                            if read == 0 {
                                return;
                            }
                            let statements = messages.statements_in(&buffer[..read]);
                            counted.fetch_add(statements, Ordering::SeqCst);
                            if server_write.write_all(&buffer[..read]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                    tokio::select! {
                        () = upstream => {}
                        _ = downstream => {}
                    }
                });
            }
        });
        StatementCounter { port, statements }
    }

    fn count(&self) -> u64 {
        self.statements.load(Ordering::SeqCst)
    }
}

/// The messages a client sends, cut out of the byte stream: first untyped ones (a request for
/// encryption, then the startup message), then each a type byte and a length.
#[derive(Default)]
struct Messages {
    started: bool,
    pending: Vec<u8>,
}

impl Messages {
    /// How many `Query` and `Execute` messages end in `data`.
    fn statements_in(&mut self, data: &[u8]) -> u64 {
        self.pending.extend_from_slice(data);
        let mut statements = 0;
        loop {
            let header = usize::from(self.started);
            let Some(length) = self.pending.get(header..header + 4) else {
                return statements;
            };
            let length = u32::from_be_bytes(length.try_into().unwrap()) as usize;
            if self.pending.len() < header + length {
                return statements;
            }
            if self.started {
                statements += u64::from(matches!(self.pending[0], b'Q' | b'E'));
            } else {
                // An `SSLRequest` or `GSSENCRequest` comes before the startup message.
                let code = u32::from_be_bytes(self.pending[4..8].try_into().unwrap());
                self.started = !matches!(code, 80_877_103 | 80_877_104);
            }
            self.pending.drain(..header + length);
        }
    }
}

/// An instance that talks to the database only when asked: its heartbeat never comes.
async fn quiet_instance(url: &str, name: &str) -> Store {
    Store::postgres(url, name, LONG, 2 * LONG).await.unwrap()
}

/// A store behind a statement counter, and two clients of the test's own on the same database:
/// one holds rows, the other watches (a transaction sees `pg_stat_activity` as it first read it).
struct Rig {
    counter: StatementCounter,
    store: Store,
    sql: tokio_postgres::Client,
    watcher: tokio_postgres::Client,
}

impl Rig {
    async fn start() -> Rig {
        let url = fresh_database().await;
        let counter = StatementCounter::start(port_of(&url)).await;
        let store = quiet_instance(&with_port(&url, counter.port), "a").await;
        Rig {
            counter,
            store,
            sql: sql(&url).await,
            watcher: sql(&url).await,
        }
    }

    /// A job admitted and claimed here, running.
    async fn running(&self, key: Option<&str>) -> Job {
        let id = admit(&self.store, new_job("deploy", ANY, key)).await;
        let claimed = claim(&self.store, 1).await;
        assert_eq!(ids(&claimed), [id]);
        claimed.into_iter().next().unwrap().job
    }

    /// Hands over the ends `handed` makes in one batch, and returns the statements the batch
    /// cost: a sentinel end is held up in the database meanwhile, so everything `handed` hands
    /// over waits in the outbox and goes in one batch once it is let go.
    async fn one_batch(&mut self, handed: impl FnOnce(&Store) -> Vec<Committed>) -> u64 {
        let sentinel = self.running(None).await;
        let held = self.sql.transaction().await.unwrap();
        held.execute(
            "SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE",
            &[&sentinel.id.as_str()],
        )
        .await
        .unwrap();
        let sentinel = ended(sentinel, Status::Succeeded);
        let sentinel_written = self.store.finish(&sentinel, Durability::Os);
        eventually(
            Duration::from_secs(30),
            "the outbox waits for the held row",
            || async {
                let waiting: i64 = self
                    .watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = current_database() AND wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (waiting > 0).then_some(())
            },
        )
        .await;
        let written = handed(&self.store);
        let before = self.counter.count();
        held.commit().await.unwrap();
        sentinel_written.await.unwrap();
        for committed in written {
            committed.await.unwrap();
        }
        self.store.flush().await.unwrap();
        // With what the sentinel's batch sent once let go: the same whatever follows.
        self.counter.count() - before
    }

    /// The ids of the transactions that last wrote `jobs` rows and `job_output` rows.
    async fn writers(&self, jobs: &[&JobId], output_of: &[&JobId]) -> Vec<String> {
        let jobs: Vec<&str> = jobs.iter().map(|id| id.as_str()).collect();
        let output_of: Vec<&str> = output_of.iter().map(|id| id.as_str()).collect();
        self.sql
            .query(
                "SELECT DISTINCT xmin::text FROM ( \
                     SELECT xmin FROM jobs WHERE id = ANY($1) \
                     UNION ALL SELECT xmin FROM job_output WHERE job_id = ANY($2)) AS rows",
                &[&jobs, &output_of],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

/// `job` ended with `status`, as the engine hands it over.
fn ended(mut job: Job, status: Status) -> Job {
    let outcome = Outcome {
        exit_code: match status {
            Status::Succeeded => Some(0),
            Status::Failed => Some(3),
            _ => None,
        },
        duration_ms: Some(1),
        ..Outcome::unrun(status, None)
    };
    job.finish(outcome, now_ms()).unwrap();
    job
}

#[tokio::test]
async fn a_batch_costs_the_same_statements_whatever_the_number_of_ends_and_outputs() {
    let mut costs = Vec::new();
    for count in [1, 40] {
        let mut rig = Rig::start().await;
        let mut jobs = Vec::new();
        for _ in 0..count {
            jobs.push(rig.running(None).await);
        }
        let cost = rig
            .one_batch(|store| {
                jobs.iter()
                    .map(|job| {
                        store.log_writer(&job.id).append(b"done\n").unwrap();
                        store.finish(&ended(job.clone(), Status::Succeeded), Durability::Os)
                    })
                    .collect()
            })
            .await;
        for job in &jobs {
            assert_eq!(status(&rig.store, &job.id).await, Status::Succeeded);
            assert_eq!(
                &rig.store.read_log(&job.id, 0).await.unwrap()[..],
                b"done\n"
            );
        }
        costs.push(cost);
    }
    assert_eq!(costs[0], costs[1], "statements for 1 end, for 40 ends");
}

#[tokio::test]
async fn a_mixed_batch_of_ends_and_output_is_written_right_in_one_transaction() {
    let mut rig = Rig::start().await;
    let plain = rig.running(None).await;
    let cost_of_one = rig
        .one_batch(|store| {
            store.log_writer(&plain.id).append(b"done\n").unwrap();
            vec![store.finish(&ended(plain, Status::Succeeded), Durability::Os)]
        })
        .await;

    let succeeded = rig.running(Some("delivery-s")).await;
    let failed = rig.running(Some("delivery-f")).await;
    let fenced = rig.running(Some("delivery-x")).await;
    // Queued for an instance that never claims, so it ends before it runs.
    let mut elsewhere = new_job("other", Concurrency::Latest, None);
    elsewhere.placement = Placement::On {
        instance: "elsewhere".into(),
        per_instance: false,
    };
    let unrun = admit(&rig.store, elsewhere).await;
    // Another instance took this one for dead and recorded `fenced` interrupted.
    rig.sql
        .execute(
            "UPDATE jobs SET status = 'interrupted', finished_ms = $2, error = 'lost' \
             WHERE id = $1",
            &[&fenced.id.as_str(), &now_ms()],
        )
        .await
        .unwrap();
    let unrun_job = rig.store.get(&unrun).await.unwrap().unwrap();
    let cost = rig
        .one_batch(|store| {
            let mut written = Vec::new();
            for (job, status) in [
                (&succeeded, Status::Succeeded),
                (&failed, Status::Failed),
                (&fenced, Status::Failed),
            ] {
                let line = format!("{} says {}\n", job.id, status.as_str());
                store.log_writer(&job.id).append(line.as_bytes()).unwrap();
                written.push(store.finish(&ended(job.clone(), status), Durability::Disk));
            }
            written
                .push(store.finish(&ended(unrun_job.clone(), Status::Cancelled), Durability::Os));
            written
        })
        .await;

    let store = &rig.store;
    assert_eq!(status(store, &succeeded.id).await, Status::Succeeded);
    assert_eq!(status(store, &failed.id).await, Status::Failed);
    assert_eq!(status(store, &unrun).await, Status::Cancelled);
    let kept = store.get(&fenced.id).await.unwrap().unwrap();
    assert_eq!(kept.status(), Status::Interrupted, "the fence holds");
    assert_eq!(kept.outcome().unwrap().error.as_deref(), Some("lost"));
    for (job, status) in [
        (&succeeded, "succeeded"),
        (&failed, "failed"),
        (&fenced, "failed"),
    ] {
        let log = store.read_log(&job.id, 0).await.unwrap();
        assert_eq!(log, format!("{} says {status}\n", job.id).as_bytes());
    }
    // The failed job's delivery runs again; the succeeded one's is still a duplicate.
    let again = |key| store.admit(new_job("deploy", ANY, Some(key)), 1000);
    assert!(matches!(
        again("delivery-s").await.unwrap(),
        Admission::Duplicate(id) if id == succeeded.id
    ));
    assert!(matches!(
        again("delivery-f").await.unwrap(),
        Admission::Accepted { .. }
    ));
    let writers = rig
        .writers(
            &[&succeeded.id, &failed.id, &unrun],
            &[&succeeded.id, &failed.id, &fenced.id],
        )
        .await;
    assert_eq!(writers.len(), 1, "one transaction wrote them all");
    // The fenced end costs one look at what the store holds instead, whatever the batch holds.
    assert!(
        cost <= cost_of_one + 1,
        "the mixed batch cost {cost} statements, one end {cost_of_one}"
    );
}

/// The payloads of the `hookrunner_work` notifications the database at `url` sends.
async fn work_notifications(
    url: &str,
) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(notification) = message {
                let _ = sender.send(notification.payload().to_string());
            }
        }
    });
    client
        .batch_execute("LISTEN hookrunner_work")
        .await
        .unwrap();
    (client, receiver)
}

/// What was notified since the last marker, up to `marker`, which this sends.
async fn notified_until(
    client: &tokio_postgres::Client,
    notifications: &mut mpsc::UnboundedReceiver<String>,
    marker: &str,
) -> Vec<String> {
    client
        .execute("SELECT pg_notify('hookrunner_work', $1)", &[&marker])
        .await
        .unwrap();
    let mut heard = Vec::new();
    loop {
        let payload = tokio::time::timeout(Duration::from_secs(30), notifications.recv())
            .await
            .expect("the marker comes back")
            .unwrap();
        if payload == marker {
            return heard;
        }
        heard.push(payload);
    }
}

#[tokio::test]
async fn an_end_wakes_the_claims_only_when_a_job_is_queued() {
    let url = fresh_database().await;
    let store = quiet_instance(&url, "a").await;
    let (client, mut notifications) = work_notifications(&url).await;
    let first = admit(&store, new_job("deploy", ANY, None)).await;
    let second = admit(&store, new_job("deploy", ANY, None)).await;
    let claimed = claim(&store, 2).await;
    assert_eq!(ids(&claimed), [first, second]);
    let mut claimed = claimed.into_iter().map(|claimed| claimed.job);
    notified_until(&client, &mut notifications, "set up").await;

    finish(&store, claimed.next().unwrap(), Status::Succeeded).await;
    store.flush().await.unwrap();
    let heard = notified_until(&client, &mut notifications, "nothing queued").await;
    assert_eq!(heard, Vec::<String>::new(), "no job waits for room");

    let waiting = admit(&store, new_job("other", Concurrency::Latest, None)).await;
    notified_until(&client, &mut notifications, "admitted").await;
    finish(&store, claimed.next().unwrap(), Status::Failed).await;
    store.flush().await.unwrap();
    let heard = notified_until(&client, &mut notifications, "one queued").await;
    assert_eq!(heard, [""], "the queued job may have room now");
    assert_eq!(status(&store, &waiting).await, Status::Queued);
}

#[tokio::test]
async fn a_batch_the_database_refuses_is_written_one_item_at_a_time() {
    let mut rig = Rig::start().await;
    let kept = rig.running(None).await;
    let pruned = rig.running(None).await;
    // Its row is gone (pruned), so its output has nothing to belong to: the database refuses it.
    rig.sql
        .execute("DELETE FROM jobs WHERE id = $1", &[&pruned.id.as_str()])
        .await
        .unwrap();
    rig.one_batch(|store| {
        [&pruned, &kept]
            .into_iter()
            .map(|job| {
                store.log_writer(&job.id).append(b"out\n").unwrap();
                store.finish(&ended(job.clone(), Status::Succeeded), Durability::Os)
            })
            .collect()
    })
    .await;
    assert_eq!(status(&rig.store, &kept.id).await, Status::Succeeded);
    assert_eq!(
        &rig.store.read_log(&kept.id, 0).await.unwrap()[..],
        b"out\n"
    );
    assert!(rig.store.get(&pruned.id).await.unwrap().is_none());
}
