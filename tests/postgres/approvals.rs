//! Approvals across instances: every instance may expire, approve or reject a job awaiting
//! approval, and each job is decided once, by one of them; a dead instance's reaping leaves the
//! jobs awaiting approval as they are.

use std::collections::HashSet;
use std::time::Duration;

use hookrunner::config::Concurrency;
use hookrunner::job::{now_ms, JobId, Status};
use hookrunner::store::{Approval, Decided, NewJob, Placement, Store};

use crate::helpers::*;

const PARALLEL: Concurrency = Concurrency::Parallel { limit: None };

fn gated(until_ms: i64) -> NewJob {
    let mut new = new_job("g", PARALLEL, None);
    new.approval_until_ms = Some(until_ms);
    new
}

fn expired_ids(jobs: &[hookrunner::job::Job]) -> HashSet<JobId> {
    jobs.iter().map(|job| job.id.clone()).collect()
}

#[tokio::test]
async fn two_instances_expiring_at_once_end_each_job_once() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    let b = instance(&url, "b").await;
    for round in 0..5 {
        let now = now_ms();
        let mut due = HashSet::new();
        for _ in 0..20 {
            due.insert(admit(&a, gated(now - 1)).await);
        }
        let later = admit(&b, gated(now + 60_000)).await;
        let (from_a, from_b) = tokio::join!(a.expire_approvals(now), b.expire_approvals(now));
        let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
        let (ids_a, ids_b) = (expired_ids(&from_a.expired), expired_ids(&from_b.expired));
        assert!(
            ids_a.is_disjoint(&ids_b),
            "round {round}: reported twice: {:?}",
            ids_a.intersection(&ids_b).collect::<Vec<_>>()
        );
        assert_eq!(
            ids_a.len() + ids_b.len(),
            20,
            "round {round}: each job once"
        );
        assert_eq!(&ids_a | &ids_b, due, "round {round}");
        assert_eq!(
            (from_a.next_ms, from_b.next_ms),
            (Some(now + 60_000), Some(now + 60_000))
        );
        for id in &due {
            assert_eq!(status(&a, id).await, Status::Expired);
        }
        b.cancel(&later).await.unwrap();
    }
}

#[tokio::test]
async fn two_instances_deciding_one_job_at_once_decide_it_once() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    let b = instance(&url, "b").await;
    let mut events = b.events().expect("b's events");
    for _ in 0..10 {
        let id = admit(&a, gated(now_ms() + 60_000)).await;
        let (approval, decision) = tokio::join!(a.approve(&id, PARALLEL), b.reject(&id));
        let approved = matches!(approval.unwrap(), Approval::Approved { .. });
        let rejected = matches!(decision.unwrap(), Decided::Ended(_));
        assert!(
            approved != rejected,
            "approved {approved}, rejected {rejected}"
        );
        let expected = if approved {
            Status::Queued
        } else {
            Status::Rejected
        };
        assert_eq!(status(&b, &id).await, expected);
        if approved {
            a.cancel(&id).await.unwrap();
        }
    }
    // A rejection elsewhere is told to every instance, like any end.
    let id = admit(&b, gated(now_ms() + 60_000)).await;
    assert!(matches!(a.reject(&id).await.unwrap(), Decided::Ended(_)));
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if event == hookrunner::store::StoreEvent::Ended(id.clone()) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(told, Ok(true));
}

#[tokio::test]
async fn a_dead_instances_reaping_leaves_jobs_awaiting_approval_alone() {
    let url = fresh_database().await;
    // `b` says it is alive once, at start, and never again.
    let b = Store::postgres(&url, "b", LONG, LONG).await.unwrap();
    let running = admit(&b, new_job("r", PARALLEL, None)).await;
    assert_eq!(ids(&claim(&b, 8).await), std::slice::from_ref(&running));
    let anywhere = admit(&b, gated(now_ms() + 60_000)).await;
    let mut placed = gated(now_ms() + 60_000);
    placed.placement = Placement::On {
        instance: "b".into(),
        per_instance: false,
    };
    let placed = admit(&b, placed).await;
    let a = Store::postgres(&url, "a", HEARTBEAT, Duration::from_secs(1))
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "b's job interrupted", || async {
        (status(&a, &running).await == Status::Interrupted).then_some(())
    })
    .await;
    for id in [&anywhere, &placed] {
        assert_eq!(status(&a, id).await, Status::AwaitingApproval);
    }
    assert!(matches!(
        a.approve(&anywhere, PARALLEL).await.unwrap(),
        Approval::Approved { .. }
    ));
    assert_eq!(ids(&claim(&a, 8).await), [anywhere]);
}
