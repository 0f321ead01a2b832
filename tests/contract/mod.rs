//! The store's contract, one test per promise of `hookrunner::store::Store`, run against every
//! backend: `tests/api/store_contract.rs` runs it on SQLite (in `cargo test`), and
//! `tests/postgres/` on a real PostgreSQL server. A backend gives a [`Database`]: a fresh, empty
//! place to open handles on.
//!
//! `store_contract!(fresh)` writes one `#[tokio::test]` per case, where `fresh()` is an async
//! function giving a new [`Database`].

#![allow(dead_code)]

mod approvals;
mod notifications;
pub use approvals::*;
pub use notifications::*;

use std::future::Future;
use std::time::Duration;

use hookrunner::command::JobCommand;
use hookrunner::config::Concurrency;
use hookrunner::job::{now_ms, Job, JobId, Outcome, Status};
use hookrunner::runner::Program;
use hookrunner::store::{
    Admission, CancelResult, Durability, ListQuery, NewJob, Placement, Retried, Store, StoreError,
};

/// A fresh database of one backend, and how to open handles on it (one per instance).
pub trait Database {
    fn try_open(&self, instance: &str) -> impl Future<Output = Result<Store, StoreError>>;

    /// Opens a handle for `instance`, waiting (up to 10 s) for a previous handle of the same name
    /// to let go of it.
    fn open(&self, instance: &str) -> impl Future<Output = Store> {
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                match self.try_open(instance).await {
                    Ok(store) => return store,
                    Err(error) if tokio::time::Instant::now() > deadline => {
                        panic!("cannot open the store for `{instance}`: {error}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }
}

/// Writes the contract's tests for the backend whose fresh databases `$fresh()` makes.
#[macro_export]
macro_rules! store_contract {
    ($fresh:path) => {
        $crate::store_contract!(@cases $fresh;
            admitted_jobs_read_back,
            a_job_command_reads_back_as_it_was_admitted,
            a_duplicate_delivery_is_admitted_once,
            a_failed_job_gives_its_key_back_and_a_succeeded_one_keeps_it,
            queue_runs_one_job_at_a_time_in_order,
            a_full_queue_refuses_and_an_idle_lane_does_not_count_its_next_job,
            parallel_limit_and_free_slots_bound_a_claim,
            jobs_of_different_hooks_are_claimed_oldest_first,
            latest_supersedes_the_waiting_job,
            replace_asks_to_stop_the_running_job,
            cancel_dequeues_or_reports_where_the_job_is,
            max_pending_refuses_past_the_limit,
            list_pages_newest_first_with_filters,
            a_log_reads_back_from_any_offset,
            a_restart_interrupts_running_jobs_and_keeps_durable_queued_ones,
            prune_deletes_old_finished_jobs_and_keeps_unfinished_ones,
            instances_include_this_one,
            a_retry_waits_for_its_time_and_its_log_follows_the_first_attempt,
            a_retry_enters_its_lane_like_a_new_trigger_and_is_fenced,
            cancel_ends_a_waiting_retry,
            a_restart_keeps_the_schedule_of_a_waiting_retry,
            a_job_end_is_announced_once,
            an_end_without_a_run_is_announced_too,
            a_notification_is_tried_by_one_deliverer_until_it_is_settled,
            a_delivered_notification_keeps_why_its_last_failed_try_failed,
            a_restart_lets_go_of_held_notifications,
            prune_keeps_a_pending_notification_of_a_pruned_job,
            an_awaiting_job_is_never_claimed_until_approved,
            an_approval_applies_the_lanes_rules_at_that_moment,
            a_rejected_job_ends_and_gives_its_key_back,
            expiry_ends_only_the_due_waits_and_says_when_the_next_is,
            cancel_ends_an_awaiting_job,
            list_filters_jobs_awaiting_approval,
            a_wait_and_an_end_are_announced_apart,
            an_awaiting_job_survives_a_restart_and_is_seen_by_another_instance,
            prune_never_deletes_an_awaiting_job,
            an_approved_job_joins_the_back_of_its_line_also_after_a_restart,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let database = $fresh().await;
                contract::$case(&database).await;
            }
        )*
    };
}

/// A command that does nothing; `durable` makes it an `async` job's (it runs after a restart).
pub fn command(durable: bool) -> JobCommand {
    JobCommand {
        program: Program::Argv(vec!["true".to_string()]),
        workdir: std::env::temp_dir(),
        env: Vec::new(),
        passthrough: Vec::new(),
        stdin: None,
        files: Vec::new(),
        timeout_ms: 10_000,
        kill_after_ms: 1_000,
        max_output: 1 << 20,
        keep_background: false,
        run_after_restart: durable,
        retry: None,
    }
}

pub fn new_job(hook: &str, key: Option<&str>, concurrency: Concurrency) -> NewJob {
    NewJob {
        job: Job::queued(
            JobId::generate(),
            hook.to_string(),
            "request-1".to_string(),
            key.map(str::to_string),
            now_ms(),
        ),
        command: command(true),
        concurrency,
        placement: Placement::Any,
        start_here: false,
        notify: false,
        approval_until_ms: None,
    }
}

/// A `wait` job of `hook` placed on `web-1`: its client is there, and its command does not run
/// after a restart.
fn local_job(hook: &str) -> NewJob {
    let mut local = new_job(hook, None, PARALLEL);
    local.command = command(false);
    local.placement = Placement::On {
        instance: "web-1".into(),
        per_instance: false,
    };
    local
}

pub const PARALLEL: Concurrency = Concurrency::Parallel { limit: None };

/// Admits, expecting it accepted and committed; returns the id.
pub async fn admit(store: &Store, new: NewJob) -> JobId {
    let id = new.job.id.clone();
    match store.admit(new, 10_000).await.unwrap() {
        Admission::Accepted { committed, .. } => committed.await.unwrap(),
        other => panic!("not accepted: {other:?}"),
    }
    id
}

pub async fn claim_ids(store: &Store, free: usize) -> Vec<JobId> {
    let claimed = store.claim(free).await.unwrap();
    let mut ids = Vec::new();
    for claimed in claimed {
        if let Some(started) = claimed.started {
            started.await.unwrap();
        }
        assert_eq!(claimed.job.status(), Status::Running);
        ids.push(claimed.job.id);
    }
    ids
}

/// Ends a running job as `status`, as its instance would, and waits for the write.
pub async fn finish(store: &Store, id: &JobId, status: Status) {
    let mut job = store.get(id).await.unwrap().expect("the job exists");
    let outcome = Outcome {
        exit_code: Some(i32::from(status != Status::Succeeded)),
        duration_ms: Some(3),
        stdout: Some("out".into()),
        stderr: Some(String::new()),
        ..Outcome::unrun(status, None)
    };
    job.finish(outcome, now_ms()).unwrap();
    store.finish(&job, Durability::Disk).await.unwrap();
}

pub async fn status(store: &Store, id: &JobId) -> Status {
    store
        .get(id)
        .await
        .unwrap()
        .expect("the job exists")
        .status()
}

pub async fn admitted_jobs_read_back(database: &impl Database) {
    let store = database.open("web-1").await;
    let new = new_job("deploy", Some("abc"), PARALLEL);
    let expected = new.job.clone();
    let id = admit(&store, new).await;
    assert_eq!(store.get(&id).await.unwrap(), Some(expected));
    assert_eq!(store.get(&JobId::generate()).await.unwrap(), None);

    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&id));
    let running = store.get(&id).await.unwrap().unwrap();
    let run = running.run().expect("a running job has a run");
    assert_eq!(run.instance, "web-1");
    assert!(run.started_ms >= running.created_ms);

    finish(&store, &id, Status::Failed).await;
    let ended = store.get(&id).await.unwrap().unwrap();
    assert_eq!(ended.status(), Status::Failed);
    let outcome = ended.outcome().unwrap();
    assert_eq!(
        (
            outcome.exit_code,
            outcome.duration_ms,
            outcome.stdout.as_deref()
        ),
        (Some(1), Some(3), Some("out"))
    );
    assert_eq!(ended.run().unwrap().instance, "web-1");
    assert!(claim_ids(&store, 8).await.is_empty(), "nothing runs twice");
}

/// A re-run reads the command a job was admitted with: kept after the job ends and across a
/// restart, for an `async` job's command; a `wait` or `stream` job's is never kept.
pub async fn a_job_command_reads_back_as_it_was_admitted(database: &impl Database) {
    let store = database.open("web-1").await;
    let mut new = new_job("deploy", Some("d-9"), PARALLEL);
    new.command.program = Program::Argv(vec!["deploy".into(), "--ref".into(), "main".into()]);
    new.command.env = vec![
        ("REF".into(), "refs/heads/main".into()),
        ("HOOK_JOB_ID".into(), new.job.id.to_string()),
    ];
    new.command.stdin = Some("eyJhIjoxfQ==".into());
    let expected = new.command.clone();
    let id = admit(&store, new).await;
    assert_eq!(store.command(&id).await.unwrap(), Some(expected.clone()));

    claim_ids(&store, 8).await;
    finish(&store, &id, Status::Succeeded).await;
    let local = admit(&store, local_job("deploy")).await;
    store.flush().await.unwrap();
    drop(store);

    let store = database.open("web-1").await;
    assert_eq!(
        store.command(&id).await.unwrap(),
        Some(expected),
        "an ended job keeps its command"
    );
    assert_eq!(store.command(&local).await.unwrap(), None, "never kept");
    assert_eq!(store.command(&JobId::generate()).await.unwrap(), None);
}

pub async fn a_duplicate_delivery_is_admitted_once(database: &impl Database) {
    let store = database.open("web-1").await;
    let first = admit(&store, new_job("deploy", Some("d-1"), PARALLEL)).await;
    match store
        .admit(new_job("deploy", Some("d-1"), PARALLEL), 100)
        .await
        .unwrap()
    {
        Admission::Duplicate(holder) => assert_eq!(holder, first),
        other => panic!("not a duplicate: {other:?}"),
    }
    // The key is the hook's: another hook's job with the same key is another delivery.
    admit(&store, new_job("other", Some("d-1"), PARALLEL)).await;
    admit(&store, new_job("deploy", None, PARALLEL)).await;
    admit(&store, new_job("deploy", None, PARALLEL)).await;
}

pub async fn a_failed_job_gives_its_key_back_and_a_succeeded_one_keeps_it(
    database: &impl Database,
) {
    let store = database.open("web-1").await;
    let failing = admit(&store, new_job("deploy", Some("k-1"), PARALLEL)).await;
    let passing = admit(&store, new_job("deploy", Some("k-2"), PARALLEL)).await;
    claim_ids(&store, 8).await;
    finish(&store, &failing, Status::Failed).await;
    finish(&store, &passing, Status::Succeeded).await;
    admit(&store, new_job("deploy", Some("k-1"), PARALLEL)).await;
    let again = store
        .admit(new_job("deploy", Some("k-2"), PARALLEL), 100)
        .await
        .unwrap();
    assert!(
        matches!(again, Admission::Duplicate(ref holder) if *holder == passing),
        "{again:?}"
    );
}

pub async fn queue_runs_one_job_at_a_time_in_order(database: &impl Database) {
    let store = database.open("web-1").await;
    let queue = Concurrency::Queue { queue: 10 };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(admit(&store, new_job("q", None, queue)).await);
    }
    assert_eq!(claim_ids(&store, 8).await, ids[..1]);
    assert!(claim_ids(&store, 8).await.is_empty(), "one at a time");
    finish(&store, &ids[0], Status::Succeeded).await;
    assert_eq!(claim_ids(&store, 8).await, ids[1..2]);
    finish(&store, &ids[1], Status::Failed).await;
    assert_eq!(claim_ids(&store, 8).await, ids[2..]);
}

