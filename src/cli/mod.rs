//! The command line: `serve`, `check`, `sign`, `send` and `jobs`. Exit codes: 0 ok, 1 a failure
//! the user can fix, 2 usage; `send` adds 3 (nothing ran), `send` and `jobs` 4 (no server).

mod completions;
mod jobs;
mod roff;
mod send;
mod server;
mod sign;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app::Application;
use crate::config::{self, Config, LogFormat, ProgramTemplate};

#[derive(Parser, Debug)]
#[command(
    name = "hookrunner",
    version,
    about = "Run commands when signed webhooks arrive",
    after_help = "The config file's every key, its default and an example: `hookrunner man 5`, \
                  or docs/CONFIG.md in the source."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the hooks of a config file.
    Serve(ServeArgs),
    /// Validate a config file and print a summary of each hook.
    Check(CheckArgs),
    /// Print the headers a provider would send for a body, one `Name: value` per line.
    Sign(sign::SignArgs),
    /// Sign a body as a provider would and POST it, retrying if asked; exits 0 when a job was
    /// accepted, 3 when the 2xx answer says nothing ran (`skipped`, `duplicate`), 1 otherwise.
    Send(send::SendArgs),
    /// Look at and act on the server's jobs: list, show, log, cancel, rerun, approve, reject.
    Jobs(jobs::JobsArgs),
    /// Convert an adnanh/webhook `hooks.json` or `hooks.yaml` to this format and print it.
    #[command(name = "import-webhook")]
    ImportWebhook(crate::import::ImportArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): section 1, the command line (the default), or 5, the config
    /// file; read it with `hookrunner man | man -l -`.
    Man {
        /// The section: 1 or 5.
        #[arg(default_value = "1", value_parser = ["1", "5"])]
        section: String,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The config file.
    #[arg(long, env = "HOOKRUNNER_CONFIG", default_value = "hooks.yaml")]
    pub config: PathBuf,
    /// Address to listen on (`HOST:PORT`, `tls:HOST:PORT` with `server.tls`, or `unix:PATH`); repeat
    /// for several. Overrides `server.listen`.
    #[arg(long, env = "HOOKRUNNER_LISTEN", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// Where the job store lives. Overrides `server.state_dir`.
    #[arg(long, env = "HOOKRUNNER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Log format. Overrides `server.log_format`.
    #[arg(long, env = "HOOKRUNNER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Where jobs are kept: `sqlite`, or a PostgreSQL URL as `env:NAME`, `file:PATH`, `cred:NAME`
    /// or the URL itself. Overrides `server.store`.
    #[arg(long, env = "HOOKRUNNER_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// This instance's name among those sharing the store. Overrides `server.instance`.
    #[arg(long, env = "HOOKRUNNER_INSTANCE", value_name = "NAME")]
    pub instance: Option<String>,
    /// Reload the config when the file changes (SIGHUP always reloads).
    #[arg(long, env = "HOOKRUNNER_WATCH")]
    pub watch: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The config file.
    #[arg(long, env = "HOOKRUNNER_CONFIG", default_value = "hooks.yaml")]
    pub config: PathBuf,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Serve(args) => serve(args),
        Command::Sign(args) => sign::sign(&args),
        Command::Send(args) => send::send(&args),
        Command::Jobs(args) => jobs::jobs(&args),
        Command::ImportWebhook(args) => crate::import::main(&args),
        Command::Completions { shell } => completions::completions(shell),
        Command::Man { section } => completions::man(&section),
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    match config::load(&args.config) {
        Err(errors) => {
            eprint!("{}", errors.render());
            let count = errors.errors().count();
            eprintln!(
                "{}: {count} problem{}",
                args.config.display(),
                if count == 1 { "" } else { "s" }
            );
            ExitCode::from(1)
        }
        Ok(config) => {
            config
                .warnings
                .iter()
                .for_each(|warning| eprint!("{warning}"));
            for hook in &config.hooks {
                println!("{}", summary(&config, hook));
            }
            println!(
                "{}: ok, {} hook{}",
                args.config.display(),
                config.hooks.len(),
                if config.hooks.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
    }
}

fn summary(config: &Config, hook: &config::Hook) -> String {
    let program = match &hook.run.program {
        ProgramTemplate::Shell(_) => "shell",
        ProgramTemplate::Command(_) => "command",
    };
    format!(
        "{id}: {methods} {base}/{id}, signature: {signature}, when: {when}, run: {program}, concurrency: {concurrency}",
        id = hook.id,
        methods = hook.methods.join(","),
        base = config.server.base_path,
        signature = hook.signature.name(),
        when = if hook.when.is_some() {
            "its rules match"
        } else {
            "always"
        },
        concurrency = hook.concurrency,
    )
}

/// Threads for the runtime that runs the jobs (the HTTP workers have their own): twice the cores,
/// at least four. Spawning a command blocks its thread until the child has called `exec`
/// (`vfork` semantics), so with one thread per core, the cores sat idle while every thread waited
/// on a spawn: two threads on two cores served 1,700 signed pushes a second, four served 2,170.
fn job_runtime_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cores).max(4)
}

