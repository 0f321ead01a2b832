//! The engine's parts against a real SQLite store in a temporary directory and real commands.

use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use super::*;
use crate::command::JobCommand;
use crate::config::{Concurrency, RunOn};
use crate::runner::Program;

fn command(shell: &str, durable: bool) -> JobCommand {
    JobCommand {
        program: Program::Shell(shell.to_string()),
        workdir: std::env::temp_dir(),
        env: Vec::new(),
        passthrough: vec!["PATH".into()],
        stdin: None,
        files: Vec::new(),
        timeout_ms: 30_000,
        kill_after_ms: 500,
        max_output: 1 << 20,
        keep_background: false,
        run_after_restart: durable,
        retry: None,
    }
}

fn submission(hook: &str, shell: &str, concurrency: Concurrency) -> Submission {
    Submission {
        hook: hook.to_string(),
        concurrency,
        job_id: JobId::generate(),
        request_id: "request".into(),
        command: command(shell, false),
        dedupe_key: None,
        follow: false,
        run_on: RunOn::Any,
        notify: false,
        approval: None,
    }
}

fn engine(dir: &TempDir, max_jobs: usize, max_pending: usize) -> Engine {
    let store = Store::sqlite(dir.path(), "test").unwrap();
    let files_dir = dir.path().join("files");
    Engine::new(
        store,
        Arc::new(Metrics::new()),
        max_jobs,
        max_pending,
        files_dir,
    )
}

async fn accepted(engine: &Engine, submission: Submission) -> JobHandle {
    match engine.submit(submission).await.unwrap() {
        Submitted::Accepted(handle) => *handle,
        _ => panic!("not accepted"),
    }
}

async fn ended(handle: &mut JobHandle) -> Job {
    let watch = handle.watch.as_mut().expect("a wait job is watched");
    let job = tokio::time::timeout(
        Duration::from_secs(20),
        watch.wait_for(|job| job.status().is_final()),
    )
    .await
    .expect("the job ends")
    .unwrap()
    .clone();
    job
}

#[tokio::test]
async fn admission_refuses_without_publishing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, 1, 100);
    let queue = Concurrency::Queue { queue: 0 };
    let mut first = accepted(&engine, submission("q", "sleep 0.3", queue)).await;
    let refused = submission("q", "true", queue);
    let refused_id = refused.job_id.clone();
    assert!(matches!(
        engine.submit(refused).await,
        Err(SubmitError::HookQueueFull { .. })
    ));
    assert!(engine.watch(&refused_id).is_none(), "nothing published");
    assert_eq!(
        engine.get(&refused_id).await.unwrap(),
        None,
        "nothing stored"
    );

    let mut keyed = submission("k", "true", Concurrency::Parallel { limit: None });
    keyed.dedupe_key = Some("delivery-1".into());
    let mut holder = accepted(&engine, keyed).await;
    let mut again = submission("k", "true", Concurrency::Parallel { limit: None });
    again.dedupe_key = Some("delivery-1".into());
    let again_id = again.job_id.clone();
    match engine.submit(again).await.unwrap() {
        Submitted::Duplicate(first) => assert_eq!(first, holder.job.id),
        _ => panic!("not a duplicate"),
    }
    assert!(engine.watch(&again_id).is_none());
    assert_eq!(ended(&mut first).await.status(), Status::Succeeded);
    assert_eq!(ended(&mut holder).await.status(), Status::Succeeded);
}

