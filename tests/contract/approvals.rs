//! Approvals' promises (SPEC §15): a job admitted awaiting approval waits outside its lane, runs
//! only once approved (under its lane's rules at that moment), and otherwise ends `rejected`,
//! `expired` or `cancelled`; its wait and its end are announced apart.

use std::time::Duration;

use hookrunner::config::Concurrency;
use hookrunner::job::{now_ms, Job, JobId, JobState, Status};
use hookrunner::store::{
    Admission, Approval, CancelResult, Decided, ListQuery, NewJob, NewNotification, Store,
};

use super::{admit, announce, claim_ids, finish, new_job, status, Database, PARALLEL};

/// How long the waits of these tests last unless a test says otherwise.
const DAY_MS: i64 = 86_400_000;

/// A job of `hook` admitted awaiting approval until `until_ms`.
fn gated(hook: &str, key: Option<&str>, until_ms: i64) -> NewJob {
    let mut new = new_job(hook, key, PARALLEL);
    new.approval_until_ms = Some(until_ms);
    new
}

fn approved(approval: Approval) -> (Job, Vec<JobId>, Vec<(JobId, String)>) {
    match approval {
        Approval::Approved {
            job,
            superseded,
            cancel,
        } => (job, superseded, cancel),
        other => panic!("not approved: {other:?}"),
    }
}

async fn awaiting_ids(store: &Store) -> Vec<JobId> {
    let query = ListQuery {
        status: Some(Status::AwaitingApproval),
        limit: 100,
        ..ListQuery::default()
    };
    let page = store.list(query).await.unwrap();
    page.jobs.into_iter().map(|job| job.id).collect()
}

pub async fn an_awaiting_job_is_never_claimed_until_approved(database: &impl Database) {
    let store = database.open("web-1").await;
    let until_ms = now_ms() + DAY_MS;
    let mut new = gated("g", Some("k"), until_ms);
    new.start_here = true;
    let id = new.job.id.clone();
    match store.admit(new, 100).await.unwrap() {
        Admission::Accepted {
            committed, started, ..
        } => {
            committed.await.unwrap();
            assert!(started.is_none(), "not started at its admission");
        }
        other => panic!("{other:?}"),
    }
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Awaiting { until_ms });
    assert_eq!(job.status(), Status::AwaitingApproval);
    assert!(claim_ids(&store, 8).await.is_empty());
    assert_eq!(
        store.work_waiting(8).await.unwrap().next_due_ms,
        None,
        "a wait for approval is not a retry's"
    );
    // Its key is taken: a redelivery is a duplicate.
    let again = store.admit(gated("g", Some("k"), until_ms), 100).await;
    assert!(
        matches!(&again, Ok(Admission::Duplicate(first)) if *first == id),
        "{again:?}"
    );
    // It counts among the pending jobs.
    let full = store.admit(new_job("other", None, PARALLEL), 1).await;
    assert!(
        matches!(full, Ok(Admission::ServerFull { pending: 1 })),
        "{full:?}"
    );

    let (job, superseded, cancel) = approved(store.approve(&id, PARALLEL).await.unwrap());
    assert_eq!((job.id.clone(), job.status()), (id.clone(), Status::Queued));
    assert!(superseded.is_empty() && cancel.is_empty());
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&id));
    match store.approve(&id, PARALLEL).await.unwrap() {
        Approval::NotAwaiting(job) => assert_eq!(job.status(), Status::Running),
        other => panic!("approved twice: {other:?}"),
    }
    finish(&store, &id, Status::Succeeded).await;
    let again = store.admit(gated("g", Some("k"), until_ms), 100).await;
    assert!(
        matches!(&again, Ok(Admission::Duplicate(first)) if *first == id),
        "a succeeded job keeps its key: {again:?}"
    );
}

