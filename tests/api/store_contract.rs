//! The store's contract (`tests/contract/`) on the SQLite backend, each case on a new state
//! directory.

#[path = "../contract/mod.rs"]
mod contract;

use hookrunner::store::{Store, StoreError};
use tempfile::TempDir;

struct Sqlite(TempDir);

impl contract::Database for Sqlite {
    async fn try_open(&self, instance: &str) -> Result<Store, StoreError> {
        Store::sqlite(self.0.path(), instance)
    }
}

async fn fresh() -> Sqlite {
    Sqlite(tempfile::tempdir().unwrap())
}

crate::store_contract!(fresh);
