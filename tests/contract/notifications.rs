//! The notification outbox's promises (`hookrunner::store::notification`).

use std::time::Duration;

use hookrunner::config::Concurrency;
use hookrunner::job::{now_ms, JobId, Status};
use hookrunner::store::{
    CancelResult, NewJob, NewNotification, NotificationState, NotificationStatus, Store, Tried,
};

use super::{admit, claim_ids, finish, new_job, Database, PARALLEL};

const HOLD: Duration = Duration::from_secs(60);

fn notifying(hook: &str, concurrency: Concurrency) -> NewJob {
    let mut new = new_job(hook, None, concurrency);
    new.notify = true;
    new
}

fn notification(position: u32, target: &str, body: &str) -> NewNotification {
    let created_ms = now_ms();
    NewNotification {
        position,
        target: target.to_string(),
        route: format!("{target}-{position}"),
        created_ms,
        expires_ms: created_ms + 86_400_000,
        body: body.as_bytes().to_vec(),
        env: if target == "command" {
            vec![("HOOK_STATUS".into(), "failed".into())]
        } else {
            Vec::new()
        },
    }
}

/// A job of `hook` that ran here, failed, and was announced with `notifications`.
async fn failed_and_announced(
    store: &Store,
    hook: &str,
    notifications: Vec<NewNotification>,
) -> JobId {
    let id = admit(store, notifying(hook, PARALLEL)).await;
    claim_ids(store, 8).await;
    finish(store, &id, Status::Failed).await;
    announce(store, &id, notifications).await;
    id
}

/// Announces the job `id` as the store has it now (its end, or its wait for approval).
pub async fn announce(store: &Store, id: &JobId, notifications: Vec<NewNotification>) {
    let job = store.get(id).await.unwrap().expect("the job exists");
    store.announce(&job, notifications).await.unwrap();
}

async fn unannounced_ids(store: &Store) -> Vec<JobId> {
    let jobs = store.unannounced(100).await.unwrap();
    for job in &jobs {
        assert!(job.status().is_final(), "{:?} is not an end", job.status());
    }
    jobs.into_iter().map(|job| job.id).collect()
}

async fn states(store: &Store, id: &JobId) -> Vec<NotificationState> {
    let mut all = store.notifications(std::slice::from_ref(id)).await.unwrap();
    all.remove(id).unwrap_or_default()
}

pub async fn a_job_end_is_announced_once(database: &impl Database) {
    let store = database.open("web-1").await;
    let quiet = admit(&store, new_job("n", None, PARALLEL)).await;
    let loud = admit(&store, notifying("n", PARALLEL)).await;
    assert!(unannounced_ids(&store).await.is_empty(), "not ended yet");
    claim_ids(&store, 8).await;
    assert!(unannounced_ids(&store).await.is_empty(), "running");
    finish(&store, &quiet, Status::Failed).await;
    finish(&store, &loud, Status::Failed).await;
    let unannounced = store.unannounced(100).await.unwrap();
    assert_eq!(unannounced.len(), 1, "only the job whose hook notifies");
    assert_eq!(
        (&unannounced[0].id, unannounced[0].status()),
        (&loud, Status::Failed)
    );

    let first = vec![
        notification(0, "webhook", "event"),
        notification(1, "command", "{}\n"),
    ];
    announce(&store, &loud, first.clone()).await;
    assert!(unannounced_ids(&store).await.is_empty());
    // Announcing again (another instance did it too) keeps what is there.
    announce(&store, &loud, vec![notification(0, "webhook", "other")]).await;
    let kept = states(&store, &loud).await;
    assert_eq!(kept.len(), 2);
    for (state, new) in kept.iter().zip(&first) {
        assert_eq!(
            (state.position, state.target.as_str(), state.status),
            (
                new.position,
                new.target.as_str(),
                NotificationStatus::Pending
            )
        );
        assert_eq!((state.attempts, &state.last_error), (0, &None));
        assert_eq!(state.next_attempt_ms, Some(new.created_ms));
    }
    let due = store.due_notifications(now_ms(), 10, HOLD).await.unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(
        (due[0].body.as_slice(), due[0].env.as_slice()),
        (&b"event"[..], &[][..]),
        "the first body kept, not the second"
    );
    assert_eq!(due[1].env, first[1].env);
    assert_eq!((due[1].hook.as_str(), &due[1].job), ("n", &loud));
    assert_eq!(due[1].route, "command-1");
    assert!(states(&store, &quiet).await.is_empty());

    // A job that ends with nothing to send is announced with nothing.
    let none = admit(&store, notifying("n", PARALLEL)).await;
    claim_ids(&store, 8).await;
    finish(&store, &none, Status::Succeeded).await;
    assert_eq!(unannounced_ids(&store).await, std::slice::from_ref(&none));
    announce(&store, &none, Vec::new()).await;
    assert!(unannounced_ids(&store).await.is_empty());
    assert!(states(&store, &none).await.is_empty());
}

