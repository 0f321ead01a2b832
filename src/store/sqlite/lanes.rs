//! Scheduling as plain data: which waiting job starts next, per hook (`concurrency`) and overall
//! (`max_jobs`), in arrival order, none before it is due (a retry waits for its `next_attempt_at`).
//! No IO, no clocks (the time is passed in): the store applies what this decides.

use std::collections::{HashMap, VecDeque};

use crate::config::Concurrency;
use crate::job::JobId;

#[derive(Debug, Default)]
pub struct Lanes {
    lanes: HashMap<String, Lane>,
    /// Every waiting job, in arrival order across hooks.
    order: VecDeque<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    hook: String,
    id: JobId,
    /// Not to start before this instant (unix ms): a retry waiting for its next attempt. A job
    /// not yet due holds up nobody, not even the jobs of its own hook behind it.
    due_ms: Option<i64>,
}

#[derive(Debug)]
struct Lane {
    mode: Concurrency,
    running: Vec<JobId>,
    waiting: usize,
}

/// What admitting a job decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// The job waits its turn; `superseded` waiting jobs were dropped for it (`latest`, `replace`),
    /// and `cancel` running jobs must be cancelled (`replace`).
    Accepted {
        superseded: Vec<JobId>,
        cancel: Vec<JobId>,
    },
    /// `queue` mode and the hook's queue is full.
    QueueFull { waiting: usize },
}

impl Lanes {
    /// Jobs waiting, all hooks together.
    pub fn waiting(&self) -> usize {
        self.order.len()
    }

    pub fn admit(&mut self, hook: &str, mode: Concurrency, id: JobId) -> Admission {
        self.admit_due(hook, mode, id, None)
    }

    /// Like [`Lanes::admit`], for a job that may not start before `due_ms` (one recovered at a
    /// start while it waited for a retry).
    pub fn admit_due(
        &mut self,
        hook: &str,
        mode: Concurrency,
        id: JobId,
        due_ms: Option<i64>,
    ) -> Admission {
        let lane = self.lanes.entry(hook.to_string()).or_insert_with(|| Lane {
            mode,
            running: Vec::new(),
            waiting: 0,
        });
        // The newest config decides how this hook is scheduled from now on.
        lane.mode = mode;
        // An idle lane's first waiting job starts next, so it does not take a place in the queue:
        // `queue: 0` means "run when idle, refuse while busy".
        let starts_next = usize::from(lane.running.is_empty());
        let (superseded, cancel) = match mode {
            Concurrency::Queue { queue } if lane.waiting >= queue.saturating_add(starts_next) => {
                return Admission::QueueFull {
                    waiting: lane.waiting,
                };
            }
            Concurrency::Queue { .. } | Concurrency::Parallel { .. } => (Vec::new(), Vec::new()),
            Concurrency::Latest => (self.drop_waiting(hook), Vec::new()),
            Concurrency::Replace => {
                let superseded = self.drop_waiting(hook);
                (superseded, self.lanes[hook].running.clone())
            }
        };
        self.push(hook, id, due_ms);
        Admission::Accepted { superseded, cancel }
    }

    /// A running job goes back in line for its next attempt, due at `due_ms`, like a new trigger
    /// of its hook: behind the jobs already waiting (a `queue` takes it beyond its bound: it was
    /// accepted once). Under `latest` and `replace` a job of its hook already waiting is newer,
    /// and wins: then the retry is not queued, and this returns false.
    pub fn retry(&mut self, hook: &str, id: &JobId, due_ms: i64) -> bool {
        self.finished(hook, id);
        let Some(lane) = self.lanes.get(hook) else {
            return false;
        };
        if matches!(lane.mode, Concurrency::Latest | Concurrency::Replace) && lane.waiting > 0 {
            return false;
        }
        self.push(hook, id.clone(), Some(due_ms));
        true
    }

    /// When the first waiting job that is not due yet becomes due.
    pub fn next_due(&self, now_ms: i64) -> Option<i64> {
        self.order
            .iter()
            .filter_map(|waiting| waiting.due_ms)
            .filter(|due| *due > now_ms)
            .min()
    }

    fn push(&mut self, hook: &str, id: JobId, due_ms: Option<i64>) {
        if let Some(lane) = self.lanes.get_mut(hook) {
            lane.waiting += 1;
        }
        self.order.push_back(Waiting {
            hook: hook.to_string(),
            id,
            due_ms,
        });
    }