pub async fn a_full_queue_refuses_and_an_idle_lane_does_not_count_its_next_job(
    database: &impl Database,
) {
    let store = database.open("web-1").await;
    let queue = Concurrency::Queue { queue: 1 };
    let first = admit(&store, new_job("q", None, queue)).await;
    admit(&store, new_job("q", None, queue)).await;
    let refused = store.admit(new_job("q", None, queue), 100).await.unwrap();
    assert!(
        matches!(refused, Admission::QueueFull { waiting: 2 }),
        "{refused:?}"
    );
    assert_eq!(claim_ids(&store, 8).await, [first]);
    // Busy now: one may wait, and one does.
    let refused = store.admit(new_job("q", None, queue), 100).await.unwrap();
    assert!(
        matches!(refused, Admission::QueueFull { waiting: 1 }),
        "{refused:?}"
    );
}

pub async fn parallel_limit_and_free_slots_bound_a_claim(database: &impl Database) {
    let store = database.open("web-1").await;
    let limited = Concurrency::Parallel { limit: Some(2) };
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(admit(&store, new_job("p", None, limited)).await);
    }
    assert_eq!(claim_ids(&store, 8).await, ids[..2]);
    assert!(claim_ids(&store, 8).await.is_empty());
    finish(&store, &ids[0], Status::Succeeded).await;
    assert_eq!(claim_ids(&store, 8).await, ids[2..3]);

    let mut free = Vec::new();
    for _ in 0..3 {
        free.push(admit(&store, new_job("free", None, PARALLEL)).await);
    }
    assert_eq!(claim_ids(&store, 2).await, free[..2]);
    assert_eq!(claim_ids(&store, 0).await, []);
    assert_eq!(claim_ids(&store, 2).await, free[2..]);
}

