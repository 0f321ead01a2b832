//! SPEC §11 through the front door: three real `hookrunner serve` processes on one database
//! (`serve.rs`), real requests over HTTP, and marker lines written by the commands they run.

mod concurrency;
mod failures;
mod routes;
