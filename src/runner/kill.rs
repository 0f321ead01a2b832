//! Ending a command's whole process group: SIGTERM, a bounded wait for the leader, then SIGKILL.

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