pub async fn jobs_of_different_hooks_are_claimed_oldest_first(database: &impl Database) {
    let store = database.open("web-1").await;
    let queue = Concurrency::Queue { queue: 10 };
    let a1 = admit(&store, new_job("a", None, queue)).await;
    let b1 = admit(&store, new_job("b", None, queue)).await;
    let a2 = admit(&store, new_job("a", None, queue)).await;
    let c1 = admit(&store, new_job("c", None, PARALLEL)).await;
    assert_eq!(claim_ids(&store, 2).await, [a1.clone(), b1]);
    // `a` is busy, so its second job waits while `c`'s goes ahead.
    assert_eq!(claim_ids(&store, 8).await, [c1]);
    finish(&store, &a1, Status::Succeeded).await;
    assert_eq!(claim_ids(&store, 8).await, [a2]);
}

pub async fn latest_supersedes_the_waiting_job(database: &impl Database) {
    let store = database.open("web-1").await;
    let latest = Concurrency::Latest;
    let running = admit(&store, new_job("l", None, latest)).await;
    claim_ids(&store, 8).await;
    let waiting = admit(&store, new_job("l", Some("w"), latest)).await;
    let newest = new_job("l", None, latest);
    let newest_id = newest.job.id.clone();
    match store.admit(newest, 100).await.unwrap() {
        Admission::Accepted {
            committed,
            superseded,
            cancel,
            ..
        } => {
            committed.await.unwrap();
            assert_eq!(superseded, std::slice::from_ref(&waiting));
            assert!(cancel.is_empty(), "latest lets the running job finish");
        }
        other => panic!("{other:?}"),
    }
    store.flush().await.unwrap();
    assert_eq!(status(&store, &waiting).await, Status::Superseded);
    // A superseded job gives its key back.
    admit(&store, new_job("l2", Some("w"), PARALLEL)).await;
    assert!(
        claim_ids(&store, 8).await.len() == 1,
        "only l2's job: `l` is busy"
    );
    finish(&store, &running, Status::Succeeded).await;
    assert_eq!(claim_ids(&store, 8).await, [newest_id]);
}

