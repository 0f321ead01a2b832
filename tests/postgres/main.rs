//! The PostgreSQL backend through `Store`, against a real server: `tests/postgres/run.sh` starts
//! one and runs these. Several `Store` handles with different instance names on one database
//! stand for the instances of a cluster; `instances` runs real `hookrunner serve` processes. Every
//! test fails without a server.

mod cluster;
mod conflicts;
mod direct;
mod engines;
mod helpers;
mod instances;
mod jobs;
mod notifications;
mod outage;
mod outbox;
mod proxy;
mod retries;
mod serve;
mod store_contract;
