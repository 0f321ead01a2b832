//! Spawns a command (default `/bin/true`) and waits for it, in a loop, on N threads (default: one
//! per core) for a fixed time, and prints how many spawns per second the machine does.
//!
//! Each spawn is made the way hookrunner makes one: empty environment plus a few variables, a
//! working directory, its own process group, stdin from /dev/null, stdout and stderr piped and read
//! to EOF, then the exit status waited for (`Command::output`).
//!
//! Usage: spawnloop [--seconds S] [--threads N] [--program PATH]
//! Prints: `spawns=<total> seconds=<elapsed> threads=<n> spawns_per_sec=<rate>`

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let mut seconds = 5.0_f64;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut program = String::from("/bin/true");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--seconds" => seconds = value().parse().unwrap_or_else(|_| usage("bad --seconds")),
            "--threads" => threads = value().parse().unwrap_or_else(|_| usage("bad --threads")),
            "--program" => program = value(),
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let stop = Arc::clone(&stop);
            let program = program.clone();
            std::thread::spawn(move || {
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let output = Command::new(&program)
                        .env_clear()
                        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                        .env("HOME", "/")
                        .env("COMMIT", "0123456789abcdef0123456789abcdef01234567")
                        .current_dir("/")
                        .process_group(0)
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .output()
                        .unwrap_or_else(|e| {
                            eprintln!("spawnloop: cannot run {program}: {e}");
                            std::process::exit(1)
                        });
                    if !output.status.success() {
                        eprintln!("spawnloop: {program} exited with {}", output.status);
                        std::process::exit(1);
                    }
                    count += 1;
                }
                count
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "spawns={total} seconds={elapsed:.3} threads={threads} spawns_per_sec={:.1}",
        total as f64 / elapsed
    );
}

fn usage(message: &str) -> ! {
    eprintln!("spawnloop: {message}\nusage: spawnloop [--seconds S] [--threads N] [--program PATH]");
    std::process::exit(2)
}