pub async fn an_approval_applies_the_lanes_rules_at_that_moment(database: &impl Database) {
    let store = database.open("web-1").await;
    let until_ms = now_ms() + DAY_MS;

    // `queue: 0` refuses while the lane is busy: the job goes on awaiting approval.
    let queue = Concurrency::Queue { queue: 0 };
    let running = admit(&store, new_job("q", None, queue)).await;
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&running));
    let waiting = admit(&store, gated("q", None, until_ms)).await;
    match store.approve(&waiting, queue).await.unwrap() {
        Approval::QueueFull { waiting: 0 } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(status(&store, &waiting).await, Status::AwaitingApproval);
    finish(&store, &running, Status::Succeeded).await;
    approved(store.approve(&waiting, queue).await.unwrap());
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&waiting));
    finish(&store, &waiting, Status::Succeeded).await;

    // `latest` supersedes the lane's queued job at the approval, not at the admission.
    let latest = Concurrency::Latest;
    let first = admit(&store, new_job("l", None, latest)).await;
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&first));
    let newest = admit(&store, gated("l", None, until_ms)).await;
    let queued = admit(&store, new_job("l", None, latest)).await;
    assert_eq!(status(&store, &queued).await, Status::Queued, "not yet");
    let (_, superseded, cancel) = approved(store.approve(&newest, latest).await.unwrap());
    assert_eq!(superseded, std::slice::from_ref(&queued));
    assert!(cancel.is_empty());
    store.flush().await.unwrap();
    assert_eq!(status(&store, &queued).await, Status::Superseded);
    assert!(claim_ids(&store, 8).await.is_empty(), "`l` is busy");
    finish(&store, &first, Status::Succeeded).await;
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&newest));

    // `replace` asks the lane's running job to stop.
    let replace = Concurrency::Replace;
    let gated_job = admit(&store, gated("l", None, until_ms)).await;
    let (_, _, cancel) = approved(store.approve(&gated_job, replace).await.unwrap());
    assert_eq!(cancel, [(newest.clone(), "web-1".to_string())]);
}

pub async fn a_rejected_job_ends_and_gives_its_key_back(database: &impl Database) {
    let store = database.open("web-1").await;
    let id = admit(&store, gated("r", Some("k"), now_ms() + DAY_MS)).await;
    let before = now_ms();
    let job = match store.reject(&id).await.unwrap() {
        Decided::Ended(job) => job,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (job.id.clone(), job.status()),
        (id.clone(), Status::Rejected)
    );
    assert!(job.finished_ms().is_some_and(|at| at >= before));
    let kept = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (kept.status(), kept.run(), kept.finished_ms()),
        (Status::Rejected, None, job.finished_ms())
    );
    assert!(claim_ids(&store, 8).await.is_empty(), "never runs");
    // A redelivery is admitted anew.
    let again = admit(&store, gated("r", Some("k"), now_ms() + DAY_MS)).await;
    assert_ne!(again, id);

    // Deciding a job that does not await approval, or an unknown one, changes nothing.
    match store.reject(&id).await.unwrap() {
        Decided::NotAwaiting(job) => assert_eq!(job.status(), Status::Rejected),
        other => panic!("{other:?}"),
    }
    match store.approve(&id, PARALLEL).await.unwrap() {
        Approval::NotAwaiting(job) => assert_eq!(job.status(), Status::Rejected),
        other => panic!("{other:?}"),
    }
    let unknown = JobId::generate();
    assert_eq!(store.reject(&unknown).await.unwrap(), Decided::NotFound);
    assert!(matches!(
        store.approve(&unknown, PARALLEL).await.unwrap(),
        Approval::NotFound
    ));
    let queued = admit(&store, new_job("r", None, PARALLEL)).await;
    match store.reject(&queued).await.unwrap() {
        Decided::NotAwaiting(job) => assert_eq!(job.status(), Status::Queued),
        other => panic!("{other:?}"),
    }
    assert_eq!(status(&store, &again).await, Status::AwaitingApproval);
}

pub async fn expiry_ends_only_the_due_waits_and_says_when_the_next_is(database: &impl Database) {
    let store = database.open("web-1").await;
    let now = now_ms();
    let due = admit(&store, gated("e", Some("k"), now - 1_000)).await;
    let at_now = admit(&store, gated("e", None, now)).await;
    let later = admit(&store, gated("e", None, now + 60_000)).await;
    let latest = admit(&store, gated("e", None, now + 120_000)).await;
    let expiry = store.expire_approvals(now).await.unwrap();
    let mut expired: Vec<JobId> = expiry.expired.iter().map(|job| job.id.clone()).collect();
    expired.sort_by_key(|id| id.to_string());
    let mut expected = vec![due.clone(), at_now.clone()];
    expected.sort_by_key(|id| id.to_string());
    assert_eq!(expired, expected);
    assert!(expiry
        .expired
        .iter()
        .all(|job| job.status() == Status::Expired));
    assert_eq!(expiry.next_ms, Some(now + 60_000));
    assert_eq!(status(&store, &due).await, Status::Expired);
    assert_eq!(status(&store, &later).await, Status::AwaitingApproval);
    // Its key is given back.
    admit(&store, gated("e", Some("k"), now + DAY_MS)).await;

    let again = store.expire_approvals(now).await.unwrap();
    assert!(again.expired.is_empty(), "each expires once");
    let all = store.expire_approvals(now + 120_000).await.unwrap();
    assert_eq!(all.expired.len(), 2);
    assert_eq!(all.next_ms, Some(now + DAY_MS));
    assert_eq!(status(&store, &latest).await, Status::Expired);
    assert!(claim_ids(&store, 8).await.is_empty());
}