pub async fn replace_asks_to_stop_the_running_job(database: &impl Database) {
    let store = database.open("web-1").await;
    let replace = Concurrency::Replace;
    let running = admit(&store, new_job("r", None, replace)).await;
    claim_ids(&store, 8).await;
    let newer = new_job("r", None, replace);
    let newer_id = newer.job.id.clone();
    match store.admit(newer, 100).await.unwrap() {
        Admission::Accepted {
            committed, cancel, ..
        } => {
            committed.await.unwrap();
            assert_eq!(cancel, [(running.clone(), "web-1".to_string())]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        claim_ids(&store, 8).await.is_empty(),
        "waits for the cancelled job to end"
    );
    finish(&store, &running, Status::Cancelled).await;
    assert_eq!(claim_ids(&store, 8).await, [newer_id]);
}

pub async fn cancel_dequeues_or_reports_where_the_job_is(database: &impl Database) {
    let store = database.open("web-1").await;
    let queue = Concurrency::Queue { queue: 10 };
    let running = admit(&store, new_job("c", None, queue)).await;
    let waiting = admit(&store, new_job("c", Some("key"), queue)).await;
    claim_ids(&store, 8).await;
    match store.cancel(&waiting).await.unwrap() {
        CancelResult::Dequeued(job) => {
            assert_eq!(
                (job.id.clone(), job.status()),
                (waiting.clone(), Status::Cancelled)
            )
        }
        other => panic!("{other:?}"),
    }
    store.flush().await.unwrap();
    assert_eq!(status(&store, &waiting).await, Status::Cancelled);
    assert_eq!(
        store.cancel(&running).await.unwrap(),
        CancelResult::Running {
            instance: "web-1".into()
        }
    );
    finish(&store, &running, Status::Cancelled).await;
    assert_eq!(
        store.cancel(&running).await.unwrap(),
        CancelResult::AlreadyFinished(Status::Cancelled)
    );
    assert_eq!(
        store.cancel(&JobId::generate()).await.unwrap(),
        CancelResult::NotFound
    );
    assert!(
        claim_ids(&store, 8).await.is_empty(),
        "a cancelled job never runs"
    );
    // Its key is free again.
    admit(&store, new_job("c", Some("key"), queue)).await;
}

pub async fn max_pending_refuses_past_the_limit(database: &impl Database) {
    let store = database.open("web-1").await;
    for _ in 0..3 {
        let accepted = store.admit(new_job("m", None, PARALLEL), 3).await.unwrap();
        assert!(
            matches!(accepted, Admission::Accepted { .. }),
            "{accepted:?}"
        );
    }
    let refused = store.admit(new_job("m", None, PARALLEL), 3).await.unwrap();
    assert!(
        matches!(refused, Admission::ServerFull { pending: 3 }),
        "{refused:?}"
    );
}

pub async fn list_pages_newest_first_with_filters(database: &impl Database) {
    let store = database.open("web-1").await;
    let mut ids = Vec::new();
    for hook in ["a", "b", "a", "b", "a"] {
        ids.push(admit(&store, new_job(hook, None, PARALLEL)).await);
    }
    let newest_first: Vec<JobId> = ids.iter().rev().cloned().collect();
    let page = |before: Option<JobId>| ListQuery {
        before,
        limit: 2,
        ..ListQuery::default()
    };
    let first = store.list(page(None)).await.unwrap();
    assert_eq!(ids_of(&first.jobs), newest_first[..2]);
    assert_eq!(first.next.as_ref(), Some(&newest_first[1]));
    let second = store.list(page(first.next)).await.unwrap();
    assert_eq!(ids_of(&second.jobs), newest_first[2..4]);
    let last = store.list(page(second.next)).await.unwrap();
    assert_eq!(
        (ids_of(&last.jobs), last.next),
        (newest_first[4..].to_vec(), None)
    );

    let only_a = ListQuery {
        hook: Some("a".into()),
        limit: 10,
        ..ListQuery::default()
    };
    let a = store.list(only_a).await.unwrap();
    assert_eq!(
        ids_of(&a.jobs),
        [ids[4].clone(), ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(a.next, None);

    claim_ids(&store, 1).await;
    let running = ListQuery {
        status: Some(Status::Running),
        limit: 10,
        ..ListQuery::default()
    };
    assert_eq!(ids_of(&store.list(running).await.unwrap().jobs), ids[..1]);
}

fn ids_of(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|job| job.id.clone()).collect()
}

pub async fn a_log_reads_back_from_any_offset(database: &impl Database) {
    let store = database.open("web-1").await;
    let id = admit(&store, new_job("log", None, PARALLEL)).await;
    claim_ids(&store, 1).await;
    assert!(
        store.read_log(&id, 0).await.unwrap().is_empty(),
        "no output yet"
    );
    let mut writer = store.log_writer(&id);
    let text: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    writer.append(&text[..40_000]).unwrap();
    writer.append(&text[40_000..]).unwrap();
    drop(writer);
    finish(&store, &id, Status::Succeeded).await;
    let mut read = Vec::new();
    loop {
        let piece = store.read_log(&id, read.len() as u64).await.unwrap();
        if piece.is_empty() {
            break;
        }
        assert!(piece.len() <= 64 << 10, "a read is at most 64 KiB");
        read.extend_from_slice(&piece);
    }
    assert_eq!(read, text);
    assert_eq!(store.read_log(&id, 99_990).await.unwrap(), &text[99_990..]);
    for max in [1, 999, 65_536, 99_999, 100_000, 250_000] {
        let (tail, before) = store.read_log_tail(&id, max).await.unwrap();
        let start = text.len().saturating_sub(max);
        assert_eq!(
            (tail.as_slice(), before),
            (&text[start..], start as u64),
            "{max}"
        );
    }
    let empty = admit(&store, new_job("log", None, PARALLEL)).await;
    assert_eq!(
        store.read_log_tail(&empty, 10).await.unwrap(),
        (Vec::new(), 0)
    );
}

pub async fn a_restart_interrupts_running_jobs_and_keeps_durable_queued_ones(
    database: &impl Database,
) {
    let store = database.open("web-1").await;
    let running = admit(&store, new_job("r", None, PARALLEL)).await;
    claim_ids(&store, 1).await;
    let durable = admit(&store, new_job("r", None, PARALLEL)).await;
    let local = admit(&store, local_job("r")).await;
    store.flush().await.unwrap();
    drop(store);

    let store = database.open("web-1").await;
    store.recover(&|_| PARALLEL).await.unwrap();
    let interrupted = store.get(&running).await.unwrap().unwrap();
    assert_eq!(interrupted.status(), Status::Interrupted);
    assert!(interrupted.outcome().unwrap().error.is_some(), "says why");
    assert_eq!(
        status(&store, &local).await,
        Status::Interrupted,
        "a wait or stream job's client is gone"
    );
    assert_eq!(claim_ids(&store, 8).await, [durable]);
}

pub async fn prune_deletes_old_finished_jobs_and_keeps_unfinished_ones(database: &impl Database) {
    let store = database.open("web-1").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(admit(&store, new_job("p", None, PARALLEL)).await);
    }
    claim_ids(&store, 2).await;
    let mut writer = store.log_writer(&ids[0]);
    writer.append(b"old output").unwrap();
    drop(writer);
    finish(&store, &ids[0], Status::Succeeded).await;
    // Keep one job: the newest, which is queued; the finished one goes, the running one stays.
    let pruned = store.prune(Duration::from_secs(3600), 1).await.unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(store.get(&ids[0]).await.unwrap(), None);
    assert!(store.read_log(&ids[0], 0).await.unwrap().is_empty());
    assert_eq!(status(&store, &ids[1]).await, Status::Running);
    assert_eq!(status(&store, &ids[2]).await, Status::Queued);
}

pub async fn instances_include_this_one(database: &impl Database) {
    let store = database.open("web-1").await;
    admit(&store, new_job("i", None, PARALLEL)).await;
    claim_ids(&store, 1).await;
    let instances = store.instances().await.unwrap();
    let me = instances
        .iter()
        .find(|instance| instance.name == "web-1")
        .expect("this instance is listed");
    assert_eq!(me.running, 1);
    assert_eq!(me.version, env!("CARGO_PKG_VERSION"));
}

/// A job of `attempts` runs.
fn retrying_job(hook: &str, concurrency: Concurrency, attempts: u32) -> NewJob {
    let mut new = new_job(hook, None, concurrency);
    new.job.attempts = attempts;
    new
}

/// Puts a job that runs here back in line for its next attempt, due at `due_ms`.
async fn retry(store: &Store, id: &JobId, due_ms: i64) -> Retried {
    let mut job = store.get(id).await.unwrap().expect("the job exists");
    job.retry(due_ms).unwrap();
    let retried = store.retry(&job, &command(true)).await.unwrap();
    if let Retried::Queued { committed } = retried {
        committed.await.unwrap();
        return Retried::Queued {
            committed: hookrunner::store::Committed::done(),
        };
    }
    retried
}

async fn read_all_log(store: &Store, id: &JobId) -> Vec<u8> {
    let mut read = Vec::new();
    loop {
        let piece = store.read_log(id, read.len() as u64).await.unwrap();
        if piece.is_empty() {
            return read;
        }
        read.extend_from_slice(&piece);
    }
}

pub async fn a_retry_waits_for_its_time_and_its_log_follows_the_first_attempt(
    database: &impl Database,
) {
    let store = database.open("web-1").await;
    let id = admit(&store, retrying_job("r", PARALLEL, 3)).await;
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&id));
    let mut log = store.log_writer(&id);
    log.append(b"first\n").unwrap();
    drop(log);
    let due = now_ms() + 400;
    assert!(matches!(
        retry(&store, &id, due).await,
        Retried::Queued { .. }
    ));
    let waiting = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (waiting.status(), waiting.attempt, waiting.next_attempt_ms),
        (Status::Queued, 2, Some(due))
    );
    assert!(
        claim_ids(&store, 8).await.is_empty(),
        "not before it is due"
    );
    assert_eq!(store.work_waiting(8).await.unwrap().next_due_ms, Some(due));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let claimed = claim_ids(&store, 8).await;
        if !claimed.is_empty() {
            assert!(now_ms() >= due, "claimed {} ms early", due - now_ms());
            assert_eq!(claimed, std::slice::from_ref(&id));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never claimed again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running = store.get(&id).await.unwrap().unwrap();
    assert_eq!((running.attempt, running.next_attempt_ms), (2, None));
    let mut log = store.log_writer(&id);
    log.append(b"second\n").unwrap();
    drop(log);
    finish(&store, &id, Status::Succeeded).await;
    assert_eq!(read_all_log(&store, &id).await, b"first\nsecond\n");
}

