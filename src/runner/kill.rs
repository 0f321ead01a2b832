//! Ending a command's whole process group: SIGTERM, a bounded wait for the leader, then SIGKILL;
//! and ending what a command left running in its group after it exited.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Child;

/// Sends `signal` to every process in the group `pgid`. A group that no longer exists is not an
/// error; other failures are logged and otherwise ignored (there is nothing better to do).
pub(crate) fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::debug!(pid = pgid.as_raw(), ?signal, error = %e, "killpg failed"),
    }
}

/// Terminates the process group led by `child`: SIGTERM to the group, up to `kill_after` for the
/// leader to exit, then SIGKILL to the group. Once the leader has been reaped, the group gets one
/// more SIGKILL, so that members that outlived the leader (or ignored SIGTERM) die too.
///
/// `why` is for the debug log only.
pub(crate) async fn terminate_group(child: &mut Child, pgid: Pid, kill_after: Duration, why: &str) {
    tracing::debug!(pid = pgid.as_raw(), why, "terminating the process group");
    signal_group(pgid, Signal::SIGTERM);
    let status = match tokio::time::timeout(kill_after, child.wait()).await {
        Ok(status) => status,
        Err(_elapsed) => {
            tracing::debug!(
                pid = pgid.as_raw(),
                "still running after SIGTERM; sending SIGKILL"
            );
            signal_group(pgid, Signal::SIGKILL);
            child.wait().await
        }
    };
    match status {
        Ok(status) => tracing::debug!(pid = pgid.as_raw(), %status, "command reaped"),
        Err(e) => {
            tracing::debug!(pid = pgid.as_raw(), error = %e, "waiting for the command failed")
        }
    }
    // The leader is gone; sweep up whatever of its group remains.
    signal_group(pgid, Signal::SIGKILL);
}

/// Ends what is left of the group `pgid` once its leader has exited and been reaped: SIGTERM,
/// up to `kill_after` for the members to exit, then SIGKILL. Returns at once when nothing is left,
/// which is the common case. A process that left the group (`setsid`, `setpgid`) is not followed.
pub(crate) async fn end_leftovers(pgid: Pid, kill_after: Duration) {
    if !has_running_member(pgid).await {
        return;
    }
    tracing::debug!(pid = pgid.as_raw(), "ending what the command left running");
    signal_group(pgid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + kill_after;
    let mut pause = Duration::from_millis(5);
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        if !has_running_member(pgid).await {
            return;
        }
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    tracing::debug!(
        pid = pgid.as_raw(),
        "left running after SIGTERM; sending SIGKILL"
    );
    signal_group(pgid, Signal::SIGKILL);
}

/// Whether a process of the group is still running. Zombies do not count: once the leader is gone
/// its orphans belong to init, which may be slow to reap them (in a container, perhaps never).
async fn has_running_member(pgid: Pid) -> bool {
    if killpg(pgid, None) == Err(Errno::ESRCH) {
        return false;
    }
    tokio::task::spawn_blocking(move || scan_for_running_member(pgid))
        .await
        .unwrap_or(true)
}

/// Reads `/proc/*/stat` for a process of the group that is not a zombie. Without `/proc`, the
/// group is taken to be running, so it gets the signals anyway.
fn scan_for_running_member(pgid: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|byte| byte.is_ascii_digit()));
        is_pid
            && std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| state_and_group(&stat))
                .is_some_and(|(state, group)| group == pgid.as_raw() && state != 'Z')
    })
}

/// The state and the process group of a `/proc/PID/stat` line: `PID (COMM) STATE PPID PGRP ...`,
/// where COMM may itself hold spaces and parentheses.
fn state_and_group(stat: &str) -> Option<(char, i32)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

#[cfg(test)]
mod tests {
    use super::state_and_group;

    #[test]
    fn reads_the_state_and_group_of_a_stat_line() {
        let cases = [
            ("412 (sleep) S 400 400 1 0 -1", Some(('S', 400))),
            ("413 (a) b) (c) Z 1 400 1 0", Some(('Z', 400))),
            ("414 (with space) R 1 -1", Some(('R', -1))),
            ("415 (cut) S 1", None),
            ("garbage", None),
            ("", None),
        ];
        for (stat, expected) in cases {
            assert_eq!(state_and_group(stat), expected, "{stat}");
        }
    }
}