/// The command line's server settings, held to the rules of their keys. A message never quotes
/// `--store`, which can hold a password.
fn server_overrides(args: &mut ServeArgs) -> Result<config::ServerOverrides, String> {
    let lookup = |name: &str| std::env::var(name).ok();
    let store = match args.store.take() {
        None => None,
        Some(text) => match config::parse_store(&text, Path::new("."), &lookup) {
            Ok((store, _)) => Some(store),
            Err(message) => return Err(format!("`--store` (or `HOOKRUNNER_STORE`): {message}")),
        },
    };
    if let Some(name) = &args.instance {
        config::valid_instance(name)
            .map_err(|message| format!("`--instance` (or `HOOKRUNNER_INSTANCE`): {message}"))?;
    }
    Ok(config::ServerOverrides {
        listen: std::mem::take(&mut args.listen),
        state_dir: args.state_dir.take(),
        log_format: args.log_format,
        store,
        instance: args.instance.take(),
    })
}

fn serve(mut args: ServeArgs) -> ExitCode {
    let overrides = match server_overrides(&mut args) {
        Ok(overrides) => overrides,
        Err(message) => {
            eprintln!("hookrunner: {message}");
            return ExitCode::from(2);
        }
    };
    let mut config = match config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{}", errors.render());
            eprintln!(
                "{}: not serving; fix the problems above (`hookrunner check` lists them)",
                args.config.display()
            );
            return ExitCode::from(1);
        }
    };
    config.apply_overrides(overrides);

    // systemd's sockets are taken before any thread starts (this clears LISTEN_FDS for the
    // commands), the log's writer thread included.
    let inherited = match crate::app::inherited() {
        Ok(inherited) => inherited,
        Err(error) => {
            eprintln!("hookrunner: {error:#}");
            return ExitCode::from(1);
        }
    };
    // Held to the end of `serve`: dropping it writes out what the log still holds.
    let log = crate::telemetry::init(config.server.log_format);
    // Said once, then dropped: a config of many hooks can have many.
    std::mem::take(&mut config.warnings)
        .iter()
        .for_each(|warning| tracing::warn!("{}", warning.trim_end()));
    crate::isolation::isolate_commands();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(job_runtime_threads())
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        let listen = config.server.listen.join(", ");
        let hooks = config.hooks.len();
        let (application, listen) = match inherited {
            Some(listeners) => (
                Application::build_with(config, listeners).await?,
                "sockets from systemd".to_string(),
            ),
            None => (Application::build(config).await?, listen),
        };
        let application = if args.watch {
            application.watch_config()
        } else {
            application
        };
        tracing::info!(listen = %listen, hooks, "serving");
        application.run_until_stopped().await?;
        anyhow::Ok(())
    });
    // The log's last lines go out first, so the reason for an exit comes after what led to it.
    drop(log);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hookrunner: {error:#}");
            ExitCode::from(1)
        }
    }
}
