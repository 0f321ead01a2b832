//! Keeps commands out of the server, taken once at start: commands inherit no descriptor but 0, 1
//! and 2, and a command running as the server's user cannot read its environment or memory.

use std::io;
use std::os::fd::RawFd;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// Isolates the server from the commands it will run. Call it before any thread starts (and after
/// taking systemd's sockets): a descriptor opened concurrently could otherwise miss the flag.
pub fn isolate_commands() {
    match close_inherited_on_exec() {
        Ok(0) => {}
        Ok(count) => tracing::debug!(count, "inherited descriptors will not reach commands"),
        Err(error) => tracing::warn!(
            %error,
            "cannot list `/proc/self/fd`; descriptors hookrunner inherited may reach commands"
        ),
    }
    // A process that is not dumpable has its `/proc/PID` files owned by root and cannot be
    // traced, so a command of the same user cannot read `/proc/$PPID/environ` (with the `env:`
    // secrets) or `/proc/$PPID/mem`. `exec` resets the flag, so commands stay dumpable.
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(
            %error,
            "cannot mark the server non-dumpable; commands may read its environment through `/proc`"
        );
    }
}

/// Marks every descriptor above 2 close-on-exec: the server keeps using what it inherited (systemd's
/// listeners included), and commands never see it. Returns how many descriptors it changed.
fn close_inherited_on_exec() -> io::Result<usize> {
    // Collected first: the listing's own descriptor is open while the directory is read.
    let descriptors: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    let mut changed = 0;
    for fd in descriptors {
        // The listing's own descriptor is closed by now, so EBADF is expected once.
        let Ok(flags) = fcntl(fd, FcntlArg::F_GETFD) else {
            continue;
        };
        let flags = FdFlag::from_bits_truncate(flags);
        if flags.contains(FdFlag::FD_CLOEXEC) {
            continue;
        }
        match fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC)) {
            Ok(_) => changed += 1,
            // One descriptor that cannot be marked must not leave the others unmarked.
            Err(error) => tracing::warn!(
                fd,
                %error,
                "cannot mark an inherited descriptor close-on-exec; commands may inherit it"
            ),
        }
    }
    Ok(changed)
}