#[tokio::test]
async fn scheduling_never_runs_more_than_max_jobs_and_runs_every_job() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, 2, 100);
    let mut handles = Vec::new();
    for _ in 0..6 {
        let parallel = Concurrency::Parallel { limit: None };
        handles.push(accepted(&engine, submission("p", "sleep 0.1", parallel)).await);
    }
    let mut most = 0;
    while handles
        .iter()
        .any(|handle| !handle.watch.as_ref().unwrap().borrow().status().is_final())
    {
        most = most.max(engine.load().0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(most <= 2, "{most} jobs ran at once");
    for handle in &mut handles {
        assert_eq!(ended(handle).await.status(), Status::Succeeded);
    }
    assert_eq!(engine.load(), (0, 0));
}

#[tokio::test]
async fn running_publishes_the_end_records_it_and_frees_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, 1, 100);
    let queue = Concurrency::Queue { queue: 5 };
    let mut first = accepted(&engine, submission("q", "echo out; exit 3", queue)).await;
    let mut second = accepted(&engine, submission("q", "true", queue)).await;
    let job = ended(&mut first).await;
    let outcome = job.outcome().unwrap();
    assert_eq!(
        (job.status(), outcome.exit_code, outcome.stdout.as_deref()),
        (Status::Failed, Some(3), Some("out\n"))
    );
    assert_eq!(job.run().unwrap().instance, "test");
    assert_eq!(ended(&mut second).await.status(), Status::Succeeded);
    engine.store().flush().await.unwrap();
    let stored = engine.store().get(&job.id).await.unwrap().unwrap();
    assert_eq!(stored.status(), Status::Failed);
    assert_eq!(
        engine.store().read_log(&job.id, 0).await.unwrap(),
        "out\n".as_bytes()
    );
}

#[tokio::test]
async fn recovery_runs_the_durable_jobs_a_crash_left_queued() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let id = {
        // No room to run: the job stays queued when this engine goes away without a shutdown.
        let crashed = engine(&dir, 0, 100);
        let mut durable = submission(
            "d",
            &format!("echo ran >> {}", marker.display()),
            Concurrency::Parallel { limit: None },
        );
        durable.command.run_after_restart = true;
        let handle = accepted(&crashed, durable).await;
        handle.committed.unwrap().await.unwrap();
        handle.job.id
    };
    let engine = engine(&dir, 2, 100);
    assert_eq!(
        engine
            .recover(|_| Concurrency::Queue { queue: 1 })
            .await
            .unwrap(),
        1
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = engine.get(&id).await.unwrap().unwrap();
        if job.status() == Status::Succeeded {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
}

#[tokio::test]
async fn shutdown_interrupts_what_outlives_the_grace_and_refuses_new_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, 2, 100);
    let parallel = Concurrency::Parallel { limit: None };
    let mut slow = accepted(&engine, submission("s", "sleep 30", parallel)).await;
    let watch = slow.watch.as_mut().unwrap();
    watch
        .wait_for(|job| job.status() == Status::Running)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), engine.shutdown(Duration::ZERO))
        .await
        .expect("shutdown ends within the command's kill_after");
    assert_eq!(ended(&mut slow).await.status(), Status::Interrupted);
    assert!(matches!(
        engine.submit(submission("s", "true", parallel)).await,
        Err(SubmitError::ShuttingDown)
    ));
}

#[tokio::test]
async fn cancel_dequeues_a_waiting_job_and_signals_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir, 4, 100);
    let queue = Concurrency::Queue { queue: 5 };
    let mut running = accepted(&engine, submission("c", "sleep 30", queue)).await;
    let mut waiting = accepted(&engine, submission("c", "true", queue)).await;
    running
        .watch
        .as_mut()
        .unwrap()
        .wait_for(|job| job.status() == Status::Running)
        .await
        .unwrap();
    assert_eq!(
        engine.cancel(&waiting.job.id).await.unwrap(),
        Cancelled::Dequeued
    );
    assert_eq!(ended(&mut waiting).await.status(), Status::Cancelled);
    assert_eq!(
        engine.cancel(&running.job.id).await.unwrap(),
        Cancelled::Signalled
    );
    assert_eq!(ended(&mut running).await.status(), Status::Cancelled);
    assert_eq!(
        engine.cancel(&running.job.id).await.unwrap(),
        Cancelled::AlreadyFinished(Status::Cancelled)
    );
    assert_eq!(
        engine.cancel(&JobId::generate()).await.unwrap(),
        Cancelled::NotFound
    );
}
