//! Several instances on one database: what holds for one instance holds for the cluster.

use std::time::Duration;

use hookrunner::config::Concurrency;
use hookrunner::job::Status;
use hookrunner::store::{Admission, Placement, Store, StoreError, StoreEvent};

use crate::helpers::*;

#[tokio::test]
async fn a_duplicate_delivery_runs_once_whichever_instances_it_reaches() {
    let url = fresh_database().await;
    let (a, b) = (instance(&url, "a").await, instance(&url, "b").await);
    let parallel = Concurrency::Parallel { limit: None };
    for round in 0..10 {
        let key = format!("delivery-{round}");
        let (first, second) = tokio::join!(
            a.admit(new_job("deploy", parallel, Some(&key)), 1000),
            b.admit(new_job("deploy", parallel, Some(&key)), 1000),
        );
        let outcomes = [first.unwrap(), second.unwrap()];
        let accepted: Vec<_> = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Admission::Accepted { .. }))
            .collect();
        let duplicates: Vec<_> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Admission::Duplicate(first) => Some(first.clone()),
                _ => None,
            })
            .collect();
        assert_eq!((accepted.len(), duplicates.len()), (1, 1), "{outcomes:?}");
    }
    // A job that ends without succeeding gives its key back.
    let id = admit(&a, new_job("deploy", parallel, Some("retried"))).await;
    let claimed = claim(&b, 100).await;
    let job = claimed
        .into_iter()
        .find(|claimed| claimed.job.id == id)
        .unwrap()
        .job;
    match a
        .admit(new_job("deploy", parallel, Some("retried")), 1000)
        .await
    {
        Ok(Admission::Duplicate(first)) => assert_eq!(first, id),
        other => panic!("a running job holds its key: {other:?}"),
    }
    finish(&b, job, Status::Failed).await;
    admit(&a, new_job("deploy", parallel, Some("retried"))).await;
}

#[tokio::test]
async fn a_queue_runs_one_job_at_a_time_in_order_across_instances() {
    let url = fresh_database().await;
    let (a, b) = (instance(&url, "a").await, instance(&url, "b").await);
    let queue = Concurrency::Queue { queue: 10 };
    let mut queued = Vec::new();
    for index in 0..4 {
        let store = if index % 2 == 0 { &a } else { &b };
        queued.push(admit(store, new_job("q", queue, None)).await);
    }
    for expected in &queued {
        let (on_a, on_b) = tokio::join!(a.claim(8), b.claim(8));
        let mut claimed = on_a.unwrap();
        claimed.extend(on_b.unwrap());
        assert_eq!(
            ids(&claimed),
            std::slice::from_ref(expected),
            "one at a time, in order"
        );
        let claimer = if claimed[0].job.run().unwrap().instance == "a" {
            &a
        } else {
            &b
        };
        assert!(claim(&a, 8).await.is_empty() && claim(&b, 8).await.is_empty());
        finish(claimer, claimed.remove(0).job, Status::Succeeded).await;
    }
}

#[tokio::test]
async fn a_queue_bound_counts_the_cluster_and_an_idle_lanes_first_job_takes_no_place() {
    let url = fresh_database().await;
    let (a, b) = (instance(&url, "a").await, instance(&url, "b").await);
    let queue = Concurrency::Queue { queue: 1 };
    admit(&a, new_job("q", queue, None)).await;
    admit(&b, new_job("q", queue, None)).await;
    match a.admit(new_job("q", queue, None), 1000).await.unwrap() {
        Admission::QueueFull { waiting } => assert_eq!(waiting, 2),
        other => panic!("the queue is full: {other:?}"),
    }
    let running = claim(&b, 8).await;
    assert_eq!(running.len(), 1);
    match b.admit(new_job("q", queue, None), 1000).await.unwrap() {
        Admission::QueueFull { waiting } => assert_eq!(waiting, 1),
        other => panic!("one runs, one waits: {other:?}"),
    }
    // `max_pending` counts every instance's waiting jobs.
    let parallel = Concurrency::Parallel { limit: None };
    match a.admit(new_job("p", parallel, None), 1).await.unwrap() {
        Admission::ServerFull { pending } => assert_eq!(pending, 1),
        other => panic!("one job waits already: {other:?}"),
    }
}

#[tokio::test]
async fn parallel_limit_counts_the_running_jobs_of_every_instance() {
    let url = fresh_database().await;
    let (a, b) = (instance(&url, "a").await, instance(&url, "b").await);
    let limited = Concurrency::Parallel { limit: Some(3) };
    for _ in 0..6 {
        admit(&a, new_job("p", limited, None)).await;
    }
    assert_eq!(claim(&a, 2).await.len(), 2);
    let on_b = claim(&b, 8).await;
    assert_eq!(on_b.len(), 1, "3 run in the cluster");
    assert!(claim(&a, 8).await.is_empty());
    finish(&b, on_b.into_iter().next().unwrap().job, Status::Succeeded).await;
    assert_eq!(claim(&a, 8).await.len(), 1);
}

