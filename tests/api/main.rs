//! Tests through the front door: a real server on port 0, real signed requests, real processes.

mod abuse;
mod answers;
mod check;
mod config_file;
mod helpers;
mod jobs;
mod lifecycle;
mod operations;
mod providers;
mod readme;
mod replays;
mod running;
mod signatures;
