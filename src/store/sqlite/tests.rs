//! The store against real SQLite files in temporary directories.

use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::queries;
use super::rows::{now_ms, DATABASE_FILE, LOGS_DIR};
use super::rows::{JobRecord, JobUpdate, Rows as Store};
use super::writer::{Command, Write};
use super::{schema, StoreError};
use crate::job::{JobId, Status};
use crate::store::{Committed, Durability, NewNotification, StoreStats};
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

fn open_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn job(hook: &str, status: Status) -> JobRecord {
    JobRecord {
        id: JobId::generate(),
        hook: hook.to_string(),
        request_id: "request-1".to_string(),
        status,
        dedupe_key: None,
        created_ms: now_ms(),
        started_ms: None,
        instance: None,
        attempt: 1,
        attempts: 1,
        next_attempt_ms: None,
        finished_ms: None,
        exit_code: None,
        signal: None,
        error: None,
        duration_ms: None,
        command: r#"{"argv":["echo","hello"]}"#.to_string(),
        stdout: None,
        stderr: None,
        notify: false,
        approval_until_ms: None,
        announce_wait: false,
    }
}

async fn insert_all(store: &Store, records: &[JobRecord]) {
    for record in records {
        store
            .insert(record.clone(), Durability::Disk)
            .await
            .unwrap();
    }
}

fn ids(records: &[JobRecord]) -> Vec<JobId> {
    records.iter().map(|record| record.id.clone()).collect()
}

/// Holds the writer until the returned sender is dropped, so the commands sent meanwhile are
/// waiting together when it resumes.
fn pause(store: &Store) -> mpsc::Sender<()> {
    let (resume, paused) = mpsc::channel();
    store.send(Command::Pause { resume: paused });
    resume
}

#[tokio::test]
async fn an_inserted_job_reads_back_with_every_field() {
    let (_dir, store) = open_store();
    let record = JobRecord {
        dedupe_key: Some("main@abc123".to_string()),
        started_ms: Some(1_700_000_000_100),
        finished_ms: Some(1_700_000_000_900),
        exit_code: Some(3),
        signal: Some(9),
        error: Some("it failed".to_string()),
        duration_ms: Some(800),
        command: r#"{"argv":["deploy","--ref","main"],"env":{"A":"1"},"n":1.5}"#.to_string(),
        stdout: Some("out ✓\n".to_string()),
        stderr: Some(String::new()),
        ..job("deploy", Status::Failed)
    };
    store
        .insert(record.clone(), Durability::Disk)
        .await
        .unwrap();

    assert_eq!(store.get(&record.id).await.unwrap(), Some(record));
    assert_eq!(store.get(&JobId::generate()).await.unwrap(), None);
}

#[tokio::test]
async fn every_status_round_trips() {
    let (_dir, store) = open_store();
    for status in Status::ALL {
        let record = job("deploy", status);
        store
            .insert(record.clone(), Durability::Disk)
            .await
            .unwrap();
        assert_eq!(store.get(&record.id).await.unwrap().unwrap().status, status);
    }
}

