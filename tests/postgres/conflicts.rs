//! Instances that meet: transactions the database aborts for a deadlock or a serialization
//! failure, an instance taken for dead that still runs jobs, a lane held by a dead instance.

use std::collections::HashSet;
use std::time::Duration;

use hookrunner::config::Concurrency;
use hookrunner::job::{JobId, Status};
use hookrunner::store::{Admission, Placement, Store, StoreEvent};

use crate::helpers::*;

/// Whether a session of the database at `url` waits for a lock now.
async fn someone_waits_for_a_lock(watcher: &tokio_postgres::Client) -> bool {
    let waiting: i64 = watcher
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    waiting > 0
}

#[tokio::test]
async fn an_admission_a_deadlock_aborts_is_tried_again_and_accepted() {
    let url = fresh_database().await;
    // The store's sessions look for deadlocks after 2 s, the other one never: the admission is
    // the deadlock's victim.
    let watcher = sql(&url).await;
    let database: String = watcher
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    watcher
        .batch_execute(&format!(
            "ALTER DATABASE {database} SET deadlock_timeout = '2s'"
        ))
        .await
        .unwrap();
    let a = instance(&url, "a").await;
    admit(&a, new_job("deploy", Concurrency::Latest, None)).await;
    let other = sql(&url).await;
    other
        .batch_execute(
            "SET deadlock_timeout = '600s'; BEGIN; \
             UPDATE lanes SET mode = mode WHERE lane = 'deploy'",
        )
        .await
        .unwrap();
    // The admission takes its duplicate key, then waits for the lane `other` holds ...
    let admission = tokio::spawn({
        let a = a.clone();
        async move {
            a.admit(new_job("deploy", Concurrency::Latest, Some("k")), 1000)
                .await
        }
    });
    eventually(Duration::from_secs(10), "the admission waits", || async {
        someone_waits_for_a_lock(&watcher).await.then_some(())
    })
    .await;
    // ... and `other` wants the key: a deadlock, which aborts the admission.
    other
        .batch_execute("INSERT INTO dedupe (hook, key, job_id) VALUES ('deploy', 'k', 'x')")
        .await
        .expect("`other` is not the deadlock's victim");
    other.batch_execute("ROLLBACK").await.unwrap();
    let admission = tokio::time::timeout(Duration::from_secs(30), admission)
        .await
        .expect("the admission ends")
        .unwrap();
    assert!(
        matches!(admission, Ok(Admission::Accepted { .. })),
        "{admission:?}"
    );
}

/// Three instances admit `latest` and `replace` jobs of one lane as fast as they can while they
/// claim and finish them: none sees an error, a job never runs twice and never two at once.
async fn hammer(url: &str) {
    let stores = [
        instance(url, "a").await,
        instance(url, "b").await,
        instance(url, "c").await,
    ];
    let watcher = sql(url).await;
    let runs = futures_util::future::join_all(stores.iter().enumerate().map(|(n, store)| {
        let watcher = &watcher;
        async move {
            let mut ran = Vec::new();
            for round in 0..40 {
                let mode = if (n + round) % 2 == 0 {
                    Concurrency::Latest
                } else {
                    Concurrency::Replace
                };
                let key = format!("{n}-{round}");
                match store.admit(new_job("deploy", mode, Some(&key)), 1000).await {
                    Ok(Admission::Accepted { committed, .. }) => committed.await.unwrap(),
                    other => panic!("admission {key}: {other:?}"),
                }
                let claimed = store
                    .claim(4)
                    .await
                    .unwrap_or_else(|error| panic!("claim: {error:?}"));
                let running: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM jobs WHERE lane = 'deploy' AND status = 'running'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert!(running <= 1, "{running} run at once");
                for claimed in claimed {
                    ran.push(claimed.job.id.clone());
                    finish(store, claimed.job, Status::Succeeded).await;
                }
                let cancelled = store
                    .cancel(&JobId::generate())
                    .await
                    .unwrap_or_else(|error| panic!("cancel: {error:?}"));
                assert_eq!(cancelled, hookrunner::store::CancelResult::NotFound);
            }
            ran
        }
    }))
    .await;
    let ran: Vec<JobId> = runs.into_iter().flatten().collect();
    let once: HashSet<&JobId> = ran.iter().collect();
    assert_eq!(once.len(), ran.len(), "a job ran twice");
    assert!(!ran.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn latest_and_replace_admissions_from_three_instances_while_claiming_never_fail() {
    hammer(&fresh_database().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_database_whose_default_isolation_is_serializable_changes_nothing() {
    let url = fresh_database().await;
    let watcher = sql(&url).await;
    let database: String = watcher
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    watcher
        .batch_execute(&format!(
            "ALTER DATABASE {database} SET default_transaction_isolation = 'serializable'"
        ))
        .await
        .unwrap();
    hammer(&url).await;
}

#[tokio::test]
async fn an_instance_taken_for_dead_stops_the_jobs_it_still_runs() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    let mut events = a.events().unwrap();
    let id = admit(
        &a,
        new_job("deploy", Concurrency::Parallel { limit: None }, None),
    )
    .await;
    assert_eq!(ids(&claim(&a, 1).await), std::slice::from_ref(&id));
    // What another instance does when `a`'s lease ran out (its heartbeats were lost).
    sql(&url)
        .await
        .batch_execute(&format!(
            "BEGIN; UPDATE jobs SET status = 'interrupted', finished_ms = 1 WHERE id = '{id}'; \
             DELETE FROM instances WHERE name = 'a'; COMMIT"
        ))
        .await
        .unwrap();
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if event == StoreEvent::Cancel(id.clone()) {
                return;
            }
        }
    })
    .await;
    assert!(told.is_ok(), "`a` is not told to stop the job it lost");
    // It joined again, and its late end does not overwrite the record.
    eventually(Duration::from_secs(10), "`a` listed again", || async {
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
    let job = a.get(&id).await.unwrap().unwrap();
    let mut late = job.clone();
    late.state = hookrunner::job::JobState::Running {
        run: job.run().unwrap().clone(),
    };
    finish(&a, late, Status::Cancelled).await;
    assert_eq!(status(&a, &id).await, Status::Interrupted);
}

#[tokio::test]
async fn a_queue_whose_head_waits_on_a_dead_instance_runs_once_that_instance_is_reaped() {
    let url = fresh_database().await;
    // `b` says it is alive once, at start, and never again.
    let b = Store::postgres(&url, "b", LONG, LONG).await.unwrap();
    let mut head = new_job("deploy", Concurrency::Queue { queue: 10 }, None);
    head.placement = Placement::On {
        instance: "b".into(),
        per_instance: false,
    };
    head.command = command(false);
    let head = admit(&b, head).await;
    let a = Store::postgres(&url, "a", HEARTBEAT, Duration::from_secs(1))
        .await
        .unwrap();
    let next = admit(
        &a,
        new_job("deploy", Concurrency::Queue { queue: 10 }, None),
    )
    .await;
    assert!(claim(&a, 8).await.is_empty(), "the head is `b`'s");
    let claimed = eventually(
        Duration::from_secs(30),
        "`a` claims the next job",
        || async {
            let claimed = claim(&a, 8).await;
            (!claimed.is_empty()).then_some(claimed)
        },
    )
    .await;
    assert_eq!(ids(&claimed), [next]);
    assert_eq!(status(&a, &head).await, Status::Interrupted);
    drop(b);
}