pub async fn cancel_ends_an_awaiting_job(database: &impl Database) {
    let store = database.open("web-1").await;
    let id = admit(&store, gated("c", Some("k"), now_ms() + DAY_MS)).await;
    match store.cancel(&id).await.unwrap() {
        CancelResult::Dequeued(job) => {
            assert_eq!(
                (job.id.clone(), job.status()),
                (id.clone(), Status::Cancelled)
            )
        }
        other => panic!("{other:?}"),
    }
    store.flush().await.unwrap();
    assert_eq!(status(&store, &id).await, Status::Cancelled);
    assert!(matches!(
        store.approve(&id, PARALLEL).await.unwrap(),
        Approval::NotAwaiting(_)
    ));
    assert!(store
        .expire_approvals(now_ms() + 2 * DAY_MS)
        .await
        .unwrap()
        .expired
        .is_empty());
    assert!(claim_ids(&store, 8).await.is_empty());
    admit(&store, gated("c", Some("k"), now_ms() + DAY_MS)).await;
}

pub async fn list_filters_jobs_awaiting_approval(database: &impl Database) {
    let store = database.open("web-1").await;
    let first = admit(&store, gated("f", None, now_ms() + DAY_MS)).await;
    admit(&store, new_job("f", None, PARALLEL)).await;
    let second = admit(&store, gated("f", None, now_ms() + DAY_MS)).await;
    assert_eq!(awaiting_ids(&store).await, [second.clone(), first.clone()]);
    approved(store.approve(&first, PARALLEL).await.unwrap());
    assert_eq!(awaiting_ids(&store).await, [second]);
}

fn notification(position: u32) -> NewNotification {
    let created_ms = now_ms();
    NewNotification {
        position,
        target: "webhook".into(),
        route: format!("route-{position}"),
        created_ms,
        expires_ms: created_ms + DAY_MS,
        body: b"{}".to_vec(),
        env: Vec::new(),
    }
}

/// What `unannounced` returns, as (id, status) pairs, sorted by id.
async fn unannounced(store: &Store) -> Vec<(JobId, Status)> {
    let mut jobs: Vec<(JobId, Status)> = store
        .unannounced(100)
        .await
        .unwrap()
        .into_iter()
        .map(|job| (job.id.clone(), job.status()))
        .collect();
    jobs.sort_by_key(|(id, _)| id.to_string());
    jobs
}

/// Positions of wait notifications, apart from the ends' (as the delivery task keeps them).
const WAIT: u32 = 1_000;

pub async fn a_wait_and_an_end_are_announced_apart(database: &impl Database) {
    let store = database.open("web-1").await;
    let until_ms = now_ms() + DAY_MS;
    let mut loud = gated("a", None, until_ms);
    loud.notify = true;
    let loud = admit(&store, loud).await;
    admit(&store, gated("a", None, until_ms)).await;
    assert_eq!(
        unannounced(&store).await,
        [(loud.clone(), Status::AwaitingApproval)],
        "only the wait of a job whose hook notifies"
    );
    announce(&store, &loud, vec![notification(WAIT)]).await;
    assert!(
        unannounced(&store).await.is_empty(),
        "the wait is announced"
    );
    store.reject(&loud).await.unwrap();
    assert_eq!(
        unannounced(&store).await,
        [(loud.clone(), Status::Rejected)],
        "its end is still to be announced"
    );
    announce(&store, &loud, vec![notification(0)]).await;
    assert!(unannounced(&store).await.is_empty());
    let positions: Vec<u32> = store
        .notifications(std::slice::from_ref(&loud))
        .await
        .unwrap()
        .remove(&loud)
        .unwrap_or_default()
        .iter()
        .map(|state| state.position)
        .collect();
    assert_eq!(positions, [0, WAIT]);

    // A wait that ended before it was announced is not announced; the end is, once.
    let mut approved_unannounced = gated("b", None, until_ms);
    approved_unannounced.notify = true;
    let quick = admit(&store, approved_unannounced).await;
    let mut cancelled_unannounced = gated("b", None, until_ms);
    cancelled_unannounced.notify = true;
    let dropped = admit(&store, cancelled_unannounced).await;
    approved(store.approve(&quick, PARALLEL).await.unwrap());
    store.cancel(&dropped).await.unwrap();
    assert_eq!(
        unannounced(&store).await,
        [(dropped.clone(), Status::Cancelled)]
    );
    announce(&store, &dropped, Vec::new()).await;
    assert_eq!(claim_ids(&store, 8).await, std::slice::from_ref(&quick));
    assert!(unannounced(&store).await.is_empty(), "running");
    finish(&store, &quick, Status::Failed).await;
    assert_eq!(unannounced(&store).await, [(quick.clone(), Status::Failed)]);

    // Announcing a wait that ended meanwhile (as the caller saw it) keeps the end's mark.
    let mut raced = gated("c", None, until_ms);
    raced.notify = true;
    let raced = admit(&store, raced).await;
    let seen_awaiting = store.get(&raced).await.unwrap().unwrap();
    store.reject(&raced).await.unwrap();
    store
        .announce(&seen_awaiting, vec![notification(WAIT)])
        .await
        .unwrap();
    assert!(unannounced(&store)
        .await
        .contains(&(raced.clone(), Status::Rejected)));
    // …and keeps none of the wait's notifications: they would say it still waits.
    let kept = store
        .notifications(std::slice::from_ref(&raced))
        .await
        .unwrap()
        .remove(&raced)
        .unwrap_or_default();
    assert!(kept.is_empty(), "{kept:?}");
}