pub async fn a_retry_enters_its_lane_like_a_new_trigger_and_is_fenced(database: &impl Database) {
    let store = database.open("web-1").await;
    // `latest`: a newer job already waiting wins over the retry.
    let latest = Concurrency::Latest;
    let old = admit(&store, retrying_job("l", latest, 2)).await;
    claim_ids(&store, 8).await;
    let newer = admit(&store, new_job("l", None, latest)).await;
    match retry(&store, &old, now_ms()).await {
        Retried::Superseded(job) => assert_eq!(job.status(), Status::Superseded),
        other => panic!("{other:?}"),
    }
    store.flush().await.unwrap();
    assert_eq!(status(&store, &old).await, Status::Superseded);
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&newer));
    finish(&store, &newer, Status::Succeeded).await;

    // `queue`: behind the jobs already waiting.
    let queue = Concurrency::Queue { queue: 1 };
    let first = admit(&store, retrying_job("q", queue, 2)).await;
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&first));
    let second = admit(&store, new_job("q", None, queue)).await;
    assert!(matches!(
        retry(&store, &first, now_ms()).await,
        Retried::Queued { .. }
    ));
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&second));
    finish(&store, &second, Status::Succeeded).await;
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&first));

    // Only a job running here is put back in line.
    let idle = admit(&store, retrying_job("p", PARALLEL, 2)).await;
    let mut job = store.get(&idle).await.unwrap().unwrap();
    job.start("web-1", now_ms()).unwrap();
    job.retry(now_ms()).unwrap();
    assert!(matches!(
        store.retry(&job, &command(true)).await.unwrap(),
        Retried::NotHeld
    ));
    let unchanged = store.get(&idle).await.unwrap().unwrap();
    assert_eq!((unchanged.attempt, unchanged.next_attempt_ms), (1, None));
}