#[tokio::test]
async fn an_awaited_insert_is_on_disk_for_another_connection() {
    let (dir, store) = open_store();
    let record = job("deploy", Status::Queued);
    store
        .insert(record.clone(), Durability::Disk)
        .await
        .unwrap();

    let other = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    let hook: String = other
        .query_row(
            "SELECT hook FROM jobs WHERE id = ?1",
            [record.id.as_str()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(hook, "deploy");
    let journal_mode: String = other
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(journal_mode, "wal");
}

#[tokio::test]
async fn a_burst_of_inserts_shares_a_few_commits() {
    let (_dir, store) = open_store();
    let records: Vec<JobRecord> = (0..1000).map(|_| job("deploy", Status::Queued)).collect();
    let committed: Vec<Committed> = records
        .iter()
        .map(|r| store.insert(r.clone(), Durability::Disk))
        .collect();
    for insert in committed {
        insert.await.unwrap();
    }

    let stored = store.list(None, None, None, 5000).await.unwrap();
    assert_eq!(stored.len(), 1000);
    let stats = store.stats();
    assert!(stats.commits < 200, "{stats:?}");
    assert_eq!(stats.writes, 1000);
}

#[tokio::test]
async fn a_full_queue_is_committed_in_batches_of_at_most_512() {
    let (_dir, store) = open_store();
    let resume = pause(&store);
    let committed: Vec<Committed> = (0..1000)
        .map(|_| store.insert(job("deploy", Status::Queued), Durability::Disk))
        .collect();
    drop(resume);
    for insert in committed {
        insert.await.unwrap();
    }
    assert_eq!(
        store.stats(),
        StoreStats {
            commits: 2,
            synced: 2,
            writes: 1000
        }
    );
}

#[tokio::test]
async fn a_read_sees_the_writes_enqueued_before_it() {
    let (_dir, store) = open_store();
    let record = job("deploy", Status::Queued);
    drop(store.insert(record.clone(), Durability::Disk));
    assert_eq!(store.get(&record.id).await.unwrap(), Some(record));
}

#[tokio::test]
async fn updates_move_a_job_through_its_life_in_order() {
    let (_dir, store) = open_store();
    let record = job("deploy", Status::Queued);
    // Neither the insert nor the first update is awaited: order alone must hold.
    drop(store.insert(record.clone(), Durability::Disk));
    drop(store.update(
        &record.id,
        JobUpdate::Started {
            at_ms: 1000,
            instance: "web-1".into(),
        },
        Durability::Disk,
    ));
    let started = store.get(&record.id).await.unwrap().unwrap();
    assert_eq!(started.status, Status::Running);
    assert_eq!(started.started_ms, Some(1000));
    assert_eq!(started.finished_ms, None);

    let finished = JobUpdate::Finished {
        status: Status::Succeeded,
        at_ms: 1800,
        exit_code: Some(0),
        signal: None,
        error: None,
        duration_ms: Some(800),
        stdout: Some("deployed\n".to_string()),
        stderr: Some("warning\n".to_string()),
    };
    store
        .update(&record.id, finished, Durability::Disk)
        .await
        .unwrap();
    let expected = JobRecord {
        status: Status::Succeeded,
        started_ms: Some(1000),
        instance: Some("web-1".into()),
        finished_ms: Some(1800),
        exit_code: Some(0),
        duration_ms: Some(800),
        stdout: Some("deployed\n".to_string()),
        stderr: Some("warning\n".to_string()),
        ..record.clone()
    };
    assert_eq!(store.get(&record.id).await.unwrap(), Some(expected));
}

fn finished_ok(at_ms: i64) -> JobUpdate {
    JobUpdate::Finished {
        status: Status::Succeeded,
        at_ms,
        exit_code: Some(0),
        signal: None,
        error: None,
        duration_ms: Some(5),
        stdout: Some("done\n".to_string()),
        stderr: Some(String::new()),
    }
}

#[tokio::test]
async fn a_job_inserted_started_and_finished_in_one_batch_is_written_once() {
    let (_dir, store) = open_store();
    let record = job("deploy", Status::Queued);
    let other = job("deploy", Status::Queued);
    let resume = pause(&store);
    let inserted = store.insert(record.clone(), Durability::Disk);
    let other_inserted = store.insert(other.clone(), Durability::Disk);
    let started = store.update(
        &record.id,
        JobUpdate::Started {
            at_ms: 1000,
            instance: "web-1".into(),
        },
        Durability::Disk,
    );
    let failed = JobUpdate::Finished {
        status: Status::Failed,
        at_ms: 1005,
        exit_code: None,
        signal: Some(15),
        error: Some("killed".to_string()),
        duration_ms: Some(5),
        stdout: Some("done\n".to_string()),
        stderr: Some(String::new()),
    };
    let finished = store.update(&record.id, failed, Durability::Disk);
    drop(resume);

    inserted.await.unwrap();
    other_inserted.await.unwrap();
    started.await.unwrap();
    finished.await.unwrap();
    assert_eq!(
        store.stats(),
        StoreStats {
            commits: 1,
            synced: 1,
            writes: 2
        }
    );
    let expected = JobRecord {
        status: Status::Failed,
        started_ms: Some(1000),
        instance: Some("web-1".into()),
        finished_ms: Some(1005),
        signal: Some(15),
        error: Some("killed".to_string()),
        duration_ms: Some(5),
        stdout: Some("done\n".to_string()),
        stderr: Some(String::new()),
        ..record.clone()
    };
    assert_eq!(store.get(&record.id).await.unwrap(), Some(expected));
    assert_eq!(store.get(&other.id).await.unwrap(), Some(other));
}

#[tokio::test]
async fn a_commit_fsyncs_only_when_one_of_its_writes_asks_for_the_disk() {
    let (_dir, store) = open_store();
    let quiet = job("deploy", Status::Queued);
    store.insert(quiet.clone(), Durability::Os).await.unwrap();
    store
        .update(&quiet.id, finished_ok(5), Durability::Os)
        .await
        .unwrap();
    assert_eq!(
        store.stats(),
        StoreStats {
            commits: 2,
            synced: 0,
            writes: 2
        }
    );

    // One write that asks for the disk makes its whole batch fsync, folded or not.
    let resume = pause(&store);
    let loud = job("deploy", Status::Queued);
    let inserted = store.insert(loud.clone(), Durability::Os);
    let started = store.update(
        &loud.id,
        JobUpdate::Started {
            at_ms: 1,
            instance: "web-1".into(),
        },
        Durability::Disk,
    );
    drop(resume);
    inserted.await.unwrap();
    started.await.unwrap();
    store
        .insert(job("deploy", Status::Queued), Durability::Os)
        .await
        .unwrap();
    assert_eq!(
        store.stats(),
        StoreStats {
            commits: 4,
            synced: 1,
            writes: 4
        }
    );
    // What was committed without an fsync is read back all the same.
    assert_eq!(
        store.get(&quiet.id).await.unwrap().unwrap().status,
        Status::Succeeded
    );
    assert_eq!(
        store.get(&loud.id).await.unwrap().unwrap().status,
        Status::Running
    );
}

#[tokio::test]
async fn updates_are_not_folded_across_another_kind_of_write() {
    let (_dir, store) = open_store();
    let record = job("deploy", Status::Queued);
    let resume = pause(&store);
    let inserted = store.insert(record.clone(), Durability::Disk);
    let (reply, checked) = oneshot::channel();
    store.send(Command::Write(Write::CheckWritable { reply }));
    let started = store.update(
        &record.id,
        JobUpdate::Started {
            at_ms: 1000,
            instance: "web-1".into(),
        },
        Durability::Disk,
    );
    drop(resume);

    inserted.await.unwrap();
    checked.await.unwrap().unwrap();
    started.await.unwrap();
    assert_eq!(
        store.stats(),
        StoreStats {
            commits: 1,
            synced: 1,
            writes: 3
        }
    );
    let stored = store.get(&record.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Running);
    assert_eq!(stored.started_ms, Some(1000));
}

#[tokio::test]
async fn updating_an_unknown_job_is_an_error() {
    let (_dir, store) = open_store();
    let id = JobId::generate();
    let result = store
        .update(
            &id,
            JobUpdate::Started {
                at_ms: 1,
                instance: "web-1".into(),
            },
            Durability::Disk,
        )
        .await;
    assert!(matches!(result, Err(StoreError::UnknownJob(unknown)) if unknown == id));
}

#[tokio::test]
async fn a_write_that_fails_on_its_own_leaves_the_rest_of_its_batch() {
    let (_dir, store) = open_store();
    let first = job("deploy", Status::Queued);
    let last = job("deploy", Status::Queued);
    let resume = pause(&store);
    let inserted_first = store.insert(first.clone(), Durability::Disk);
    let duplicate = store.insert(first.clone(), Durability::Disk);
    let inserted_last = store.insert(last.clone(), Durability::Disk);
    drop(resume);

    inserted_first.await.unwrap();
    assert!(matches!(duplicate.await, Err(StoreError::Database(_))));
    inserted_last.await.unwrap();
    assert_eq!(store.stats().commits, 1);
    assert_eq!(
        ids(&store.list(None, None, None, 10).await.unwrap()),
        [last.id, first.id]
    );
    store.flush().await.unwrap();
}

#[tokio::test]
async fn a_failed_transaction_fails_its_whole_batch_and_the_store_goes_on() {
    let (dir, store) = open_store();
    // A trigger that rolls back the whole transaction, as SQLite does on some I/O errors.
    rusqlite::Connection::open(dir.path().join(DATABASE_FILE))
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER explode BEFORE INSERT ON jobs WHEN NEW.hook = 'explode' \
             BEGIN SELECT RAISE(ROLLBACK, 'simulated failure'); END",
        )
        .unwrap();
    let before = job("deploy", Status::Queued);
    let after = job("deploy", Status::Queued);
    let resume = pause(&store);
    let batch = [
        store.insert(before.clone(), Durability::Disk),
        store.insert(job("explode", Status::Queued), Durability::Disk),
        store.insert(after.clone(), Durability::Disk),
    ];
    drop(resume);
    for insert in batch {
        assert!(matches!(insert.await, Err(StoreError::Commit(_))));
    }
    assert!(matches!(store.flush().await, Err(StoreError::Commit(_))));
    assert_eq!(store.get(&before.id).await.unwrap(), None);
    assert_eq!(store.get(&after.id).await.unwrap(), None);

    let later = job("deploy", Status::Queued);
    store.insert(later.clone(), Durability::Disk).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.get(&later.id).await.unwrap(), Some(later));
}

