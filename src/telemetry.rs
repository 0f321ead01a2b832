//! Log setup: `tracing` to stderr, as text for people or JSON for machines. `RUST_LOG` refines it.
//! The HTTP stack's per-connection errors are summarised (`noise`), so no client can flood the log.
//!
//! A request thread only formats its line and hands it over: a writer thread
//! (`tracing-appender`) writes what has piled up in one `write` and flushes whenever it catches
//! up, so the request log costs no system call per line. Lines are never dropped: when the
//! writer falls [`PENDING_LINES`] behind (stderr blocked), logging waits for it.

mod noise;

use std::io::BufWriter;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How many lines may wait for the writer thread before logging waits. Kept small: the queue's
/// slots are allocated up front.
const PENDING_LINES: usize = 8192;

/// Keeps the log's writer thread: dropping it writes out the lines still waiting.
#[must_use = "the log's last lines are written when this is dropped"]
pub struct LogGuard {
    _writer: WorkerGuard,
}

/// Starts logging; call once, after the last environment change (it starts a thread).
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in the journal or a log file.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(PENDING_LINES)
        .thread_name("hookrunner-log")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colour);
    let _ = match format {
        LogFormat::Text => builder.finish().with(noise::layer()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(noise::layer())
            .try_init(),
    };
    LogGuard { _writer: guard }
}