#[tokio::test]
async fn replace_supersedes_and_cancels_across_instances() {
    let url = fresh_database().await;
    let (a, b) = (instance(&url, "a").await, instance(&url, "b").await);
    let mut events = a.events().expect("a PostgreSQL store has events");
    let first = admit(&a, new_job("r", Concurrency::Replace, None)).await;
    assert_eq!(ids(&claim(&a, 8).await), std::slice::from_ref(&first));
    let second_job = new_job("r", Concurrency::Replace, None);
    let second = second_job.job.id.clone();
    match b.admit(second_job, 1000).await.unwrap() {
        Admission::Accepted {
            superseded, cancel, ..
        } => {
            assert!(superseded.is_empty());
            assert_eq!(cancel, [(first.clone(), "a".to_string())]);
        }
        other => panic!("{other:?}"),
    }
    expect_event(&mut events, StoreEvent::Cancel(first.clone())).await;
    match b
        .admit(new_job("r", Concurrency::Replace, None), 1000)
        .await
        .unwrap()
    {
        Admission::Accepted { superseded, .. } => {
            assert_eq!(superseded, std::slice::from_ref(&second))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(status(&a, &second).await, Status::Superseded);
    expect_event(&mut events, StoreEvent::Ended(second)).await;
    assert!(claim(&b, 8).await.is_empty(), "the replaced job still runs");
}

/// Waits for `expected` among the store's events (others, like `Work`, come too).
async fn expect_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<StoreEvent>,
    expected: StoreEvent,
) {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if event == expected {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{expected:?}");
}

#[tokio::test]
async fn a_job_placed_on_one_instance_is_claimed_only_there_and_blocks_its_lane_elsewhere() {
    let url = fresh_database().await;
    let (a, b) = (instance(&url, "a").await, instance(&url, "b").await);
    let mut placed = new_job("w", Concurrency::Parallel { limit: None }, None);
    placed.placement = Placement::On {
        instance: "a".into(),
        per_instance: false,
    };
    // A `wait` job: its command is not stored; the instance that admitted it keeps it.
    placed.command = command(false);
    let id = admit(&a, placed).await;
    admit(
        &b,
        new_job("w", Concurrency::Parallel { limit: None }, None),
    )
    .await;
    assert!(
        claim(&b, 8).await.is_empty(),
        "the lane's oldest job is placed on `a`"
    );
    let claimed = claim(&a, 1).await;
    assert_eq!(ids(&claimed), [id]);
    assert!(!claimed[0].command.run_after_restart && claimed[0].started.is_none());
    assert_eq!(claim(&b, 8).await.len(), 1);
}

#[tokio::test]
async fn a_silent_instance_is_reaped_once_its_lease_runs_out() {
    let url = fresh_database().await;
    // `b` says it is alive once, at start, and never again.
    let b = Store::postgres(&url, "b", LONG, LONG).await.unwrap();
    let id = admit(
        &b,
        new_job("deploy", Concurrency::Parallel { limit: None }, Some("k")),
    )
    .await;
    assert_eq!(ids(&claim(&b, 8).await), std::slice::from_ref(&id));
    let a = Store::postgres(&url, "a", HEARTBEAT, Duration::from_secs(1))
        .await
        .unwrap();
    let job = eventually(Duration::from_secs(20), "b's job interrupted", || async {
        let job = a.get(&id).await.unwrap().unwrap();
        (job.status() == Status::Interrupted).then_some(job)
    })
    .await;
    let error = job.outcome().unwrap().error.clone().unwrap();
    assert!(
        error.starts_with("instance `b` stopped (no heartbeat for "),
        "{error}"
    );
    let names: Vec<String> = a
        .instances()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["a"]);
    // Its key is free again, and its late end does not overwrite the record.
    admit(
        &a,
        new_job("deploy", Concurrency::Parallel { limit: None }, Some("k")),
    )
    .await;
    let mut late = job.clone();
    late.state = hookrunner::job::JobState::Running {
        run: job.run().unwrap().clone(),
    };
    finish(&b, late, Status::Succeeded).await;
    assert_eq!(status(&a, &id).await, Status::Interrupted);
}

#[tokio::test]
async fn a_second_live_instance_with_the_same_name_is_refused_naming_it() {
    let url = fresh_database().await;
    let first = instance(&url, "web-1").await;
    let error = Store::postgres(&url, "web-1", HEARTBEAT, LONG)
        .await
        .expect_err("the name is taken");
    assert!(
        matches!(error, StoreError::InstanceTaken { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("another instance named `web-1` is running (last heartbeat ")
            && message.ends_with("s ago); give each instance its own `instance` name"),
        "{message}"
    );
    instance(&url, "web-2").await;
    first.close().await;
    instance(&url, "web-1").await;
}

#[tokio::test]
async fn a_restarted_instance_interrupts_what_its_previous_run_left() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    let running = admit(
        &a,
        new_job("deploy", Concurrency::Parallel { limit: None }, None),
    )
    .await;
    claim(&a, 8).await;
    let mut placed = new_job("deploy", Concurrency::Parallel { limit: None }, None);
    placed.placement = Placement::On {
        instance: "a".into(),
        per_instance: false,
    };
    placed.command = command(false);
    let placed = admit(&a, placed).await;
    let anyone = admit(
        &a,
        new_job("other", Concurrency::Parallel { limit: None }, None),
    )
    .await;
    a.close().await;
    let again = instance(&url, "a").await;
    assert!(again
        .recover(&|_| Concurrency::Latest)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(status(&again, &running).await, Status::Interrupted);
    assert_eq!(status(&again, &placed).await, Status::Interrupted);
    assert_eq!(status(&again, &anyone).await, Status::Queued);
}

#[tokio::test]
async fn a_database_made_by_a_newer_hookrunner_is_refused() {
    let url = fresh_database().await;
    instance(&url, "a").await.close().await;
    sql(&url)
        .await
        .execute(
            "UPDATE hookrunner_meta SET value = '99' WHERE key = 'schema_version'",
            &[],
        )
        .await
        .unwrap();
    let error = Store::postgres(&url, "a", HEARTBEAT, LONG)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NewerSchema {
                found: 99,
                known: 4
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn instances_starting_together_migrate_one_at_a_time() {
    let url = fresh_database().await;
    let names: Vec<String> = (0..4).map(|n| format!("i-{n}")).collect();
    let opened = futures_util::future::join_all(
        names
            .iter()
            .map(|name| Store::postgres(&url, name, HEARTBEAT, LONG)),
    )
    .await;
    for store in opened {
        store.unwrap();
    }
    let store = instance(&url, "last").await;
    assert_eq!(store.instances().await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_listener_that_lost_its_connection_comes_back_and_retells_what_ended_meanwhile() {
    let url = fresh_database().await;
    let (a, b) = (instance(&url, "a").await, instance(&url, "b").await);
    let mut events = a.events().unwrap();
    let mut placed = new_job("l", Concurrency::Latest, None);
    placed.placement = Placement::On {
        instance: "a".into(),
        per_instance: false,
    };
    placed.command = command(false);
    let placed = admit(&a, placed).await;
    admit(&b, new_job("l", Concurrency::Latest, None)).await;
    expect_event(&mut events, StoreEvent::Ended(placed.clone())).await;
    let terminated: bool = sql(&url)
        .await
        .query_one(
            "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'hookrunner a' \
             AND query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(terminated, "the listener's connection was found");
    expect_event(&mut events, StoreEvent::Ended(placed)).await;
    // It holds the name again.
    let error = Store::postgres(&url, "a", HEARTBEAT, LONG)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::InstanceTaken { .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn three_instances_claiming_at_once_never_exceed_a_lanes_limit_and_run_each_job_once() {
    let url = fresh_database().await;
    let stores = [
        instance(&url, "a").await,
        instance(&url, "b").await,
        instance(&url, "c").await,
    ];
    let limited = Concurrency::Parallel { limit: Some(2) };
    let mut admitted = Vec::new();
    for n in 0..30 {
        admitted.push(admit(&stores[n % 3], new_job("p", limited, None)).await);
    }
    let watcher = sql(&url).await;
    let runs = futures_util::future::join_all(stores.iter().map(|store| {
        let watcher = &watcher;
        async move {
            let mut ran = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline {
                let claimed = claim(store, 2).await;
                let running: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM jobs WHERE hook = 'p' AND status = 'running'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert!(running <= 2, "{running} run at once");
                if claimed.is_empty() && store.waiting() == 0 {
                    let left: i64 = watcher
                        .query_one("SELECT count(*) FROM jobs WHERE status = 'queued'", &[])
                        .await
                        .unwrap()
                        .get(0);
                    if left == 0 {
                        break;
                    }
                }
                for claimed in claimed {
                    ran.push(claimed.job.id.clone());
                    finish(store, claimed.job, Status::Succeeded).await;
                }
            }
            ran
        }
    }))
    .await;
    let mut ran: Vec<_> = runs.into_iter().flatten().collect();
    ran.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    admitted.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(ran, admitted, "each job ran once");
}