#[tokio::test]
async fn a_commit_that_fails_is_rolled_back_with_the_updates_folded_into_it() {
    let (dir, store) = open_store();
    // A deferred foreign key is checked at COMMIT, whose failure leaves the transaction open.
    rusqlite::Connection::open(dir.path().join(DATABASE_FILE))
        .unwrap()
        .execute_batch(
            "CREATE TABLE parent (id TEXT PRIMARY KEY); \
             CREATE TABLE child (parent TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED); \
             CREATE TRIGGER orphan AFTER INSERT ON jobs WHEN NEW.hook = 'orphan' \
             BEGIN INSERT INTO child VALUES ('missing'); END",
        )
        .unwrap();
    let doomed = job("orphan", Status::Queued);
    let resume = pause(&store);
    let inserted = store.insert(doomed.clone(), Durability::Os);
    let started = store.update(
        &doomed.id,
        JobUpdate::Started {
            at_ms: 1,
            instance: "web-1".into(),
        },
        Durability::Disk,
    );
    drop(resume);
    assert!(matches!(inserted.await, Err(StoreError::Commit(_))));
    assert!(matches!(started.await, Err(StoreError::Commit(_))));
    assert_eq!(store.get(&doomed.id).await.unwrap(), None);

    let later = job("deploy", Status::Queued);
    store.insert(later.clone(), Durability::Disk).await.unwrap();
    assert_eq!(store.get(&later.id).await.unwrap(), Some(later));
}