    /// Takes the jobs that may start at `now_ms`, at most `free` of them, oldest first, and marks
    /// them running.
    pub fn start_next(&mut self, mut free: usize, now_ms: i64) -> Vec<(String, JobId)> {
        let mut started = Vec::new();
        let mut index = 0;
        while free > 0 && index < self.order.len() {
            if self.order[index].due_ms.is_some_and(|due| due > now_ms) {
                index += 1;
                continue;
            }
            let hook = &self.order[index].hook;
            // Every waiting job's hook has a lane (`admit` makes it); a job without one waits.
            let Some(lane) = self.lanes.get_mut(hook) else {
                index += 1;
                continue;
            };
            let capacity = match lane.mode {
                Concurrency::Parallel { limit } => limit.unwrap_or(usize::MAX),
                _ => 1,
            };
            if lane.running.len() < capacity {
                let Some(Waiting { hook, id, .. }) = self.order.remove(index) else {
                    break;
                };
                lane.waiting = lane.waiting.saturating_sub(1);
                lane.running.push(id.clone());
                started.push((hook, id));
                free -= 1;
            } else {
                index += 1;
            }
        }
        started
    }

    /// A running job ended.
    pub fn finished(&mut self, hook: &str, id: &JobId) {
        if let Some(lane) = self.lanes.get_mut(hook) {
            lane.running.retain(|running| running != id);
        }
    }

    /// Takes a waiting job out of line (cancelled before it started). False if it was not waiting.
    pub fn remove_waiting(&mut self, id: &JobId) -> bool {
        let Some(index) = self.order.iter().position(|waiting| waiting.id == *id) else {
            return false;
        };
        let Some(Waiting { hook, .. }) = self.order.remove(index) else {
            return false;
        };
        if let Some(lane) = self.lanes.get_mut(&hook) {
            lane.waiting = lane.waiting.saturating_sub(1);
        }
        true
    }