pub async fn cancel_ends_a_waiting_retry(database: &impl Database) {
    let store = database.open("web-1").await;
    let id = admit(&store, retrying_job("c", PARALLEL, 2)).await;
    claim_ids(&store, 8).await;
    retry(&store, &id, now_ms() + 60_000).await;
    match store.cancel(&id).await.unwrap() {
        CancelResult::Dequeued(job) => assert_eq!(job.status(), Status::Cancelled),
        other => panic!("{other:?}"),
    }
    store.flush().await.unwrap();
    let cancelled = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            cancelled.status(),
            cancelled.attempt,
            cancelled.next_attempt_ms
        ),
        (Status::Cancelled, 2, None)
    );
}

pub async fn a_restart_keeps_the_schedule_of_a_waiting_retry(database: &impl Database) {
    let store = database.open("web-1").await;
    let id = admit(&store, retrying_job("k", PARALLEL, 2)).await;
    claim_ids(&store, 8).await;
    let due = now_ms() + 60_000;
    retry(&store, &id, due).await;
    store.flush().await.unwrap();
    store.close().await;
    drop(store);

    let store = database.open("web-1").await;
    store.recover(&|_| PARALLEL).await.unwrap();
    let waiting = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (waiting.status(), waiting.attempt, waiting.next_attempt_ms),
        (Status::Queued, 2, Some(due))
    );
    assert!(claim_ids(&store, 8).await.is_empty(), "not hurried");
    assert_eq!(store.work_waiting(8).await.unwrap().next_due_ms, Some(due));
}