#[tokio::test]
async fn list_is_newest_first_with_filters_and_a_limit() {
    let (_dir, store) = open_store();
    let records = [
        job("deploy", Status::Succeeded),
        job("backup", Status::Failed),
        job("deploy", Status::Failed),
        job("deploy", Status::Queued),
        job("backup", Status::Succeeded),
    ];
    insert_all(&store, &records).await;
    let [deploy_1, backup_1, deploy_2, deploy_3, backup_2] = ids(&records).try_into().unwrap();

    let cases: [(Option<&str>, Option<Status>, usize, Vec<JobId>); 6] = [
        (
            None,
            None,
            10,
            vec![
                backup_2.clone(),
                deploy_3.clone(),
                deploy_2.clone(),
                backup_1.clone(),
                deploy_1.clone(),
            ],
        ),
        (None, None, 2, vec![backup_2.clone(), deploy_3.clone()]),
        (
            Some("deploy"),
            None,
            10,
            vec![deploy_3.clone(), deploy_2.clone(), deploy_1.clone()],
        ),
        (
            None,
            Some(Status::Failed),
            10,
            vec![deploy_2.clone(), backup_1.clone()],
        ),
        (
            Some("backup"),
            Some(Status::Succeeded),
            10,
            vec![backup_2.clone()],
        ),
        (Some("nothing"), None, 10, vec![]),
    ];
    for (hook, status, limit, expected) in cases {
        let listed = store.list(hook, status, None, limit).await.unwrap();
        assert_eq!(ids(&listed), expected, "{hook:?} {status:?} {limit}");
    }
}

#[tokio::test]
async fn recover_interrupts_running_jobs_and_returns_queued_ones_in_order() {
    let (_dir, store) = open_store();
    let running = JobRecord {
        started_ms: Some(now_ms() - 5000),
        ..job("deploy", Status::Running)
    };
    let records = [
        job("deploy", Status::Queued),
        running.clone(),
        job("deploy", Status::Succeeded),
        job("backup", Status::Queued),
    ];
    insert_all(&store, &records).await;
    let before = now_ms();

    let queued = store.recover().await.unwrap();
    assert_eq!(queued, [records[0].clone(), records[3].clone()]);

    let interrupted = store.get(&running.id).await.unwrap().unwrap();
    assert_eq!(interrupted.status, Status::Interrupted);
    assert_eq!(
        interrupted.error.as_deref(),
        Some(queries::INTERRUPTED_ERROR)
    );
    assert!(interrupted.finished_ms.unwrap() >= before);
    assert!(interrupted.duration_ms.unwrap() >= 5000);
    assert_eq!(
        store.get(&records[2].id).await.unwrap().as_ref(),
        Some(&records[2])
    );
}