pub async fn an_end_without_a_run_is_announced_too(database: &impl Database) {
    let store = database.open("web-1").await;
    let cancelled = admit(&store, notifying("c", Concurrency::Queue { queue: 5 })).await;
    match store.cancel(&cancelled).await.unwrap() {
        CancelResult::Dequeued(_) => {}
        other => panic!("{other:?}"),
    }
    let latest = Concurrency::Latest;
    let running = admit(&store, notifying("l", latest)).await;
    claim_ids(&store, 8).await;
    let superseded = admit(&store, notifying("l", latest)).await;
    admit(&store, notifying("l", latest)).await;
    store.flush().await.unwrap();
    let mut ended = unannounced_ids(&store).await;
    ended.sort_by_key(|id| id.to_string());
    let mut expected = vec![cancelled, superseded];
    expected.sort_by_key(|id| id.to_string());
    assert_eq!(ended, expected);
    for id in &ended {
        announce(&store, id, Vec::new()).await;
    }

    // A restart's `interrupted` too.
    drop(store);
    let store = database.open("web-1").await;
    store.recover(&|_| latest).await.unwrap();
    assert_eq!(unannounced_ids(&store).await, [running]);
}

pub async fn a_notification_is_tried_by_one_deliverer_until_it_is_settled(
    database: &impl Database,
) {
    let store = database.open("web-1").await;
    let id = failed_and_announced(
        &store,
        "t",
        vec![
            notification(0, "webhook", "a"),
            notification(1, "slack", "b"),
        ],
    )
    .await;
    let now = now_ms();
    let due = store.due_notifications(now, 10, HOLD).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|due| (due.position, due.attempts))
            .collect::<Vec<_>>(),
        [(0, 1), (1, 1)]
    );
    assert_eq!(due[0].id(), format!("msg_{id}_0"));
    assert!(
        store
            .due_notifications(now, 10, HOLD)
            .await
            .unwrap()
            .is_empty(),
        "held while tried"
    );
    assert_eq!(
        store.next_notification_due().await.unwrap(),
        Some(now + HOLD.as_millis() as i64),
        "a held one is due again when its hold ends"
    );

    let later = now + 1_000;
    let error = "the target answered 503 Service Unavailable".to_string();
    store
        .notification_tried(
            &id,
            0,
            Tried::Retry {
                at_ms: later,
                error: error.clone(),
            },
        )
        .await
        .unwrap();
    store
        .notification_tried(&id, 1, Tried::Delivered)
        .await
        .unwrap();
    assert_eq!(store.next_notification_due().await.unwrap(), Some(later));
    assert!(store
        .due_notifications(later - 1, 10, HOLD)
        .await
        .unwrap()
        .is_empty());
    let shown = states(&store, &id).await;
    assert_eq!(
        (
            shown[0].status,
            shown[0].attempts,
            &shown[0].last_error,
            shown[0].next_attempt_ms
        ),
        (NotificationStatus::Pending, 1, &Some(error), Some(later))
    );
    assert_eq!(
        (shown[1].status, shown[1].attempts, shown[1].next_attempt_ms),
        (NotificationStatus::Delivered, 1, None)
    );

    let again = store.due_notifications(later, 10, HOLD).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|due| (due.position, due.attempts))
            .collect::<Vec<_>>(),
        [(0, 2)]
    );
    // A hold whose deliverer died ends after `hold`.
    let after_hold = later + HOLD.as_millis() as i64;
    let retaken = store.due_notifications(after_hold, 10, HOLD).await.unwrap();
    assert_eq!(retaken.len(), 1);
    assert_eq!(retaken[0].attempts, 3);
    store
        .notification_tried(
            &id,
            0,
            Tried::Failed {
                error: "the target answered 410 Gone".into(),
            },
        )
        .await
        .unwrap();
    let shown = states(&store, &id).await;
    assert_eq!(
        (shown[0].status, shown[0].attempts, shown[0].next_attempt_ms),
        (NotificationStatus::Failed, 3, None)
    );
    assert_eq!(
        shown[0].last_error.as_deref(),
        Some("the target answered 410 Gone")
    );
    assert_eq!(store.next_notification_due().await.unwrap(), None);
    assert!(store
        .due_notifications(after_hold + 1_000_000, 10, HOLD)
        .await
        .unwrap()
        .is_empty());
}

