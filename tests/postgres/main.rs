//! The PostgreSQL backend through `Store`, against a real server: `tests/postgres/run.sh` starts
//! one and runs these. Several `Store` handles with different instance names on one database
//! stand for the instances of a cluster; `instances` and `notify` run real `hookrunner serve`
//! processes. Every test fails without a server.

mod approvals;
mod cluster;
mod conflicts;
mod direct;
mod engines;
mod helpers;
mod instances;
mod jobs;
mod notifications;
mod notify;
mod outage;
mod outbox;
mod proxy;
// The API tests' receiver; `gaps` is theirs alone.
#[allow(dead_code)]
#[path = "../api/receiver.rs"]
mod receiver;
mod retries;
mod serve;
mod store_contract;
