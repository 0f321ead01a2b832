//! What the PostgreSQL tests share: a fresh database per test on the server `run.sh` started,
//! stores standing for instances, and jobs to admit.

use std::future::Future;
use std::time::Duration;

use hookrunner::command::JobCommand;
use hookrunner::config::Concurrency;
use hookrunner::job::{now_ms, Job, JobId, Outcome, Status};
use hookrunner::runner::Program;
use hookrunner::store::{Admission, Claimed, Durability, NewJob, Placement, Store};
use tokio_postgres::NoTls;

/// The server's URL; a PostgreSQL test never passes without one.
pub fn server_url() -> String {
    std::env::var("HOOKRUNNER_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "HOOKRUNNER_TEST_POSTGRES is not set: run these tests with tests/postgres/run.sh, \
             which starts a PostgreSQL server for them"
        )
    })
}

/// A new, empty database on the test server, and its URL: tests never see each other's jobs.
pub async fn fresh_database() -> String {
    let url = server_url();
    fresh_database_on(&url).await
}

pub async fn fresh_database_on(url: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("the test server takes connections");
    tokio::spawn(connection);
    let name = format!("test_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').expect("the URL names a database");
    format!("{base}/{name}")
}

/// A client on `url`, for tests that look at or change rows directly.
pub async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

pub const HEARTBEAT: Duration = Duration::from_millis(100);
pub const LONG: Duration = Duration::from_secs(3600);

/// An instance named `name` on `url`: heartbeats every 100 ms, never takes another for dead.
pub async fn instance(url: &str, name: &str) -> Store {
    Store::postgres(url, name, HEARTBEAT, LONG)
        .await
        .unwrap_or_else(|error| panic!("cannot open `{name}`: {error:?}"))
}

/// An engine for instance `name` (4 jobs at a time), its run files in this process's temp dir.
pub async fn engine(url: &str, name: &str) -> hookrunner::engine::Engine {
    let files = std::env::temp_dir().join(format!("hookrunner-pg-files-{}", std::process::id()));
    hookrunner::engine::Engine::new(
        instance(url, name).await,
        std::sync::Arc::new(hookrunner::metrics::Metrics::new()),
        4,
        1000,
        files,
    )
}

pub fn command(durable: bool) -> JobCommand {
    JobCommand {
        program: Program::Argv(vec!["true".into()]),
        workdir: "/".into(),
        env: vec![("HOOK_REF".into(), "main".into())],
        passthrough: Vec::new(),
        stdin: None,
        timeout_ms: 10_000,
        kill_after_ms: 1_000,
        max_output: 1 << 20,
        keep_background: false,
        run_after_restart: durable,
        retry: None,
        files: Vec::new(),
    }
}

/// An `async` job of `hook` that any instance may run.
pub fn new_job(hook: &str, concurrency: Concurrency, key: Option<&str>) -> NewJob {
    NewJob {
        job: Job::queued(
            JobId::generate(),
            hook.into(),
            "request-1".into(),
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

/// Admits `new`, which must be accepted; returns its id.
pub async fn admit(store: &Store, new: NewJob) -> JobId {
    let id = new.job.id.clone();
    match store.admit(new, 1000).await.unwrap() {
        Admission::Accepted { committed, .. } => committed.await.unwrap(),
        other => panic!("not accepted: {other:?}"),
    }
    id
}

pub async fn claim(store: &Store, free: usize) -> Vec<Claimed> {
    store.claim(free).await.unwrap()
}

pub fn ids(claimed: &[Claimed]) -> Vec<JobId> {
    claimed
        .iter()
        .map(|claimed| claimed.job.id.clone())
        .collect()
}

/// Records `job` ended with `status` (after running, for `succeeded` and `failed`).
pub async fn finish(store: &Store, mut job: Job, status: Status) -> Job {
    let outcome = Outcome {
        exit_code: (status == Status::Succeeded).then_some(0),
        duration_ms: Some(1),
        ..Outcome::unrun(status, None)
    };
    job.finish(outcome, now_ms()).unwrap();
    store.finish(&job, Durability::Os).await.unwrap();
    job
}

/// Polls `check` until it gives `Some`, for at most `within`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn status(store: &Store, id: &JobId) -> Status {
    store
        .get(id)
        .await
        .unwrap()
        .expect("the job is kept")
        .status()
}
