//! A job's output for the readers that follow it as it comes: each reader has its own backlog of at
//! most `BACKLOG_LIMIT` bytes, so a reader that falls behind misses output (and is told how much)
//! instead of holding memory or slowing the job and the other readers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::runner::StreamKind;

/// The most output one reader may have waiting; past it, the oldest waiting output is dropped.
pub const BACKLOG_LIMIT: usize = 1 << 20;

/// One piece of output as it came.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub stream: StreamKind,
    pub data: Bytes,
}

/// What a reader gets next.
#[derive(Debug)]
pub enum Item {
    Output(Chunk),
    /// This many bytes of output came here, but the reader was too far behind to be kept them.
    Skipped(u64),
}

/// One reader's waiting output: the chunks it has yet to take, and the bytes dropped before them.
#[derive(Debug, Default)]
struct Backlog {
    skipped: u64,
    chunks: VecDeque<Chunk>,
    bytes: usize,
    /// The job's output has ended: nothing more will come.
    closed: bool,
}

impl Backlog {
    /// Queues a chunk, dropping the oldest waiting ones while the backlog would go over `limit`.
    /// The newest output is kept, since how a command ends usually matters most.
    fn push(&mut self, chunk: Chunk, limit: usize) {
        while self.bytes + chunk.data.len() > limit {
            let Some(oldest) = self.chunks.pop_front() else {
                break;
            };
            self.bytes -= oldest.data.len();
            self.skipped += oldest.data.len() as u64;
        }
        self.bytes += chunk.data.len();
        self.chunks.push_back(chunk);
    }

    /// What was skipped comes first: it came before everything still waiting.
    fn pop(&mut self) -> Option<Item> {
        if self.skipped > 0 {
            return Some(Item::Skipped(std::mem::take(&mut self.skipped)));
        }
        let chunk = self.chunks.pop_front()?;
        self.bytes -= chunk.data.len();
        Some(Item::Output(chunk))
    }
}

#[derive(Default)]
struct Shared {
    backlog: Mutex<Backlog>,
    /// Wakes the reader when output arrives or ends.
    ready: Notify,
}

/// The sending side, held by the job's sink. Sending never waits for a reader.
pub struct LiveOutput {
    readers: Mutex<Vec<Weak<Shared>>>,
    limit: usize,
}

/// One reader of a job's output from the moment it subscribed.
pub struct LiveReader {
    shared: Arc<Shared>,
}

impl LiveOutput {
    pub fn new(limit: usize) -> LiveOutput {
        LiveOutput {
            readers: Mutex::new(Vec::new()),
            limit,
        }
    }

    pub fn subscribe(&self) -> LiveReader {
        let shared = Arc::new(Shared::default());
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&shared));
        LiveReader { shared }
    }

    /// Hands a chunk to every reader still there; readers that have gone are forgotten.
    pub fn send(&self, chunk: Chunk) {
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|reader| {
                let Some(reader) = reader.upgrade() else {
                    return false;
                };
                reader
                    .backlog
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(chunk.clone(), self.limit);
                reader.ready.notify_one();
                true
            });
    }
}

impl Drop for LiveOutput {
    /// The job's output has ended: readers get what is waiting, then the end.
    fn drop(&mut self) {
        let readers = self
            .readers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for reader in readers.drain(..).filter_map(|reader| reader.upgrade()) {
            reader
                .backlog
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .closed = true;
            reader.ready.notify_one();
        }
    }
}

impl LiveReader {
    /// The next item if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Item> {
        self.shared
            .backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// The next item, waiting for one; `None` once the output has ended and all of it was taken.
    pub async fn next(&mut self) -> Option<Item> {
        loop {
            {
                let mut backlog = self
                    .shared
                    .backlog
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(item) = backlog.pop() {
                    return Some(item);
                }
                if backlog.closed {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a chunk sent between the check
            // above and this wait is not missed.
            self.shared.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(text: &str) -> Chunk {
        Chunk {
            stream: StreamKind::Stdout,
            data: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    fn drain(reader: &mut LiveReader) -> Vec<String> {
        std::iter::from_fn(|| reader.try_next())
            .map(|item| match item {
                Item::Output(chunk) => String::from_utf8_lossy(&chunk.data).into_owned(),
                Item::Skipped(bytes) => format!("<{bytes} skipped>"),
            })
            .collect()
    }

    #[test]
    fn a_reader_behind_by_more_than_the_limit_keeps_the_newest_output_and_a_count() {
        // (chunks sent while the reader does not read, limit, what the reader then gets)
        let cases: &[(&[&str], usize, &[&str])] = &[
            (&["ab", "cd"], 4, &["ab", "cd"]),
            (&["ab", "cd", "e"], 4, &["<2 skipped>", "cd", "e"]),
            (&["ab", "cd", "ef", "gh"], 4, &["<4 skipped>", "ef", "gh"]),
            // A chunk larger than the limit on its own is still delivered whole.
            (&["ab", "cdefg"], 4, &["<2 skipped>", "cdefg"]),
            (&["abcdefg", "h"], 4, &["<7 skipped>", "h"]),
        ];
        for (sent, limit, expected) in cases {
            let output = LiveOutput::new(*limit);
            let mut reader = output.subscribe();
            for text in *sent {
                output.send(chunk(text));
            }
            assert_eq!(
                drain(&mut reader),
                *expected,
                "sent {sent:?}, limit {limit}"
            );
        }
    }

    #[test]
    fn a_slow_reader_does_not_change_what_a_fast_one_gets() {
        let output = LiveOutput::new(4);
        let mut slow = output.subscribe();
        let mut fast = output.subscribe();
        let mut fast_got = Vec::new();
        for text in ["ab", "cd", "ef", "gh"] {
            output.send(chunk(text));
            fast_got.extend(drain(&mut fast));
        }
        assert_eq!(fast_got, ["ab", "cd", "ef", "gh"]);
        assert_eq!(drain(&mut slow), ["<4 skipped>", "ef", "gh"]);
        // Once it has caught up, the slow reader gets everything again.
        output.send(chunk("ij"));
        assert_eq!(drain(&mut slow), ["ij"]);
    }

    #[tokio::test]
    async fn a_reader_gets_what_is_waiting_then_the_end() {
        let output = LiveOutput::new(BACKLOG_LIMIT);
        let mut reader = output.subscribe();
        output.send(chunk("last"));
        drop(output);
        assert!(matches!(reader.next().await, Some(Item::Output(_))));
        assert!(reader.next().await.is_none());
    }

    #[test]
    fn a_reader_that_went_away_is_forgotten() {
        let output = LiveOutput::new(BACKLOG_LIMIT);
        drop(output.subscribe());
        output.send(chunk("a"));
        assert!(output.readers.lock().unwrap().is_empty());
    }
}
