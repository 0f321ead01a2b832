//! Tests through the front door: a real server on port 0, real signed requests, real processes.

mod abuse;
mod answers;
mod check;
mod client_address;
mod cluster_settings;
mod commands;
mod config_file;
mod empty_body;
mod helpers;
mod job_bodies;
mod job_routes;
mod jobs;
mod lifecycle;
mod log_flood;
mod notify_check;
mod operations;
mod providers;
mod readme;
mod receiver;
mod replays;
mod running;
mod send_retry;
mod signatures;
mod slow_clients;
mod store;
mod store_contract;
