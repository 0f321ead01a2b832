//! Which queued jobs one instance claims, as plain data: what `claim` read from the database
//! (the first queued jobs of each lane, the running counts and each lane's capacity) in, the
//! ids to start out. No IO, no clocks.

use std::collections::HashMap;

/// A queued job at the head of its lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Candidate {
    pub id: String,
    pub lane: String,
    pub seq: i64,
    /// The one instance that may claim it; `None`: any.
    pub placement: Option<String>,
}

/// A lane's capacity (how many of its jobs may run at once) and how many run now, cluster-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LaneLoad {
    pub capacity: usize,
    pub running: usize,
}

/// The ids `me` starts, at most `free`, oldest first across lanes. Within a lane jobs start in
/// order: a lane stops at its first job that cannot start here now (it is full, or that job is
/// placed on another instance), so nothing behind it overtakes it. A lane missing from `loads`
/// runs one at a time.
pub(super) fn decide(
    me: &str,
    free: usize,
    mut candidates: Vec<Candidate>,
    loads: &HashMap<String, LaneLoad>,
) -> Vec<String> {
    candidates.sort_by_key(|candidate| candidate.seq);
    let mut started: HashMap<&str, usize> = HashMap::new();
    let mut blocked: Vec<&str> = Vec::new();
    let mut chosen = Vec::new();
    for candidate in &candidates {
        if chosen.len() >= free {
            break;
        }
        let lane = candidate.lane.as_str();
        if blocked.contains(&lane) {
            continue;
        }
        let load = loads.get(lane).copied().unwrap_or(LaneLoad {
            capacity: 1,
            running: 0,
        });
        let starting = started.entry(lane).or_default();
        let placed_elsewhere = candidate
            .placement
            .as_deref()
            .is_some_and(|instance| instance != me);
        if placed_elsewhere || load.running.saturating_add(*starting) >= load.capacity {
            blocked.push(lane);
            continue;
        }
        *starting += 1;
        chosen.push(candidate.id.clone());
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(id, lane, placement)` in arrival order.
    fn check(
        free: usize,
        queued: &[(&str, &str, Option<&str>)],
        loads: &[(&str, usize, usize)],
        expected: &[&str],
    ) {
        let candidates = queued
            .iter()
            .enumerate()
            .rev() // `decide` sorts by `seq` itself
            .map(|(seq, (id, lane, placement))| Candidate {
                id: id.to_string(),
                lane: lane.to_string(),
                seq: seq as i64,
                placement: placement.map(str::to_string),
            })
            .collect();
        let loads = loads
            .iter()
            .map(|(lane, capacity, running)| {
                (
                    lane.to_string(),
                    LaneLoad {
                        capacity: *capacity,
                        running: *running,
                    },
                )
            })
            .collect();
        assert_eq!(
            decide("me", free, candidates, &loads),
            expected,
            "{queued:?} {free}"
        );
    }

    const ONE: usize = 1;
    const UNBOUNDED: usize = usize::MAX;

    #[test]
    fn claims_follow_each_lanes_capacity_oldest_first() {
        // One at a time (`queue`, `latest`, `replace`): the oldest only, and none while one runs.
        check(
            8,
            &[("a", "q", None), ("b", "q", None)],
            &[("q", ONE, 0)],
            &["a"],
        );
        check(8, &[("a", "q", None)], &[("q", ONE, 1)], &[]);
        // `parallel`: up to its limit, counting what runs elsewhere.
        check(
            8,
            &[("a", "p", None), ("b", "p", None), ("c", "p", None)],
            &[("p", 3, 1)],
            &["a", "b"],
        );
        check(
            8,
            &[("a", "p", None), ("b", "p", None)],
            &[("p", UNBOUNDED, 40)],
            &["a", "b"],
        );
        // `free` bounds the claim, oldest first across lanes.
        check(
            2,
            &[("a", "x", None), ("b", "y", None), ("c", "z", None)],
            &[("x", ONE, 0), ("y", ONE, 0), ("z", ONE, 0)],
            &["a", "b"],
        );
        check(0, &[("a", "x", None)], &[("x", ONE, 0)], &[]);
        // A full lane does not hold back the others.
        check(
            8,
            &[("a", "x", None), ("b", "y", None)],
            &[("x", ONE, 1), ("y", ONE, 0)],
            &["b"],
        );
        // A lane not in `loads` runs one at a time.
        check(8, &[("a", "n", None), ("b", "n", None)], &[], &["a"]);
    }

    #[test]
    fn a_job_placed_elsewhere_blocks_its_lane_here() {
        check(
            8,
            &[
                ("a", "x", Some("other")),
                ("b", "x", None),
                ("c", "y", None),
            ],
            &[("x", UNBOUNDED, 0), ("y", ONE, 0)],
            &["c"],
        );
        // Placed here: claimed like any.
        check(
            8,
            &[("a", "x", Some("me")), ("b", "x", None)],
            &[("x", UNBOUNDED, 0)],
            &["a", "b"],
        );
        // In a parallel lane, jobs before the one placed elsewhere still start.
        check(
            8,
            &[
                ("a", "x", None),
                ("b", "x", Some("other")),
                ("c", "x", None),
            ],
            &[("x", UNBOUNDED, 0)],
            &["a"],
        );
    }
}
