//! Retries across instances: a job's next attempt, scheduled by the instance that ran the first,
//! is claimed by another when it is due, and its log keeps both attempts.

use std::time::Duration;

use hookrunner::command::RetryPlan;
use hookrunner::config::{Concurrency, RunOn};
use hookrunner::engine::{Submission, Submitted};
use hookrunner::job::{now_ms, JobId, Status};
use hookrunner::runner::Program;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_scheduled_on_one_instance_runs_on_another_when_due() {
    let url = fresh_database().await;
    let (a, b) = (engine(&url, "a").await, engine(&url, "b").await);
    let dir = tempfile::tempdir().unwrap();
    let mut command = command(true);
    // Fails at its first run, succeeds at its second.
    command.program =
        Program::Shell(r#"echo "attempt $HOOK_ATTEMPT"; [ "$HOOK_ATTEMPT" -ge 2 ]"#.into());
    command.workdir = dir.path().to_path_buf();
    command.retry = Some(RetryPlan {
        attempts: 2,
        backoff_ms: 2_000,
        max_delay_ms: 2_000,
        on: vec!["failed".into()],
    });
    let id = JobId::generate();
    let submitted = a
        .submit(Submission {
            hook: "flaky".into(),
            concurrency: Concurrency::Parallel { limit: Some(1) },
            job_id: id.clone(),
            request_id: "request-1".into(),
            command,
            dedupe_key: None,
            follow: false,
            run_on: RunOn::Any,
            notify: false,
            approval: None,
        })
        .await
        .unwrap();
    let Submitted::Accepted(handle) = submitted else {
        panic!("accepted, once")
    };
    handle.committed.unwrap().await.unwrap();

    let waiting = eventually(Duration::from_secs(30), "the retry waits", || async {
        let job = b.get(&id).await.unwrap()?;
        (job.status() == Status::Queued && job.attempt == 2).then_some(job)
    })
    .await;
    assert_eq!(waiting.run(), None);
    let due = waiting
        .next_attempt_ms
        .expect("a time for the next attempt");
    // `a` takes no more work: only `b` can run the next attempt.
    a.shutdown(Duration::from_secs(5)).await;

    let done = eventually(Duration::from_secs(30), "the job ends", || async {
        let job = b.get(&id).await.unwrap()?;
        job.status().is_final().then_some(job)
    })
    .await;
    assert_eq!(done.status(), Status::Succeeded);
    assert_eq!(done.attempt, 2);
    let run = done.run().expect("it ran");
    assert_eq!(run.instance, "b");
    assert!(
        run.started_ms >= due,
        "started {} ms early",
        due - run.started_ms
    );
    assert!(now_ms() >= due);
    let mut log = Vec::new();
    loop {
        let piece = b.store().read_log(&id, log.len() as u64).await.unwrap();
        if piece.is_empty() {
            break;
        }
        log.extend_from_slice(&piece);
    }
    assert_eq!(
        String::from_utf8_lossy(&log),
        "--- attempt 1 ---\nattempt 1\n--- attempt 2 ---\nattempt 2\n"
    );
}

#[tokio::test]
async fn a_job_an_instance_left_running_is_retried_only_when_its_hook_retries_interrupted() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    let parallel = Concurrency::Parallel { limit: None };
    let with_retry = |on: &[&str]| {
        let mut new = new_job("deploy", parallel, None);
        new.job.attempts = 2;
        new.command.retry = Some(RetryPlan {
            attempts: 2,
            backoff_ms: 60_000,
            max_delay_ms: 60_000,
            on: on.iter().map(|status| status.to_string()).collect(),
        });
        new
    };
    let retried = admit(&a, with_retry(&["failed", "interrupted"])).await;
    let ended = admit(&a, with_retry(&["failed"])).await;
    assert_eq!(claim(&a, 8).await.len(), 2);
    a.close().await;
    let before = now_ms();

    // Taking its name back, the instance ends what its previous run left, as a reaper would.
    let again = instance(&url, "a").await;
    let job = again.get(&retried).await.unwrap().unwrap();
    assert_eq!((job.status(), job.attempt), (Status::Queued, 2));
    assert!(
        job.next_attempt_ms.unwrap() >= before + 30_000,
        "after its backoff"
    );
    assert_eq!(status(&again, &ended).await, Status::Interrupted);
    assert!(claim(&again, 8).await.is_empty(), "not before it is due");
}
