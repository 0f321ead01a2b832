//! One instance's calls on its jobs: reads, pages, cancellation, logs and pruning.

use std::time::Duration;

use hookrunner::config::Concurrency;
use hookrunner::job::Status;
use hookrunner::store::{CancelResult, ListQuery, StoreEvent};

use crate::helpers::*;

const ANY: Concurrency = Concurrency::Parallel { limit: None };

#[tokio::test]
async fn a_job_reads_back_and_lists_newest_first_in_pages() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let hook = if n % 2 == 0 { "even" } else { "odd" };
        ids.push(admit(&a, new_job(hook, ANY, None)).await);
    }
    let job = a.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!((job.hook.as_str(), job.status()), ("even", Status::Queued));
    let first = a
        .list(ListQuery {
            limit: 2,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    let listed: Vec<_> = first.jobs.iter().map(|job| job.id.clone()).collect();
    assert_eq!(listed, [ids[4].clone(), ids[3].clone()]);
    assert_eq!(first.next, Some(ids[3].clone()));
    let rest = a
        .list(ListQuery {
            limit: 10,
            before: first.next,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.jobs.len(), 3);
    assert_eq!(rest.next, None);
    let odd = a
        .list(ListQuery {
            hook: Some("odd".into()),
            status: Some(Status::Queued),
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(odd.jobs.len(), 2);
}

#[tokio::test]
async fn cancel_dequeues_a_waiting_job_and_asks_the_instance_running_one() {
    let url = fresh_database().await;
    let (a, b) = (instance(&url, "a").await, instance(&url, "b").await);
    let mut events = b.events().unwrap();
    let running = admit(&a, new_job("deploy", ANY, None)).await;
    assert_eq!(claim(&b, 1).await.len(), 1);
    let waiting = admit(&a, new_job("deploy", ANY, None)).await;
    match a.cancel(&waiting).await.unwrap() {
        CancelResult::Dequeued(job) => assert_eq!(job.status(), Status::Cancelled),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        a.cancel(&running).await.unwrap(),
        CancelResult::Running {
            instance: "b".into()
        }
    );
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if event == StoreEvent::Cancel(running.clone()) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(heard, Ok(true));
    assert_eq!(
        a.cancel(&waiting).await.unwrap(),
        CancelResult::AlreadyFinished(Status::Cancelled)
    );
    let unknown = hookrunner::job::JobId::generate();
    assert_eq!(a.cancel(&unknown).await.unwrap(), CancelResult::NotFound);
}

#[tokio::test]
async fn output_is_kept_in_order_before_the_end_and_read_in_pieces() {
    let url = fresh_database().await;
    let (a, b) = (instance(&url, "a").await, instance(&url, "b").await);
    let id = admit(&a, new_job("deploy", ANY, None)).await;
    let job = claim(&a, 1).await.remove(0).job;
    let mut writer = a.log_writer(&id);
    let mut expected = Vec::new();
    for n in 0..3000 {
        let line = format!("line {n} \0 ✓\n");
        writer.append(line.as_bytes()).unwrap();
        expected.extend_from_slice(line.as_bytes());
    }
    finish(&a, job, Status::Succeeded).await;
    // Read from the other instance, 64 KiB at a time.
    let mut read = Vec::new();
    loop {
        let piece = b.read_log(&id, read.len() as u64).await.unwrap();
        if piece.is_empty() {
            break;
        }
        assert!(piece.len() <= 64 << 10);
        read.extend_from_slice(&piece);
    }
    assert_eq!(read.len(), expected.len());
    assert!(read == expected, "the log reads back as written");
    assert!(b
        .read_log(&id, 5)
        .await
        .unwrap()
        .starts_with(&expected[5..10]));
}

#[tokio::test]
async fn quiet_output_is_written_within_a_moment_while_the_job_runs() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    let id = admit(&a, new_job("deploy", ANY, None)).await;
    claim(&a, 1).await;
    let mut writer = a.log_writer(&id);
    writer.append(b"started\n").unwrap();
    let piece = eventually(
        Duration::from_secs(5),
        "the output in the store",
        || async {
            let piece = a.read_log(&id, 0).await.unwrap();
            (!piece.is_empty()).then_some(piece)
        },
    )
    .await;
    assert_eq!(&piece[..], b"started\n");
}

#[tokio::test]
async fn pruning_deletes_old_finished_jobs_with_their_output() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    let mut ended = Vec::new();
    for _ in 0..3 {
        let id = admit(&a, new_job("deploy", ANY, None)).await;
        let job = claim(&a, 1).await.remove(0).job;
        a.log_writer(&id).append(b"out").unwrap();
        finish(&a, job, Status::Succeeded).await;
        ended.push(id);
    }
    let queued = admit(&a, new_job("deploy", Concurrency::Latest, None)).await;
    assert_eq!(a.prune(Duration::from_secs(3600), 2).await.unwrap(), 2);
    assert!(a.get(&ended[0]).await.unwrap().is_none());
    assert!(a.read_log(&ended[0], 0).await.unwrap().is_empty());
    assert!(a.get(&ended[2]).await.unwrap().is_some());
    assert_eq!(a.prune(Duration::ZERO, 1000).await.unwrap(), 1);
    assert_eq!(status(&a, &queued).await, Status::Queued);
    a.check_writable().await.unwrap();
    let instances = a.instances().await.unwrap();
    assert_eq!((instances[0].name.as_str(), instances[0].running), ("a", 0));
}

#[tokio::test]
async fn a_read_sees_every_end_and_output_handed_over_before_it() {
    let url = fresh_database().await;
    let a = instance(&url, "a").await;
    for round in 0..10 {
        let id = admit(&a, new_job("deploy", ANY, None)).await;
        let mut job = claim(&a, 1).await.remove(0).job;
        let line = format!("round {round}\n");
        a.log_writer(&id).append(line.as_bytes()).unwrap();
        job.finish(
            hookrunner::job::Outcome {
                exit_code: Some(0),
                ..hookrunner::job::Outcome::unrun(Status::Succeeded, None)
            },
            hookrunner::job::now_ms(),
        )
        .unwrap();
        // Not waited for: the next reads through the same handle see it all the same.
        drop(a.finish(&job, hookrunner::store::Durability::Os));
        assert_eq!(status(&a, &id).await, Status::Succeeded, "round {round}");
        assert_eq!(a.read_log(&id, 0).await.unwrap(), line.as_bytes());
    }
}
