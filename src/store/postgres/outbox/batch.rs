//! One batch of the outbox as one statement, however many items it holds, with no transaction
//! around it: every output row in one `INSERT`, every end in one fenced `UPDATE` that also gives
//! back the duplicate keys of the jobs that did not succeed; then, only when some end was not
//! taken, one look at what the store holds instead.

use std::collections::{HashMap, HashSet};

use super::super::rows::Ending;
use super::super::Cached;
use super::Item;
use crate::store::Durability;

/// The whole batch in one statement, so one commit, with no transaction around it: every
/// output row (`$11`-`$13`; a row already written, by a try whose commit went unheard, stays as
/// it is), and every end, fenced: a job is ended only while it is `running` here (`$10`), or
/// still `queued` (it ended before it ran). A job that did not succeed gives its duplicate key
/// back, so a redelivery runs again. Answers the ids it ended. The output and the ends commit
/// together, so no reader sees a job's end before the output it printed.
const WRITE_BATCH: &str = "WITH output AS ( \
         INSERT INTO job_output (job_id, start, data) \
         SELECT * FROM unnest($11::text[], $12::bigint[], $13::bytea[]) \
         ON CONFLICT DO NOTHING), \
     ended AS ( \
         UPDATE jobs SET status = e.status, finished_ms = e.finished_ms, \
             exit_code = e.exit_code, signal = e.signal, error = e.error, \
             duration_ms = e.duration_ms, stdout = e.stdout, stderr = e.stderr \
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::integer[], \
                     $6::text[], $7::bigint[], $8::text[], $9::text[]) \
             AS e(id, status, finished_ms, exit_code, signal, error, duration_ms, stdout, stderr) \
         WHERE jobs.id = e.id \
           AND ((jobs.status = 'running' AND jobs.instance = $10) OR jobs.status = 'queued') \
         RETURNING jobs.id, jobs.status), \
     given_back AS ( \
         DELETE FROM dedupe WHERE job_id IN (SELECT id FROM ended WHERE status <> 'succeeded')) \
     SELECT id FROM ended";

/// What the store holds for the ends the batch could not record.
const RECORDED: &str = "SELECT id, status, finished_ms FROM jobs WHERE id = ANY($1)";

/// A batch's items as the columns of its statements.
#[derive(Default)]
pub(super) struct Batch<'a> {
    output_job_ids: Vec<&'a str>,
    output_starts: Vec<i64>,
    output_data: Vec<&'a [u8]>,
    /// One end per job; a second end of a job in the same batch is only checked (below), as
    /// one statement per item would have found it.
    ends: Vec<(String, Ending)>,
    repeated: Vec<(String, Ending)>,
    /// Some end must be on the disk when the batch commits.
    pub durable: bool,
    /// The output rows and ends it holds.
    pub writes: u64,
}

/// An end the store did not take from this batch: what was handed over, and what it holds.
#[derive(Debug, PartialEq)]
pub(super) struct Unrecorded<'a> {
    pub id: &'a str,
    pub status: &'static str,
    /// The status recorded, if the job is kept.
    pub recorded: Option<String>,
}