pub async fn a_delivered_notification_keeps_why_its_last_failed_try_failed(
    database: &impl Database,
) {
    let store = database.open("web-1").await;
    let id = failed_and_announced(&store, "d", vec![notification(0, "webhook", "a")]).await;
    let now = now_ms();
    assert_eq!(
        store.due_notifications(now, 10, HOLD).await.unwrap().len(),
        1
    );
    let error = "the target answered 503 Service Unavailable".to_string();
    store
        .notification_tried(
            &id,
            0,
            Tried::Retry {
                at_ms: now,
                error: error.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.due_notifications(now, 10, HOLD).await.unwrap().len(),
        1
    );
    store
        .notification_tried(&id, 0, Tried::Delivered)
        .await
        .unwrap();
    let shown = states(&store, &id).await;
    assert_eq!(
        (
            shown[0].status,
            shown[0].attempts,
            &shown[0].last_error,
            shown[0].next_attempt_ms
        ),
        (NotificationStatus::Delivered, 2, &Some(error), None)
    );
}

pub async fn a_restart_lets_go_of_held_notifications(database: &impl Database) {
    let store = database.open("web-1").await;
    failed_and_announced(&store, "h", vec![notification(0, "webhook", "a")]).await;
    let held = store.due_notifications(now_ms(), 10, HOLD).await.unwrap();
    assert_eq!(held.len(), 1);
    store.flush().await.unwrap();
    store.close().await;
    drop(store);

    let store = database.open("web-1").await;
    store.recover(&|_| PARALLEL).await.unwrap();
    let again = store.due_notifications(now_ms(), 10, HOLD).await.unwrap();
    assert_eq!(again.len(), 1, "tried again at once, not after the hold");
    assert_eq!((again[0].attempts, &again[0].body), (2, &held[0].body));
}

pub async fn prune_keeps_a_pending_notification_of_a_pruned_job(database: &impl Database) {
    let store = database.open("web-1").await;
    let delivered = admit(&store, notifying("p", PARALLEL)).await;
    let pending = admit(&store, notifying("p", PARALLEL)).await;
    claim_ids(&store, 8).await;
    for id in [&delivered, &pending] {
        finish(&store, id, Status::Failed).await;
        announce(&store, id, vec![notification(0, "webhook", "a")]).await;
    }
    for due in store.due_notifications(now_ms(), 10, HOLD).await.unwrap() {
        let tried = if due.job == delivered {
            Tried::Delivered
        } else {
            Tried::Retry {
                at_ms: now_ms(),
                error: "refused".into(),
            }
        };
        store
            .notification_tried(&due.job, due.position, tried)
            .await
            .unwrap();
    }
    let unannounced = admit(&store, notifying("p", PARALLEL)).await;
    claim_ids(&store, 8).await;
    finish(&store, &unannounced, Status::Failed).await;
    assert_eq!(store.prune(Duration::from_secs(3600), 0).await.unwrap(), 2);
    assert_eq!(
        unannounced_ids(&store).await,
        [unannounced],
        "an end still to be announced is not pruned"
    );
    assert!(states(&store, &delivered).await.is_empty());
    let due = store
        .due_notifications(now_ms() + 1, 10, HOLD)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "still delivered after its job is gone");
    assert_eq!(due[0].job, pending);
    store
        .notification_tried(&pending, 0, Tried::Delivered)
        .await
        .unwrap();
    let delivered_late = states(&store, &pending).await;
    assert_eq!(
        (
            delivered_late[0].status,
            delivered_late[0].last_error.as_deref()
        ),
        (NotificationStatus::Delivered, Some("refused")),
        "a delivery keeps the error of the try before it"
    );
    store.prune(Duration::from_secs(3600), 0).await.unwrap();
    assert!(states(&store, &pending).await.is_empty(), "then pruned");
}
