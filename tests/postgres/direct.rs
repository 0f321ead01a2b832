//! Admission straight to running: a job whose instance holds a slot for it, in an unlimited
//! `parallel` hook, is recorded running there by its admission, with no claim.

use hookrunner::config::Concurrency;
use hookrunner::job::Status;
use hookrunner::store::{Admission, Claimed, NewJob, Store};

use crate::helpers::*;

const ANY: Concurrency = Concurrency::Parallel { limit: None };

/// `new` admitted with a slot held for it: the job it started, if it did.
async fn admit_here(store: &Store, mut new: NewJob) -> Option<Claimed> {
    new.start_here = true;
    match store.admit(new, 1000).await.unwrap() {
        Admission::Accepted {
            committed, started, ..
        } => {
            committed.await.unwrap();
            started.map(|claimed| *claimed)
        }
        other => panic!("not accepted: {other:?}"),
    }
}

#[tokio::test]
async fn a_parallel_job_with_a_slot_held_is_running_here_once_admitted() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    // The hook's first job makes its lane known; it is queued for a claim.
    let first = admit_here(&a, new_job("deploy", ANY, None)).await;
    assert!(
        first.is_none(),
        "a new lane is decided by the full admission"
    );
    let new = new_job("deploy", ANY, Some("delivery-2"));
    let id = new.job.id.clone();
    let started = admit_here(&a, new).await.expect("started at its admission");
    assert_eq!(started.job.id, id);
    assert_eq!(started.job.status(), Status::Running);
    assert_eq!(started.job.run().unwrap().instance, "a");
    assert!(
        started.command.run_after_restart,
        "the command it was admitted with"
    );
    assert!(
        started.started.is_some(),
        "a durable job's start is committed"
    );
    // Recorded as the claim would have recorded it, and visible to every instance.
    let b = instance(&url, "b").await;
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!(job.status(), Status::Running);
    assert_eq!(job.run().unwrap().instance, "a");
    assert!(
        !ids(&claim(&b, 8).await).contains(&id),
        "nobody claims it again"
    );
    // Its key is held: a redelivery reaching another instance is a duplicate.
    let mut again = new_job("deploy", ANY, Some("delivery-2"));
    again.start_here = true;
    match b.admit(again, 1000).await.unwrap() {
        Admission::Duplicate(holder) => assert_eq!(holder, id),
        other => panic!("not a duplicate: {other:?}"),
    }
    finish(&a, started.job, Status::Succeeded).await;
    a.flush().await.unwrap();
    assert_eq!(status(&b, &id).await, Status::Succeeded);
}

#[tokio::test]
async fn only_an_unlimited_parallel_job_starts_at_its_admission() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    let modes = [
        Concurrency::Queue { queue: 10 },
        Concurrency::Latest,
        Concurrency::Replace,
        Concurrency::Parallel { limit: Some(5) },
    ];
    for (n, mode) in modes.into_iter().enumerate() {
        let hook = format!("hook-{n}");
        for _ in 0..2 {
            let new = new_job(&hook, mode, None);
            let id = new.job.id.clone();
            assert!(admit_here(&a, new).await.is_none(), "{mode:?} started");
            assert_eq!(status(&a, &id).await, Status::Queued, "{mode:?}");
        }
    }
    // Without a slot held, an unlimited job is queued too.
    admit(&a, new_job("open", ANY, None)).await;
    let new = new_job("open", ANY, None);
    let id = new.job.id.clone();
    admit(&a, new).await;
    assert_eq!(status(&a, &id).await, Status::Queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_started_together_with_one_key_run_one_job() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    admit_here(&a, new_job("deploy", ANY, None)).await;
    // Admitted at the same moment, they are written together, in one statement.
    let admissions = (0..8).map(|_| {
        let a = a.clone();
        tokio::spawn(async move {
            let mut new = new_job("deploy", ANY, Some("delivery-1"));
            new.start_here = true;
            a.admit(new, 1000).await.unwrap()
        })
    });
    let mut started = Vec::new();
    let mut duplicates = Vec::new();
    for admission in futures_util::future::join_all(admissions).await {
        match admission.unwrap() {
            Admission::Accepted {
                started: Some(claimed),
                ..
            } => started.push(claimed.job.id),
            Admission::Duplicate(holder) => duplicates.push(holder),
            other => panic!("neither started nor a duplicate: {other:?}"),
        }
    }
    assert_eq!(started.len(), 1, "one job runs: {started:?}");
    assert_eq!(duplicates, vec![started[0].clone(); 7]);
}
