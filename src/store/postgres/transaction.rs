//! Transactions: each starts at `READ COMMITTED` whatever the database's default, and one the
//! database aborted only because it met another (a deadlock, a serialization failure) is tried
//! again from the start.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::Failure;
use crate::store::StoreError;

/// How many times a transaction the database aborted for a deadlock (`40P01`) or a serialization
/// failure (`40001`) is tried in all: such an abort undoes the whole transaction, so trying it
/// again from the start is safe, and the caller never sees a conflict between instances.
const TRANSACTION_TRIES: u32 = 5;

/// Starts a transaction at `READ COMMITTED`, whatever the server's or the database's default:
/// the claim lock and the lane locks rely on each statement seeing what committed before it (a
/// `REPEATABLE READ` snapshot taken before the claim lock was granted would not).
pub async fn begin<'a>(
    client: &'a mut deadpool_postgres::Client,
    failure: &Failure,
) -> Result<deadpool_postgres::Transaction<'a>, StoreError> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(|error| failure.sql(error))
}

/// Whether the database aborted the transaction only because it met another one (a deadlock or
/// a serialization failure), so the same transaction may succeed if tried again.
pub fn conflicted(error: &StoreError) -> bool {
    let StoreError::Database(source) = error else {
        return false;
    };
    source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|code| {
            *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
        })
}

/// Runs `attempt` (one whole transaction) until it is not aborted by a conflict with another
/// transaction, at most [`TRANSACTION_TRIES`] times, after a short random pause each time so two
/// victims do not meet again.
pub async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(error) if tries < TRANSACTION_TRIES && conflicted(&error) => {
                tracing::debug!(%error, what, tries, "a transaction met another; trying it again");
                let pause = rand::random::<u64>() % (10 * u64::from(tries)) + 1;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                tries += 1;
            }
            other => return other,
        }
    }
}
