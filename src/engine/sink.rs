//! Where a running job's output goes: the capture for answers, the job's log file (capped at
//! `max_output`, then one marker while the pipes keep draining), and live readers (each with a
//! bounded backlog, see `live`).

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::watch;

use super::live::{Chunk, LiveOutput, LiveReader, BACKLOG_LIMIT};
use crate::runner::{CappedOutput, OutputSink, StreamKind};

pub struct JobSink {
    capture: CappedOutput,
    log: Mutex<LogFile>,
    /// Only for a job whose output someone follows as it comes (a `stream` answer); the others
    /// copy no chunk for nobody.
    live: Option<LiveOutput>,
    /// Bytes in the log file so far; followers wait on it instead of polling.
    log_len: watch::Sender<u64>,
}

struct LogFile {
    path: PathBuf,
    /// Created at the first output, so a silent command costs no file.
    file: Option<File>,
    /// Creating or writing the file failed; output is kept in memory only.
    failed: bool,
    written: u64,
    max: u64,
    truncated: bool,
}

impl JobSink {
    /// A sink whose log file is created at `path` when the first output arrives. A file that
    /// cannot be created or written is logged, and the job still runs. With `live`, the output is
    /// also sent, chunk by chunk, to whoever [`subscribes`](JobSink::subscribe).
    pub fn create(path: &Path, max_output: u64, live: bool) -> JobSink {
        JobSink {
            capture: CappedOutput::new(max_output),
            log: Mutex::new(LogFile {
                path: path.to_path_buf(),
                file: None,
                failed: false,
                written: 0,
                max: max_output,
                truncated: false,
            }),
            live: live.then(|| LiveOutput::new(BACKLOG_LIMIT)),
            log_len: watch::channel(0).0,
        }
    }

    /// The output from now on, chunk by chunk; `None` for a sink created without `live`.
    pub fn subscribe(&self) -> Option<LiveReader> {
        self.live.as_ref().map(LiveOutput::subscribe)
    }

    pub fn log_len(&self) -> watch::Receiver<u64> {
        self.log_len.subscribe()
    }

    pub fn stdout(&self) -> Vec<u8> {
        self.capture.stdout()
    }

    pub fn stderr(&self) -> Vec<u8> {
        self.capture.stderr()
    }
}

impl OutputSink for JobSink {
    fn write(&self, stream: StreamKind, data: &[u8]) {
        self.capture.write(stream, data);
        if let Some(live) = &self.live {
            // Nobody listening any more is normal: the `stream` client may have gone.
            live.send(Chunk {
                stream,
                data: Bytes::copy_from_slice(data),
            });
        }
        let mut log = self.log.lock().expect("log lock");
        let LogFile {
            path,
            file,
            failed,
            written,
            max,
            truncated,
        } = &mut *log;
        if *truncated || *failed {
            return;
        }
        if file.is_none() {
            match create_log(path) {
                Ok(created) => *file = Some(created),
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "cannot create the job log; output is kept in memory only");
                    *failed = true;
                    return;
                }
            }
        }
        let Some(handle) = file.as_mut() else {
            return;
        };
        let room = max.saturating_sub(*written) as usize;
        let (kept, overflow) = data.split_at(data.len().min(room));
        let mut result = handle.write_all(kept);
        *written += kept.len() as u64;
        if !overflow.is_empty() {
            *truncated = true;
            let marker = format!("\n[hookrunner: output truncated after {max} bytes]\n");
            result = result.and_then(|()| handle.write_all(marker.as_bytes()));
            *written += marker.len() as u64;
        }
        if let Err(error) = result {
            tracing::error!(%error, "cannot write the job log; later output is kept in memory only");
            *file = None;
            *failed = true;
        }
        self.log_len.send_replace(*written);
    }
}

/// Creates (or empties) a job's log file, readable by the server's user only: it holds the job's
/// output.
fn create_log(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_capped_with_one_marker_and_followers_see_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.log");
        let sink = JobSink::create(&path, 10, true);
        let length = sink.log_len();
        let mut live = sink.subscribe().unwrap();
        sink.write(StreamKind::Stdout, b"12345");
        sink.write(StreamKind::Stderr, b"6789abcdef");
        sink.write(StreamKind::Stdout, b"more");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "123456789a\n[hookrunner: output truncated after 10 bytes]\n"
        );
        assert_eq!(*length.borrow(), text.len() as u64);
        let next = |live: &mut LiveReader| match live.try_next() {
            Some(super::super::live::Item::Output(chunk)) => chunk,
            other => panic!("expected output, got {other:?}"),
        };
        assert_eq!(next(&mut live).data.as_ref(), b"12345");
        assert_eq!(next(&mut live).stream, StreamKind::Stderr);
        assert_eq!(sink.stdout(), b"12345");
    }
}