#[tokio::test]
async fn succeeded_keys_lists_the_dedupe_keys_of_succeeded_jobs() {
    let (_dir, store) = open_store();
    let keyed = |hook: &str, status, key: Option<&str>| JobRecord {
        dedupe_key: key.map(str::to_string),
        ..job(hook, status)
    };
    let records = [
        keyed("deploy", Status::Succeeded, Some("abc")),
        keyed("deploy", Status::Failed, Some("def")),
        keyed("deploy", Status::Succeeded, None),
        keyed("backup", Status::Succeeded, Some("nightly")),
    ];
    insert_all(&store, &records).await;
    assert_eq!(
        store.succeeded_keys().await.unwrap(),
        [
            (
                "deploy".to_string(),
                "abc".to_string(),
                records[0].id.clone()
            ),
            (
                "backup".to_string(),
                "nightly".to_string(),
                records[3].id.clone()
            ),
        ]
    );
}

#[tokio::test]
async fn prune_by_age_deletes_old_finished_jobs_and_their_logs() {
    let (_dir, store) = open_store();
    let old = |status| JobRecord {
        created_ms: now_ms() - 2 * 3_600_000,
        ..job("deploy", status)
    };
    let records = [
        old(Status::Succeeded),
        old(Status::Failed),
        old(Status::Queued),
        old(Status::Running),
        job("deploy", Status::Succeeded),
    ];
    insert_all(&store, &records).await;
    // The old failed job has no log: a missing file is no error.
    for index in [0, 2, 3, 4] {
        std::fs::write(store.log_path(&records[index].id), "log\n").unwrap();
    }

    let deleted = store.prune(Duration::from_secs(3600), 100).await.unwrap();
    assert_eq!(deleted, 2);
    let kept = store.list(None, None, None, 10).await.unwrap();
    assert_eq!(
        ids(&kept),
        ids(&[records[4].clone(), records[3].clone(), records[2].clone()])
    );
    assert!(!store.log_path(&records[0].id).exists());
    for index in [2, 3, 4] {
        assert!(store.log_path(&records[index].id).exists(), "{index}");
    }
}

#[tokio::test]
async fn prune_by_count_keeps_the_newest_jobs_and_every_unfinished_one() {
    let (_dir, store) = open_store();
    let records = [
        job("deploy", Status::Succeeded),
        job("deploy", Status::Queued),
        job("deploy", Status::Failed),
        job("deploy", Status::Running),
        job("deploy", Status::Succeeded),
        job("deploy", Status::Cancelled),
    ];
    insert_all(&store, &records).await;
    for record in &records {
        std::fs::write(store.log_path(&record.id), "log\n").unwrap();
    }

    let deleted = store.prune(Duration::from_secs(86_400), 3).await.unwrap();
    assert_eq!(deleted, 2);
    let kept = store.list(None, None, None, 10).await.unwrap();
    let expected = [5, 4, 3, 1].map(|index| records[index].id.clone());
    assert_eq!(ids(&kept), expected);
    for (index, record) in records.iter().enumerate() {
        let should_exist = ![0, 2].contains(&index);
        assert_eq!(store.log_path(&record.id).exists(), should_exist, "{index}");
    }
    assert_eq!(
        store.prune(Duration::from_secs(86_400), 3).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn a_reopened_store_has_the_jobs() {
    let (dir, store) = open_store();
    let record = job("deploy", Status::Queued);
    store
        .insert(record.clone(), Durability::Disk)
        .await
        .unwrap();
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(&record.id).await.unwrap(), Some(record));
}

#[tokio::test]
async fn writes_left_when_the_last_store_is_dropped_are_still_committed() {
    let (dir, store) = open_store();
    let records: Vec<JobRecord> = (0..50).map(|_| job("deploy", Status::Queued)).collect();
    // Fire-and-forget writes that ask only for the OS: the writer is gathering them when the
    // last handle goes.
    for record in &records {
        drop(store.clone().insert(record.clone(), Durability::Os));
    }
    drop(store);

    let other = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    let count = || -> i64 {
        other
            .query_row("SELECT count(*) FROM jobs", [], |row| row.get(0))
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() < 50 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(count(), 50);
}

#[tokio::test]
async fn check_writable_and_flush_succeed_and_are_counted() {
    let (_dir, store) = open_store();
    assert_eq!(store.stats(), StoreStats::default());
    store.flush().await.unwrap();
    store.check_writable().await.unwrap();
    store
        .insert(job("deploy", Status::Queued), Durability::Disk)
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(
        store.stats(),
        StoreStats {
            commits: 2,
            synced: 2,
            writes: 2
        }
    );
}

#[tokio::test]
async fn the_state_directory_is_private_and_holds_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let store = Store::open(&state_dir).unwrap();
    for path in [state_dir.clone(), state_dir.join("logs")] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", path.display());
    }
    assert_eq!(store.state_dir(), state_dir);
    let id = JobId::generate();
    assert_eq!(
        store.log_path(&id),
        state_dir.join(format!("logs/{id}.log"))
    );
}

