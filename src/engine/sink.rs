//! Where a running job's output goes: the capture for answers, the job's log file (capped at
//! `max_output`, then one marker while the pipes keep draining), and live readers (each with a
//! bounded backlog, see `live`).

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

use super::live::{Chunk, LiveOutput, LiveReader, BACKLOG_LIMIT};
use crate::runner::{CappedOutput, OutputSink, StreamKind};
use crate::store::LogWriter;

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
    writer: LogWriter,
    /// Writing the log failed; output is kept in memory only.
    failed: bool,
    written: u64,
    max: u64,
    truncated: bool,
}

impl JobSink {
    /// A sink whose log goes to `writer`. A log that cannot be written is logged, and the job
    /// still runs. With `live`, the output is also sent, chunk by chunk, to whoever
    /// [`subscribes`](JobSink::subscribe).
    pub fn create(writer: LogWriter, max_output: u64, live: bool) -> JobSink {
        JobSink {
            capture: CappedOutput::new(max_output),
            log: Mutex::new(LogFile {
                writer,
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

impl JobSink {
    /// Writes a line of hookrunner's own to the log (where an attempt begins), not to the
    /// answer's capture; it counts in `max_output` like the command's output.
    pub fn mark(&self, line: &[u8]) {
        self.log(line);
    }

    fn log(&self, data: &[u8]) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let LogFile {
            writer,
            failed,
            written,
            max,
            truncated,
        } = &mut *log;
        if *truncated || *failed {
            return;
        }
        let room = max.saturating_sub(*written) as usize;
        let (kept, overflow) = data.split_at(data.len().min(room));
        let mut result = writer.append(kept);
        *written += kept.len() as u64;
        if !overflow.is_empty() {
            *truncated = true;
            let marker = format!("\n[hookrunner: output truncated after {max} bytes]\n");
            result = result.and_then(|()| writer.append(marker.as_bytes()));
            *written += marker.len() as u64;
        }
        if let Err(error) = result {
            tracing::error!(log = %writer.describe(), %error, "cannot write the job log; later output is kept in memory only");
            *failed = true;
        }
        self.log_len.send_replace(*written);
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
        self.log(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_capped_with_one_marker_and_followers_see_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.log");
        let sink = JobSink::create(LogWriter::file(path.clone()), 10, true);
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
