//! Captured command output: the [`OutputSink`] trait, the byte-capped [`CappedOutput`] sink, and the
//! pipe readers that drain a child's stdout/stderr into a sink.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Which of the child's output pipes a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// Receives the child's output as it arrives, one chunk at a time, from both pipes concurrently.
///
/// `write` is called from the pipe reader tasks and must not block for long: a slow sink slows the
/// draining of the pipes, and with it the child.
pub trait OutputSink: Send + Sync + 'static {
    fn write(&self, stream: StreamKind, data: &[u8]);
}

/// An [`OutputSink`] that keeps stdout and stderr bytes up to one shared byte budget.
///
/// Once the budget is spent, one marker line is appended to the stream whose data overflowed and
/// all later data (on either stream) is dropped, though still counted in [`total_bytes`].
///
/// [`total_bytes`]: CappedOutput::total_bytes
pub struct CappedOutput {
    max: u64,
    inner: Mutex<Captured>,
}

#[derive(Default)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Bytes of command output kept so far (the marker is not counted).
    kept: u64,
    /// Bytes of command output seen so far, kept or not.
    total: u64,
    truncated: bool,
}

impl CappedOutput {
    /// A sink keeping at most `max` bytes of stdout and stderr together.
    pub fn new(max: u64) -> Self {
        CappedOutput {
            max,
            inner: Mutex::new(Captured::default()),
        }
    }

    /// The stdout bytes kept (with the truncation marker if stdout overflowed the budget).
    pub fn stdout(&self) -> Vec<u8> {
        self.lock().stdout.clone()
    }

    /// The stderr bytes kept (with the truncation marker if stderr overflowed the budget).
    pub fn stderr(&self) -> Vec<u8> {
        self.lock().stderr.clone()
    }

    /// Whether some output was dropped because the budget was spent.
    pub fn truncated(&self) -> bool {
        self.lock().truncated
    }

    /// All bytes the command wrote to stdout and stderr, including the dropped ones.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    /// The marker line appended once the budget of `max` bytes is exceeded.
    pub(crate) fn marker(max: u64) -> String {
        format!("\n[hookrunner: output truncated after {max} bytes]\n")
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        // A panic while holding the lock cannot leave the buffers inconsistent in a way that
        // matters for captured output, so a poisoned lock is used as is.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl OutputSink for CappedOutput {
    fn write(&self, stream: StreamKind, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let captured = &mut *guard;
        captured.total = captured.total.saturating_add(data.len() as u64);
        if captured.truncated {
            return;
        }
        let remaining = self.max.saturating_sub(captured.kept);
        let keep = usize::try_from(remaining).map_or(data.len(), |r| r.min(data.len()));
        let buf = match stream {
            StreamKind::Stdout => &mut captured.stdout,
            StreamKind::Stderr => &mut captured.stderr,
        };
        buf.extend_from_slice(&data[..keep]);
        captured.kept += keep as u64;
        if keep < data.len() {
            buf.extend_from_slice(Self::marker(self.max).as_bytes());
            captured.truncated = true;
        }
    }
}

impl fmt::Debug for CappedOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let captured = self.lock();
        f.debug_struct("CappedOutput")
            .field("max", &self.max)
            .field("stdout_len", &captured.stdout.len())
            .field("stderr_len", &captured.stderr.len())
            .field("total", &captured.total)
            .field("truncated", &captured.truncated)
            .finish()
    }
}

/// Size of one read from a pipe (Linux pipes hold 64 KiB by default).
const READ_CHUNK: usize = 64 * 1024;

/// The first read's size; each read that fills the buffer makes the next one larger, up to
/// `READ_CHUNK`.
const FIRST_READ_CHUNK: usize = 4 * 1024;

/// Reads `pipe` until EOF (or a read error), handing every chunk to `sink`.
///
/// Keeps reading whatever the sink does with the data, so the writer never blocks on a full pipe.
pub(crate) async fn drain<R>(mut pipe: R, kind: StreamKind, sink: Arc<dyn OutputSink>)
where
    R: AsyncRead + Unpin,
{
    // Uninitialised capacity: zeroing 64 KiB per pipe per job cost more than the rest of a short
    // job's bookkeeping (callgrind). Small at first, since most commands print little or nothing,
    // and grown while reads fill it: two 64 KiB buffers per job made the allocator grow and
    // shrink its heaps (mprotect, madvise) at every job under load.
    let mut buf = bytes::BytesMut::with_capacity(FIRST_READ_CHUNK);
    loop {
        buf.clear();
        match pipe.read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                sink.write(kind, &buf[..n]);
                let full = buf.len() == buf.capacity();
                if full && buf.capacity() < READ_CHUNK {
                    let larger = (buf.capacity() * 4).min(READ_CHUNK);
                    buf = bytes::BytesMut::with_capacity(larger);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(stream = ?kind, error = %e, "reading command output failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_within_budget() {
        let out = CappedOutput::new(10);
        out.write(StreamKind::Stdout, b"hello");
        out.write(StreamKind::Stderr, b"world");
        assert_eq!(out.stdout(), b"hello");
        assert_eq!(out.stderr(), b"world");
        assert!(!out.truncated());
        assert_eq!(out.total_bytes(), 10);
    }

    #[test]
    fn budget_is_shared_and_marker_goes_to_overflowing_stream() {
        let out = CappedOutput::new(8);
        out.write(StreamKind::Stdout, b"12345");
        out.write(StreamKind::Stderr, b"abcdef");
        out.write(StreamKind::Stdout, b"later");
        out.write(StreamKind::Stderr, b"");
        assert_eq!(out.stdout(), b"12345");
        let mut expected = b"abc".to_vec();
        expected.extend_from_slice(b"\n[hookrunner: output truncated after 8 bytes]\n");
        assert_eq!(out.stderr(), expected);
        assert!(out.truncated());
        assert_eq!(out.total_bytes(), 16);
    }

    #[test]
    fn zero_budget_truncates_at_first_byte() {
        let out = CappedOutput::new(0);
        out.write(StreamKind::Stdout, b"x");
        assert_eq!(out.stdout(), CappedOutput::marker(0).as_bytes());
        assert!(out.stderr().is_empty());
        assert!(out.truncated());
        assert_eq!(out.total_bytes(), 1);
    }
}