#[tokio::test]
async fn a_database_from_a_newer_hookrunner_is_refused() {
    let (dir, store) = open_store();
    drop(store);
    rusqlite::Connection::open(dir.path().join(DATABASE_FILE))
        .unwrap()
        .execute(
            "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    let result = Store::open(dir.path());
    assert!(matches!(
        result,
        Err(StoreError::NewerSchema {
            found: 99,
            known: schema::SCHEMA_VERSION
        })
    ));
}

#[tokio::test]
async fn durable_writes_are_refused_while_the_database_is_moved_away_and_go_on_once_it_is_back() {
    let (dir, store) = open_store();
    let database = dir.path().join(DATABASE_FILE);
    let aside = dir.path().join("aside.db");
    std::fs::rename(&database, &aside).unwrap();
    let refused = job("deploy", Status::Queued);
    let resume = pause(&store);
    let inserted = store.insert(refused.clone(), Durability::Disk);
    let started = store.update(
        &refused.id,
        JobUpdate::Started {
            at_ms: 1,
            instance: "web-1".into(),
        },
        Durability::Disk,
    );
    drop(resume);
    for answer in [inserted.await, started.await] {
        assert!(
            matches!(&answer, Err(StoreError::Replaced { path }) if *path == database),
            "{answer:?}"
        );
    }
    assert!(matches!(
        store.check_writable().await,
        Err(StoreError::Replaced { .. })
    ));

    std::fs::rename(&aside, &database).unwrap();
    let kept = job("deploy", Status::Queued);
    store.insert(kept.clone(), Durability::Disk).await.unwrap();
    store.check_writable().await.unwrap();
    drop(store);
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.get(&kept.id).await.unwrap(), Some(kept));
}

#[tokio::test]
async fn a_shared_state_directory_like_tmp_is_refused_and_left_open() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let result = Store::open(&shared);
    assert!(
        matches!(&result, Err(StoreError::SharedDir { path }) if *path == shared),
        "{result:?}"
    );
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o1777);
}

#[tokio::test]
async fn making_the_logs_private_does_not_follow_a_symbolic_link() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.txt");
    std::fs::write(&elsewhere, "not the store's\n").unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(state_dir.join(LOGS_DIR)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, state_dir.join("logs/link.log")).unwrap();
    Store::open(&state_dir).unwrap();
    let mode = std::fs::metadata(&elsewhere).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[tokio::test]
async fn a_first_start_that_cannot_open_the_database_leaves_no_empty_file_to_refuse_later() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where SQLite's write-ahead log must go: the first open fails after the
    // database file was created.
    let in_the_way = dir.path().join(format!("{DATABASE_FILE}-wal"));
    std::fs::create_dir(&in_the_way).unwrap();
    let result = Store::open(dir.path());
    assert!(result.is_err(), "{result:?}");
    std::fs::remove_dir(&in_the_way).unwrap();
    let reopened = Store::open(dir.path());
    assert!(reopened.is_ok(), "{reopened:?}");
}

