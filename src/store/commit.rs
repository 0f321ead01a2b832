//! How far a write has gone: the durability a write asks for, the future that says when it got
//! there, and the counts of commits a backend made.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::StoreError;

/// How far a write must have gone before its transaction counts as committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// On the disk: the commit syncs the log first, so the write survives a power loss.
    Disk,
    /// With the operating system (or the database server): the write survives the server being
    /// killed (`kill -9`), and reaches the disk with the next `Disk` commit or checkpoint; a
    /// power loss may lose it.
    Os,
}

impl Durability {
    /// `Disk` when `needed`, else `Os`.
    pub fn disk_if(needed: bool) -> Durability {
        if needed {
            Durability::Disk
        } else {
            Durability::Os
        }
    }
}

/// Resolves to `Ok` once the write is committed, or to the error that kept it from being
/// committed. Dropping it does not cancel the write.
#[derive(Debug)]
pub struct Committed(oneshot::Receiver<Result<(), StoreError>>);

impl Committed {
    /// A write already committed (or one with nothing to write).
    pub fn done() -> Committed {
        let (sender, receiver) = oneshot::channel();
        let _ = sender.send(Ok(()));
        Committed(receiver)
    }
}

impl From<oneshot::Receiver<Result<(), StoreError>>> for Committed {
    fn from(receiver: oneshot::Receiver<Result<(), StoreError>>) -> Committed {
        Committed(receiver)
    }
}

impl Future for Committed {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(StoreError::Closed)))
    }
}

/// What a backend's writes cost, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Those of them that synced the log, because a write in them asked for [`Durability::Disk`].
    pub synced: u64,
    /// Statements (inserts, updates, recoveries, prunes, writability checks) those transactions
    /// ran. An update folded into the insert of its job in the same batch is not counted.
    pub writes: u64,
}