impl<'a> Batch<'a> {
    pub fn of(items: &'a [Item]) -> Batch<'a> {
        let mut batch = Batch::default();
        let mut ended = HashSet::new();
        for item in items {
            match item {
                Item::Output {
                    job_id,
                    start,
                    data,
                } => {
                    batch.output_job_ids.push(job_id);
                    batch.output_starts.push(*start);
                    batch.output_data.push(data);
                    batch.writes += 1;
                }
                Item::Finish {
                    job, durability, ..
                } => {
                    batch.durable |= *durability == Durability::Disk;
                    batch.writes += 1;
                    let Some(ending) = Ending::of(job) else {
                        continue;
                    };
                    let id = job.id.to_string();
                    if ended.insert(id.clone()) {
                        batch.ends.push((id, ending));
                    } else {
                        batch.repeated.push((id, ending));
                    }
                }
                Item::Flush { .. } => {}
            }
        }
        batch
    }

    /// Whether it holds nothing to write.
    pub fn is_empty(&self) -> bool {
        self.output_job_ids.is_empty() && self.ends.is_empty() && self.repeated.is_empty()
    }

    /// Writes the batch through `client` (whose connection commits as durably as the batch
    /// needs) for the instance `instance`; answers whether some job's end is recorded now (by
    /// this try or an earlier one whose commit went unheard).
    pub async fn write(
        &self,
        client: &deadpool_postgres::Client,
        instance: &str,
    ) -> Result<bool, tokio_postgres::Error> {
        let ended = self.write_all(client, instance).await?;
        let unchecked = self.unrecorded(&ended);
        let mut recorded_before = false;
        if !unchecked.is_empty() {
            let ids: Vec<&str> = unchecked.iter().map(|(id, _)| *id).collect();
            let found = Cached(client).query(RECORDED, &[&ids]).await?;
            let found: HashMap<String, (String, Option<i64>)> = found
                .iter()
                .map(|row| (row.get(0), (row.get(1), row.get(2))))
                .collect();
            let surprises = surprises(&unchecked, &found);
            // An end held as handed over was recorded by an earlier try, unheard.
            recorded_before = surprises.len() < unchecked.len();
            for end in surprises {
                tracing::warn!(
                    job_id = end.id,
                    recorded = end.recorded.as_deref().unwrap_or("nothing"),
                    status = end.status,
                    "a job's end was not recorded: the store already holds another (this instance's lease may have run out)"
                );
            }
        }
        Ok(!ended.is_empty() || recorded_before)
    }

    /// The output rows and the ends, in one statement; the ids of the jobs whose end it
    /// recorded.
    async fn write_all(
        &self,
        client: &deadpool_postgres::Client,
        instance: &str,
    ) -> Result<HashSet<String>, tokio_postgres::Error> {
        let ends = &self.ends;
        let ids: Vec<&str> = ends.iter().map(|(id, _)| id.as_str()).collect();
        let statuses: Vec<&str> = ends.iter().map(|(_, e)| e.status).collect();
        let finished_ms: Vec<i64> = ends.iter().map(|(_, e)| e.finished_ms).collect();
        let exit_codes: Vec<Option<i32>> = ends.iter().map(|(_, e)| e.exit_code).collect();
        let signals: Vec<Option<i32>> = ends.iter().map(|(_, e)| e.signal).collect();
        let errors: Vec<Option<&str>> = ends.iter().map(|(_, e)| e.error.as_deref()).collect();
        let durations: Vec<Option<i64>> = ends.iter().map(|(_, e)| e.duration_ms).collect();
        let stdouts: Vec<Option<&str>> = ends.iter().map(|(_, e)| e.stdout.as_deref()).collect();
        let stderrs: Vec<Option<&str>> = ends.iter().map(|(_, e)| e.stderr.as_deref()).collect();
        let rows = Cached(client)
            .query(
                WRITE_BATCH,
                &[
                    &ids,
                    &statuses,
                    &finished_ms,
                    &exit_codes,
                    &signals,
                    &errors,
                    &durations,
                    &stdouts,
                    &stderrs,
                    &instance,
                    &self.output_job_ids,
                    &self.output_starts,
                    &self.output_data,
                ],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The ends not in `recorded`, with the status and time each was handed over with.
    fn unrecorded(&self, recorded: &HashSet<String>) -> Vec<(&str, &Ending)> {
        let first = self.ends.iter().filter(|(id, _)| !recorded.contains(id));
        first
            .chain(&self.repeated)
            .map(|(id, ending)| (id.as_str(), ending))
            .collect()
    }
}

/// Of the ends the store did not take, those it holds another end for: an end it already
/// holds as handed over was written by an earlier try whose commit went unheard.
fn surprises<'a>(
    unrecorded: &[(&'a str, &Ending)],
    found: &HashMap<String, (String, Option<i64>)>,
) -> Vec<Unrecorded<'a>> {
    unrecorded
        .iter()
        .filter_map(|(id, ending)| {
            let recorded = found.get(*id);
            let same = recorded.is_some_and(|(status, finished_ms)| {
                status == ending.status && *finished_ms == Some(ending.finished_ms)
            });
            (!same).then(|| Unrecorded {
                id,
                status: ending.status,
                recorded: recorded.map(|(status, _)| status.clone()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Job, JobId, Outcome, Status};
    use tokio::sync::oneshot;

    fn finish(job: &Job, status: Status, durability: Durability) -> Item {
        let mut job = job.clone();
        job.finish(Outcome::unrun(status, None), 7).unwrap();
        handed(job, durability)
    }

    fn handed(job: Job, durability: Durability) -> Item {
        Item::Finish {
            job: Box::new(job),
            durability,
            reply: oneshot::channel().0,
        }
    }

    fn output(job: &Job, start: i64) -> Item {
        Item::Output {
            job_id: job.id.to_string(),
            start,
            data: b"out".to_vec(),
        }
    }

    fn queued() -> Job {
        Job::queued(JobId::generate(), "deploy".into(), "r".into(), None, 1)
    }

    #[test]
    fn a_batch_becomes_columns_with_one_end_per_job() {
        let (a, b) = (queued(), queued());
        // (items, output rows, ends, repeated, durable, writes)
        let cases = [
            (vec![], 0, 0, 0, false, 0),
            (vec![output(&a, 0), output(&a, 3)], 2, 0, 0, false, 2),
            (
                vec![output(&a, 0), finish(&a, Status::Failed, Durability::Os)],
                1,
                1,
                0,
                false,
                2,
            ),
            (
                vec![
                    finish(&a, Status::Cancelled, Durability::Os),
                    finish(&b, Status::Failed, Durability::Disk),
                    finish(&a, Status::Interrupted, Durability::Os),
                ],
                0,
                2,
                1,
                true,
                3,
            ),
            // A job handed over unfinished has no end to write, but counts as before.
            (
                vec![
                    handed(a.clone(), Durability::Os),
                    Item::Flush {
                        reply: oneshot::channel().0,
                    },
                ],
                0,
                0,
                0,
                false,
                1,
            ),
        ];
        for (number, (items, outputs, ends, repeated, durable, writes)) in
            cases.into_iter().enumerate()
        {
            let batch = Batch::of(&items);
            let found = (
                batch.output_job_ids.len(),
                batch.output_starts.len(),
                batch.output_data.len(),
                batch.ends.len(),
                batch.repeated.len(),
                batch.durable,
                batch.writes,
            );
            let expected = (outputs, outputs, outputs, ends, repeated, durable, writes);
            assert_eq!(found, expected, "case {number}");
        }
    }

    #[test]
    fn only_ends_the_store_holds_otherwise_are_surprises() {
        let (a, b, c) = (queued(), queued(), queued());
        let items = [
            finish(&a, Status::Failed, Durability::Os),
            finish(&b, Status::Cancelled, Durability::Os),
            finish(&c, Status::Failed, Durability::Os),
            finish(&a, Status::Interrupted, Durability::Os),
        ];
        let batch = Batch::of(&items);
        let (a, b, c) = (a.id.as_str(), b.id.as_str(), c.id.as_str());
        let recorded: HashSet<String> = [a.to_string()].into();
        let unrecorded = batch.unrecorded(&recorded);
        let ids: Vec<&str> = unrecorded.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [b, c, a], "the ends not taken, then the repeated one");
        // (what the store holds, the surprises)
        let row = |status: &str, finished_ms| (status.to_string(), finished_ms);
        let cases = [
            (vec![], vec![(b, None), (c, None), (a, None)]),
            (
                // `b` as handed over (an earlier try committed unheard), `c` ended elsewhere.
                vec![
                    (a, row("failed", Some(7))),
                    (b, row("cancelled", Some(7))),
                    (c, row("interrupted", Some(9))),
                ],
                vec![(c, Some("interrupted")), (a, Some("failed"))],
            ),
            (
                vec![
                    (a, row("interrupted", Some(7))),
                    (b, row("cancelled", Some(8))),
                    (c, row("failed", Some(7))),
                ],
                vec![(b, Some("cancelled"))],
            ),
        ];
        for (number, (held, expected)) in cases.into_iter().enumerate() {
            let found = held
                .into_iter()
                .map(|(id, row)| (id.to_string(), row))
                .collect();
            let surprises: Vec<(&str, Option<String>)> = surprises(&unrecorded, &found)
                .into_iter()
                .map(|end| (end.id, end.recorded))
                .collect();
            let expected: Vec<(&str, Option<String>)> = expected
                .into_iter()
                .map(|(id, recorded)| (id, recorded.map(str::to_string)))
                .collect();
            assert_eq!(surprises, expected, "case {number}");
        }
    }
}