#[tokio::test]
async fn a_burst_of_readiness_checks_shares_the_disk_probe() {
    let (_dir, store) = open_store();
    let probes = || store.counters.room_probes.load(Ordering::SeqCst);
    let checks = (0..50).map(|_| store.check_writable());
    for answer in futures_util::future::join_all(checks).await {
        answer.unwrap();
    }
    // The checks all arrive before a second probe could start: each writes and fsyncs 64 KiB,
    // which an unauthenticated burst of `/readyz` must not multiply.
    let shared = probes();
    assert!((1..=2).contains(&shared), "{shared} probes for 50 checks");
    // A check that arrives once they are done gets a probe of its own.
    store.check_writable().await.unwrap();
    assert_eq!(probes(), shared + 1);
}

fn notification(position: u32) -> NewNotification {
    NewNotification {
        position,
        target: "webhook".to_string(),
        route: "r".to_string(),
        created_ms: 1_000,
        expires_ms: 2_000,
        body: b"event".to_vec(),
        env: Vec::new(),
    }
}

#[tokio::test]
async fn a_database_made_by_schema_version_3_migrates_and_keeps_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATABASE_FILE);
    let finished = JobRecord {
        finished_ms: Some(1_700_000_000_900),
        exit_code: Some(1),
        ..job("deploy", Status::Failed)
    };
    let queued = JobRecord {
        next_attempt_ms: Some(1_700_000_001_000),
        attempt: 2,
        attempts: 3,
        ..job("deploy", Status::Queued)
    };
    {
        let mut old = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(schema::migrate(&mut old, 3).unwrap(), 0);
        for record in [&finished, &queued] {
            old.execute(
                "INSERT INTO jobs (id, hook, request_id, status, created_ms, finished_ms, \
                     exit_code, command, attempt, attempts, next_attempt_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                rusqlite::params![
                    record.id.as_str(),
                    record.hook,
                    record.request_id,
                    record.status.as_str(),
                    record.created_ms,
                    record.finished_ms,
                    record.exit_code,
                    record.command,
                    record.attempt,
                    record.attempts,
                    record.next_attempt_ms,
                ],
            )
            .unwrap();
        }
    }

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.get(&finished.id).await.unwrap(),
        Some(finished.clone())
    );
    assert_eq!(store.get(&queued.id).await.unwrap(), Some(queued.clone()));
    assert!(
        store.unannounced(10).await.unwrap().is_empty(),
        "a job from before notifications has none to announce"
    );
    store
        .announce(&finished.id, vec![notification(0)], false)
        .await
        .unwrap();
    assert_eq!(
        store
            .notifications(std::slice::from_ref(&finished.id))
            .await
            .unwrap()
            .len(),
        1
    );
    let version: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION.to_string());
}

#[tokio::test]
async fn the_notify_mark_survives_updates_folded_into_its_insert() {
    let (_dir, store) = open_store();
    let loud = JobRecord {
        notify: true,
        ..job("deploy", Status::Queued)
    };
    let quiet = job("deploy", Status::Queued);
    let resume = pause(&store);
    let mut written = Vec::new();
    for record in [&loud, &quiet] {
        written.push(store.insert(record.clone(), Durability::Os));
        let started = JobUpdate::Started {
            at_ms: 1_000,
            instance: "web-1".into(),
        };
        written.push(store.update(&record.id, started, Durability::Os));
        written.push(store.update(&record.id, finished_ok(1_005), Durability::Os));
    }
    drop(resume);
    for committed in written {
        committed.await.unwrap();
    }
    assert_eq!(store.stats().writes, 2, "the updates were folded");

    let unannounced = store.unannounced(10).await.unwrap();
    assert_eq!(ids(&unannounced), std::slice::from_ref(&loud.id));
    assert_eq!(
        (unannounced[0].status, unannounced[0].notify),
        (Status::Succeeded, true)
    );
}

#[tokio::test]
async fn an_announcement_that_fails_half_way_keeps_nothing_and_leaves_the_mark() {
    let (dir, store) = open_store();
    let record = JobRecord {
        notify: true,
        finished_ms: Some(1_000),
        ..job("deploy", Status::Failed)
    };
    store
        .insert(record.clone(), Durability::Disk)
        .await
        .unwrap();
    rusqlite::Connection::open(dir.path().join(DATABASE_FILE))
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse_second AFTER INSERT ON notifications WHEN NEW.position = 1 \
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .unwrap();

    // In one batch with another write, which goes on.
    let other = job("deploy", Status::Queued);
    let resume = pause(&store);
    let inserted = store.insert(other.clone(), Durability::Disk);
    let (reply, announced) = oneshot::channel();
    store.send(Command::Write(Write::Announce {
        job: record.id.clone(),
        notifications: vec![notification(0), notification(1)],
        wait: false,
        reply,
    }));
    drop(resume);

    assert!(announced.await.unwrap().is_err());
    inserted.await.unwrap();
    assert!(store
        .notifications(std::slice::from_ref(&record.id))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&store.unannounced(10).await.unwrap()),
        std::slice::from_ref(&record.id)
    );
    assert_eq!(store.get(&other.id).await.unwrap(), Some(other));
}

