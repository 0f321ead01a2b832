//! The notification outbox across instances: each try is handed to one instance, and a hold left
//! by an instance that died ends after its time, for another to take it.

use std::collections::HashMap;
use std::time::Duration;

use hookrunner::config::Concurrency;
use hookrunner::job::{now_ms, JobId, Status};
use hookrunner::store::{DueNotification, NewNotification, Store};

use crate::helpers::{
    admit, claim, eventually, finish, fresh_database, instance, new_job, sql, HEARTBEAT, LONG,
};

const PARALLEL: Concurrency = Concurrency::Parallel { limit: None };

/// Ends `jobs` new jobs of hook `n` on `store`, each announced with `per_job` webhook
/// notifications, all due now; returns their ids.
async fn announced(store: &Store, jobs: usize, per_job: u32) -> Vec<JobId> {
    let mut ids = Vec::new();
    for _ in 0..jobs {
        let mut new = new_job("n", PARALLEL, None);
        new.notify = true;
        ids.push(admit(store, new).await);
    }
    for claimed in claim(store, jobs).await {
        finish(store, claimed.job, Status::Failed).await;
    }
    store.flush().await.unwrap();
    for id in &ids {
        let created_ms = now_ms();
        let notifications = (0..per_job)
            .map(|position| NewNotification {
                position,
                target: "webhook".into(),
                route: "r".into(),
                created_ms,
                expires_ms: created_ms + 86_400_000,
                body: format!("{id} {position}").into_bytes(),
                env: Vec::new(),
            })
            .collect();
        let job = store.get(id).await.unwrap().expect("the job exists");
        store.announce(&job, notifications).await.unwrap();
    }
    ids
}

/// Asks for due notifications, one at a time, until none is left for `store`.
async fn take_all(store: &Store) -> Vec<DueNotification> {
    let mut taken = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "still handing out");
        let due = store
            .due_notifications(now_ms(), 1, Duration::from_secs(600))
            .await
            .unwrap();
        if due.is_empty() {
            return taken;
        }
        taken.extend(due);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_asking_at_once_are_each_handed_a_notification_once() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    let b = instance(&url, "b").await;
    let ids = announced(&a, 10, 5).await;

    let (from_a, from_b) = tokio::join!(
        tokio::spawn({
            let a = a.clone();
            async move { take_all(&a).await }
        }),
        tokio::spawn({
            let b = b.clone();
            async move { take_all(&b).await }
        }),
    );
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    let mut handed: HashMap<(JobId, u32), usize> = HashMap::new();
    for due in from_a.iter().chain(&from_b) {
        assert_eq!(due.attempts, 1, "{} handed out before", due.id());
        assert_eq!(
            due.body,
            format!("{} {}", due.job, due.position).into_bytes()
        );
        *handed.entry((due.job.clone(), due.position)).or_default() += 1;
    }
    assert_eq!(handed.len(), 50, "every one handed out");
    assert!(handed.values().all(|&times| times == 1), "{handed:?}");
    for id in &ids {
        assert!((0..5).all(|position| handed.contains_key(&(id.clone(), position))));
    }
    // Each is held by the instance it was handed to.
    let holders = sql(&url).await;
    for (store, taken) in [("a", &from_a), ("b", &from_b)] {
        for due in taken {
            let held_by: Option<String> = holders
                .query_one(
                    "SELECT held_by FROM notifications WHERE job = $1 AND position = $2",
                    &[&due.job.as_str(), &i32::try_from(due.position).unwrap()],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(held_by.as_deref(), Some(store));
        }
    }
}

#[tokio::test]
async fn a_notification_held_by_an_instance_reaped_as_dead_is_tried_by_another_after_the_hold() {
    let url = fresh_database().await;
    // `b` says it is alive once, at start, and never again.
    let b = Store::postgres(&url, "b", LONG, LONG).await.unwrap();
    let ids = announced(&b, 1, 1).await;
    let hold = Duration::from_secs(8);
    let taken_at = now_ms();
    let held = b.due_notifications(taken_at, 10, hold).await.unwrap();
    assert_eq!(held.len(), 1);
    let held_until = taken_at + i64::try_from(hold.as_millis()).unwrap();

    let a = Store::postgres(&url, "a", HEARTBEAT, Duration::from_secs(1))
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "b reaped", || async {
        let names: Vec<String> = a
            .instances()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        (names == ["a"]).then_some(())
    })
    .await;
    // Reaping `b` does not end its hold: it may only be cut off, and still delivering.
    let retaken = eventually(Duration::from_secs(30), "the hold ended", || async {
        let now = now_ms();
        let due = a.due_notifications(now, 10, hold).await.unwrap();
        (!due.is_empty()).then_some((now, due))
    })
    .await;
    let (retaken_at, due) = retaken;
    assert!(
        retaken_at >= held_until,
        "handed out again {} ms before the hold ended",
        held_until - retaken_at
    );
    assert_eq!(due.len(), 1);
    assert_eq!(
        (&due[0].job, due[0].attempts, &due[0].body),
        (&ids[0], 2, &held[0].body)
    );
}