pub async fn an_approved_job_joins_the_back_of_its_line_also_after_a_restart(
    database: &impl Database,
) {
    let queue = Concurrency::Queue { queue: 10 };
    let store = database.open("web-1").await;
    let mut gated_job = new_job("q", None, queue);
    gated_job.approval_until_ms = Some(now_ms() + DAY_MS);
    let late = admit(&store, gated_job).await;
    let first = admit(&store, new_job("q", None, queue)).await;
    let second = admit(&store, new_job("q", None, queue)).await;
    approved(store.approve(&late, queue).await.unwrap());
    store.flush().await.unwrap();
    store.close().await;
    drop(store);

    let store = database.open("web-1").await;
    store.recover(&|_| queue).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..3 {
        let claimed = claim_ids(&store, 8).await;
        assert_eq!(claimed.len(), 1, "one at a time: {claimed:?}");
        finish(&store, &claimed[0], Status::Succeeded).await;
        order.extend(claimed);
    }
    assert_eq!(order, [first, second, late.clone()]);
    // The newest in line is the newest in the list too.
    let page = store
        .list(ListQuery {
            limit: 1,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.jobs[0].id, late);
}

pub async fn an_awaiting_job_survives_a_restart_and_is_seen_by_another_instance(
    database: &impl Database,
) {
    let store = database.open("web-1").await;
    let until_ms = now_ms() + DAY_MS;
    let id = admit(&store, gated("s", Some("k"), until_ms)).await;
    let due = admit(&store, gated("s", None, now_ms() + 500)).await;
    store.flush().await.unwrap();
    store.close().await;
    drop(store);

    let store = database.open("web-2").await;
    let recovered = store.recover(&|_| PARALLEL).await.unwrap();
    assert!(recovered.is_empty(), "not put in line: {recovered:?}");
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Awaiting { until_ms },
        "not interrupted"
    );
    assert!(claim_ids(&store, 8).await.is_empty());
    let again = store.admit(gated("s", Some("k"), until_ms), 100).await;
    assert!(
        matches!(&again, Ok(Admission::Duplicate(first)) if *first == id),
        "{again:?}"
    );
    let full = store.admit(new_job("other", None, PARALLEL), 2).await;
    assert!(
        matches!(full, Ok(Admission::ServerFull { pending: 2 })),
        "{full:?}"
    );
    let expiry = store.expire_approvals(now_ms() + 1_000).await.unwrap();
    assert_eq!(expiry.expired.len(), 1);
    assert_eq!(
        (&expiry.expired[0].id, expiry.next_ms),
        (&due, Some(until_ms))
    );
    approved(store.approve(&id, PARALLEL).await.unwrap());
    assert_eq!(claim_ids(&store, 8).await, [id]);
}

pub async fn prune_never_deletes_an_awaiting_job(database: &impl Database) {
    let store = database.open("web-1").await;
    let mut old = gated("p", None, now_ms() + DAY_MS);
    old.job.created_ms = now_ms() - DAY_MS;
    let id = admit(&store, old).await;
    let ended = admit(&store, new_job("p", None, PARALLEL)).await;
    store.cancel(&ended).await.unwrap();
    store.flush().await.unwrap();
    let pruned = store.prune(Duration::from_secs(1), 0).await.unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(status(&store, &id).await, Status::AwaitingApproval);
}