#[tokio::test]
async fn announcing_a_job_the_store_does_not_have_is_an_error() {
    let (_dir, store) = open_store();
    let id = JobId::generate();
    assert!(matches!(
        store.announce(&id, vec![notification(0)], false).await,
        Err(StoreError::UnknownJob(unknown)) if unknown == id
    ));
    assert_eq!(store.next_notification_due().await.unwrap(), None);
}

#[tokio::test]
async fn the_outbox_reads_only_its_indexes() {
    let (dir, store) = open_store();
    drop(store);
    let connection = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    let plan = |sql: &str| -> String {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        // Unbound parameters are NULL: the plan does not depend on them.
        let mut rows = statement.raw_query();
        let mut details = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            details.push(row.get::<_, String>(3).unwrap());
        }
        details.join("; ")
    };
    // The jobs still to be announced are few (they are announced as they end), so sorting them
    // costs little; the pending notifications may be many while a target is down.
    for (sql, index, sorts) in [
        (queries::UNANNOUNCED, "jobs_to_announce", true),
        (queries::DUE, "notifications_due", false),
        (queries::NEXT_DUE, "notifications_due", false),
    ] {
        let plan = plan(sql);
        assert!(plan.contains(&format!("USING INDEX {index}")), "{plan}");
        assert_eq!(plan.contains("TEMP B-TREE"), sorts, "{plan}");
    }
}

#[tokio::test]
async fn version_5_keeps_the_jobs_their_order_and_their_sequence_and_checks_the_new_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATABASE_FILE);
    let first = JobRecord {
        notify: true,
        finished_ms: Some(1_000),
        ..job("deploy", Status::Failed)
    };
    let second = job("deploy", Status::Queued);
    {
        let mut old = rusqlite::Connection::open(&path).unwrap();
        schema::migrate(&mut old, 4).unwrap();
        for record in [&first, &second] {
            insert_at_version_4(&old, record);
        }
        // A third job, since pruned: the sequence goes on after it.
        old.execute("DELETE FROM jobs WHERE seq = 2", []).unwrap();
        insert_at_version_4(&old, &second);
        old.execute("DELETE FROM jobs WHERE seq = 3", []).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(&first.id).await.unwrap(), Some(first.clone()));
    let ended: Vec<JobId> = store
        .unannounced(10)
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.id)
        .collect();
    assert_eq!(ended, std::slice::from_ref(&first.id), "its mark is kept");
    let awaiting = JobRecord {
        approval_until_ms: Some(5_000),
        announce_wait: true,
        ..job("deploy", Status::AwaitingApproval)
    };
    store
        .insert(awaiting.clone(), Durability::Disk)
        .await
        .unwrap();
    drop(store);

    // Checked as someone editing the file by hand would be (the store's connection skips it).
    let connection = rusqlite::Connection::open(&path).unwrap();
    let seq: i64 = connection
        .query_row(
            "SELECT seq FROM jobs WHERE id = ?1",
            [awaiting.id.as_str()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(seq, 4, "no seq is given twice");
    for (status, allowed) in [("rejected", true), ("expired", true), ("waiting", false)] {
        let changed = connection.execute(
            "UPDATE jobs SET status = ?1 WHERE id = ?2",
            [status, awaiting.id.as_str()],
        );
        assert_eq!(changed.is_ok(), allowed, "{status}: {changed:?}");
    }
}

/// Inserts `record` into a database at schema version 4.
fn insert_at_version_4(connection: &rusqlite::Connection, record: &JobRecord) {
    connection
        .execute(
            "INSERT INTO jobs (id, hook, request_id, status, created_ms, finished_ms, command, \
                 notify) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                record.id.as_str(),
                record.hook,
                record.request_id,
                record.status.as_str(),
                record.created_ms,
                record.finished_ms,
                record.command,
                record.notify,
            ],
        )
        .unwrap();
}
