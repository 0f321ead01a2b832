//! Two engines, each on its own instance of one database, running real commands: the store's
//! claims, notifications and output rows as the engine uses them.

use std::path::Path;
use std::time::Duration;

use hookrunner::config::{Concurrency, RunOn};
use hookrunner::engine::{Engine, Submission, Submitted};
use hookrunner::job::{JobId, Status};
use hookrunner::runner::Program;

use crate::helpers::*;

/// Submits an `async` job of `hook` running `shell` in `dir`, with `HOOK_N=n`.
async fn submit(
    engine: &Engine,
    hook: &str,
    concurrency: Concurrency,
    shell: &str,
    dir: &Path,
    n: usize,
) -> JobId {
    submit_with_timeout(engine, hook, concurrency, shell, dir, n, 10_000).await
}

async fn submit_with_timeout(
    engine: &Engine,
    hook: &str,
    concurrency: Concurrency,
    shell: &str,
    dir: &Path,
    n: usize,
    timeout_ms: u64,
) -> JobId {
    let mut command = command(true);
    command.timeout_ms = timeout_ms;
    command.program = Program::Shell(shell.into());
    command.workdir = dir.to_path_buf();
    command.env = vec![("HOOK_N".into(), n.to_string())];
    let job_id = JobId::generate();
    let submitted = engine
        .submit(Submission {
            hook: hook.into(),
            concurrency,
            job_id: job_id.clone(),
            request_id: format!("request-{n}"),
            command,
            dedupe_key: None,
            follow: false,
            run_on: RunOn::Any,
            notify: false,
            approval: None,
        })
        .await
        .unwrap();
    match submitted {
        Submitted::Accepted(handle) => handle.committed.unwrap().await.unwrap(),
        _ => panic!("accepted, once"),
    }
    job_id
}

async fn final_status(engine: &Engine, id: &JobId) -> Status {
    eventually(Duration::from_secs(60), "the job ends", || async {
        let status = engine.get(id).await.unwrap()?.status();
        status.is_final().then_some(status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_hook_runs_each_job_once_and_one_at_a_time_across_two_engines() {
    let url = fresh_database().await;
    let (a, b) = (engine(&url, "a").await, engine(&url, "b").await);
    let dir = tempfile::tempdir().unwrap();
    let shell = r#"echo "start $HOOK_N" >> trace; sleep 0.1; echo "end $HOOK_N" >> trace; echo "ran $HOOK_N""#;
    let queue = Concurrency::Queue { queue: 100 };
    let mut ids = Vec::new();
    for n in 0..6 {
        let engine = if n % 2 == 0 { &a } else { &b };
        ids.push(submit(engine, "q", queue, shell, dir.path(), n).await);
    }
    for id in &ids {
        assert_eq!(final_status(&a, id).await, Status::Succeeded);
    }
    let trace = std::fs::read_to_string(dir.path().join("trace")).unwrap();
    let expected: String = (0..6).map(|n| format!("start {n}\nend {n}\n")).collect();
    assert_eq!(trace, expected, "in order, one at a time, each once");
    for (n, id) in ids.iter().enumerate() {
        let log = b.store().read_log(id, 0).await.unwrap();
        assert_eq!(log, format!("ran {n}\n").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_on_one_engine_cancels_the_job_running_on_the_other() {
    let url = fresh_database().await;
    let (a, b) = (engine(&url, "a").await, engine(&url, "b").await);
    let dir = tempfile::tempdir().unwrap();
    let first = submit(&a, "r", Concurrency::Replace, "sleep 30", dir.path(), 1).await;
    let runner = eventually(Duration::from_secs(30), "the first job runs", || async {
        let job = a.get(&first).await.unwrap()?;
        job.run().map(|run| run.instance.clone())
    })
    .await;
    // Submitted on the engine that does not run it.
    let other = if runner == "a" { &b } else { &a };
    let second = submit(other, "r", Concurrency::Replace, "true", dir.path(), 2).await;
    assert_eq!(final_status(other, &first).await, Status::Cancelled);
    assert_eq!(final_status(other, &second).await, Status::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_taken_for_dead_kills_the_command_it_still_runs() {
    let url = fresh_database().await;
    let a = engine(&url, "a").await;
    let dir = tempfile::tempdir().unwrap();
    // Its timeout is far beyond the test's deadline: only the engine's stopping it ends it.
    let id = submit_with_timeout(
        &a,
        "deploy",
        Concurrency::Parallel { limit: None },
        "echo $$ > pid; exec sleep 600",
        dir.path(),
        1,
        600_000,
    )
    .await;
    let pid = eventually(Duration::from_secs(30), "the command runs", || async {
        let text = std::fs::read_to_string(dir.path().join("pid")).ok()?;
        text.trim().parse::<i32>().ok()
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(pid);
    // What another instance does once `a`'s lease ran out (its heartbeats were lost).
    sql(&url)
        .await
        .batch_execute(&format!(
            "BEGIN; UPDATE jobs SET status = 'interrupted', finished_ms = 1 WHERE id = '{id}'; \
             DELETE FROM instances WHERE name = 'a'; COMMIT"
        ))
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "the command is killed", || async {
        nix::sys::signal::kill(pid, None).is_err().then_some(())
    })
    .await;
    a.store().flush().await.unwrap();
    assert_eq!(final_status(&a, &id).await, Status::Interrupted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_started_at_their_admission_and_claimed_jobs_together_keep_max_jobs() {
    let url = fresh_database().await;
    let a = engine(&url, "a").await;
    let dir = tempfile::tempdir().unwrap();
    let shell = r#"echo "+" >> trace; sleep 0.3; echo "-" >> trace"#;
    let parallel = Concurrency::Parallel { limit: None };
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(submit(&a, "p", parallel, shell, dir.path(), n).await);
    }
    for id in &ids {
        assert_eq!(final_status(&a, id).await, Status::Succeeded);
    }
    let trace = std::fs::read_to_string(dir.path().join("trace")).unwrap();
    let (mut running, mut most) = (0, 0);
    for line in trace.lines() {
        running += if line == "+" { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(trace.lines().count(), 24, "each job ran once");
    assert!(
        most <= 4,
        "{most} jobs ran at once on an engine whose max_jobs is 4"
    );
    assert!(most >= 2, "the jobs ran side by side ({most} at most)");
}
