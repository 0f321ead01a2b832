//! The store's contract (`tests/contract/`) on PostgreSQL, each case on a new database.

#[path = "../contract/mod.rs"]
mod contract;

use hookrunner::store::{Store, StoreError};

use crate::helpers::{fresh_database, HEARTBEAT, LONG};

struct Postgres(String);

impl contract::Database for Postgres {
    async fn try_open(&self, instance: &str) -> Result<Store, StoreError> {
        Store::postgres(&self.0, instance, HEARTBEAT, LONG).await
    }
}

async fn fresh() -> Postgres {
    Postgres(fresh_database().await)
}

crate::store_contract!(fresh);