    fn drop_waiting(&mut self, hook: &str) -> Vec<JobId> {
        let mut dropped = Vec::new();
        self.order.retain(|waiting| {
            let drop = waiting.hook == hook;
            if drop {
                dropped.push(waiting.id.clone());
            }
            !drop
        });
        if let Some(lane) = self.lanes.get_mut(hook) {
            lane.waiting = lane.waiting.saturating_sub(dropped.len());
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<JobId> {
        (0..n).map(|_| JobId::generate()).collect()
    }

    fn accepted(admission: Admission) -> (Vec<JobId>, Vec<JobId>) {
        match admission {
            Admission::Accepted { superseded, cancel } => (superseded, cancel),
            other => panic!("not accepted: {other:?}"),
        }
    }

    fn started(lanes: &mut Lanes, free: usize) -> Vec<JobId> {
        lanes
            .start_next(free, 0)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    #[test]
    fn queue_runs_one_at_a_time_in_order_and_bounds_its_queue() {
        let mut lanes = Lanes::default();
        let jobs = ids(4);
        let mode = Concurrency::Queue { queue: 2 };
        for id in &jobs[..2] {
            accepted(lanes.admit("q", mode, id.clone()));
        }
        assert_eq!(started(&mut lanes, 8), [jobs[0].clone()]);
        accepted(lanes.admit("q", mode, jobs[2].clone()));
        assert_eq!(
            lanes.admit("q", mode, jobs[3].clone()),
            Admission::QueueFull { waiting: 2 }
        );
        assert!(started(&mut lanes, 8).is_empty(), "one at a time");
        lanes.finished("q", &jobs[0]);
        assert_eq!(started(&mut lanes, 8), [jobs[1].clone()]);
    }

    #[test]
    fn a_queue_of_zero_runs_when_idle_and_refuses_while_busy() {
        let mut lanes = Lanes::default();
        let jobs = ids(3);
        let mode = Concurrency::Queue { queue: 0 };
        accepted(lanes.admit("q", mode, jobs[0].clone()));
        assert_eq!(started(&mut lanes, 8), [jobs[0].clone()]);
        assert_eq!(
            lanes.admit("q", mode, jobs[1].clone()),
            Admission::QueueFull { waiting: 0 }
        );
        lanes.finished("q", &jobs[0]);
        accepted(lanes.admit("q", mode, jobs[2].clone()));
        // Recovery admits with an unbounded queue; an idle lane must not overflow it.
        let unbounded = Concurrency::Queue { queue: usize::MAX };
        accepted(lanes.admit("r", unbounded, ids(1)[0].clone()));
    }

    #[test]
    fn parallel_respects_its_limit_and_the_global_one() {
        let mut lanes = Lanes::default();
        let jobs = ids(5);
        for id in &jobs {
            accepted(lanes.admit("p", Concurrency::Parallel { limit: Some(3) }, id.clone()));
        }
        assert_eq!(started(&mut lanes, 2), jobs[..2]);
        assert_eq!(started(&mut lanes, 8), jobs[2..3]);
        lanes.finished("p", &jobs[0]);
        assert_eq!(started(&mut lanes, 8), jobs[3..4]);
        assert_eq!(lanes.waiting(), 1);
    }

    #[test]
    fn latest_keeps_one_running_and_only_the_newest_waiting() {
        let mut lanes = Lanes::default();
        let jobs = ids(5);
        accepted(lanes.admit("l", Concurrency::Latest, jobs[0].clone()));
        assert_eq!(started(&mut lanes, 8), jobs[..1]);
        let mut superseded = Vec::new();
        for id in &jobs[1..] {
            superseded.extend(accepted(lanes.admit("l", Concurrency::Latest, id.clone())).0);
        }
        assert_eq!(superseded, jobs[1..4]);
        lanes.finished("l", &jobs[0]);
        assert_eq!(started(&mut lanes, 8), jobs[4..]);
    }

    #[test]
    fn replace_cancels_the_running_job() {
        let mut lanes = Lanes::default();
        let jobs = ids(3);
        accepted(lanes.admit("r", Concurrency::Replace, jobs[0].clone()));
        started(&mut lanes, 8);
        let (superseded, cancel) =
            accepted(lanes.admit("r", Concurrency::Replace, jobs[1].clone()));
        assert!(superseded.is_empty());
        assert_eq!(cancel, jobs[..1]);
        let (superseded, cancel) =
            accepted(lanes.admit("r", Concurrency::Replace, jobs[2].clone()));
        assert_eq!(
            (superseded, cancel),
            (jobs[1..2].to_vec(), jobs[..1].to_vec())
        );
        assert!(
            started(&mut lanes, 8).is_empty(),
            "waits for the cancelled one to end"
        );
        lanes.finished("r", &jobs[0]);
        assert_eq!(started(&mut lanes, 8), jobs[2..]);
    }

    #[test]
    fn hooks_start_in_arrival_order_and_waiting_jobs_can_be_removed() {
        let mut lanes = Lanes::default();
        let jobs = ids(3);
        accepted(lanes.admit("a", Concurrency::Queue { queue: 10 }, jobs[0].clone()));
        accepted(lanes.admit("b", Concurrency::Queue { queue: 10 }, jobs[1].clone()));
        accepted(lanes.admit("c", Concurrency::Queue { queue: 10 }, jobs[2].clone()));
        assert!(lanes.remove_waiting(&jobs[1]));
        assert!(!lanes.remove_waiting(&jobs[1]));
        assert_eq!(started(&mut lanes, 8), [jobs[0].clone(), jobs[2].clone()]);
    }

    #[test]
    fn a_retry_waits_until_due_behind_its_queue_and_holds_up_nobody() {
        let mut lanes = Lanes::default();
        let jobs = ids(4);
        let mode = Concurrency::Queue { queue: 1 };
        accepted(lanes.admit("q", mode, jobs[0].clone()));
        assert_eq!(started(&mut lanes, 8), jobs[..1]);
        // Waiting while the first runs; the queue is full.
        accepted(lanes.admit("q", mode, jobs[1].clone()));
        assert!(lanes.retry("q", &jobs[0], 100), "beyond the bound");
        assert_eq!(lanes.next_due(0), Some(100));
        assert_eq!(
            lanes.start_next(8, 50),
            [("q".to_string(), jobs[1].clone())]
        );
        lanes.finished("q", &jobs[1]);
        // Not due: a job admitted later goes first.
        accepted(lanes.admit("q", mode, jobs[2].clone()));
        assert_eq!(
            lanes.start_next(8, 99),
            [("q".to_string(), jobs[2].clone())]
        );
        lanes.finished("q", &jobs[2]);
        assert_eq!(
            lanes.start_next(8, 100),
            [("q".to_string(), jobs[0].clone())]
        );
        assert_eq!((lanes.next_due(0), lanes.waiting()), (None, 0));
    }

    #[test]
    fn under_latest_and_replace_a_newer_waiting_job_wins_over_a_retry_and_supersedes_it_later() {
        for mode in [Concurrency::Latest, Concurrency::Replace] {
            let mut lanes = Lanes::default();
            let jobs = ids(3);
            accepted(lanes.admit("l", mode, jobs[0].clone()));
            started(&mut lanes, 8);
            accepted(lanes.admit("l", mode, jobs[1].clone()));
            assert!(!lanes.retry("l", &jobs[0], 100), "{mode:?}");
            assert_eq!(lanes.start_next(8, 0), [("l".to_string(), jobs[1].clone())]);
            assert!(
                lanes.retry("l", &jobs[1], 100),
                "{mode:?}: nothing newer waits"
            );
            let (superseded, _) = accepted(lanes.admit("l", mode, jobs[2].clone()));
            assert_eq!(superseded, jobs[1..2], "{mode:?}");
            assert_eq!(lanes.start_next(8, 0), [("l".to_string(), jobs[2].clone())]);
        }
    }
}
