//! The `Application`: opens the job store, recovers the jobs a previous run left, binds the listeners
//! (port 0 works, for tests), then serves until SIGTERM or SIGINT and shuts down in order.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;

use crate::config::{Concurrency, Config};
use crate::engine::Engine;
use crate::http::{self, AppState};
use crate::store::Store;

/// How long a client may take to send its request head before the connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often finished jobs beyond `retention` are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);

pub struct Application {
    server: Server,
    engine: Engine,
    ports: Vec<u16>,
    shutdown_grace: Duration,
}

impl Application {
    /// Opens the store, re-queues recovered jobs, and binds every `listen` address.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let settings = &config.server;
        let store = Store::open(&settings.state_dir).with_context(|| {
            format!("cannot open the job store in `{}`; check that the directory is writable (`--state-dir`)", settings.state_dir.display())
        })?;
        let engine = Engine::new(store, settings.max_jobs, settings.max_pending);
        let recovered = engine
            .recover(|hook| {
                config
                    .hook(hook)
                    .map_or(Concurrency::Queue { queue: usize::MAX }, |hook| {
                        hook.concurrency
                    })
            })
            .await
            .context("cannot read the jobs of the previous run")?;
        if recovered > 0 {
            tracing::info!(
                jobs = recovered,
                "re-queued the jobs a previous run had accepted"
            );
        }
        engine.prune_every(settings.retention, PRUNE_INTERVAL);

        let base_path = settings.base_path.clone();
        let listen = settings.listen.clone();
        let shutdown_grace = settings.shutdown_grace;
        let state = web::Data::new(AppState {
            config: Arc::new(config),
            engine: engine.clone(),
        });
        let mut server = HttpServer::new(move || {
            let base_path = base_path.clone();
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(http::request_middleware))
                .configure(move |routes| http::configure(routes, &base_path))
        })
        .client_request_timeout(HEADER_READ_TIMEOUT)
        .shutdown_timeout(shutdown_grace.as_secs().max(1))
        // Signals are handled here, so the HTTP server and the job engine stop together.
        .disable_signals();

        let mut ports = Vec::new();
        for address in &listen {
            if let Some(path) = address.strip_prefix("unix:") {
                // A stale socket from an earlier run would make bind fail.
                let _ = std::fs::remove_file(path);
                server = server
                    .bind_uds(path)
                    .with_context(|| format!("cannot listen on unix socket `{path}`"))?;
                continue;
            }
            let listener = TcpListener::bind(address).with_context(|| {
                format!("cannot listen on `{address}`; is another process using it? Pick another with `--listen HOST:PORT`")
            })?;
            ports.push(listener.local_addr()?.port());
            server = server.listen(listener)?;
        }
        Ok(Application {
            server: server.run(),
            engine,
            ports,
            shutdown_grace,
        })
    }

    /// The port of the first TCP listener.
    pub fn port(&self) -> u16 {
        self.ports.first().copied().unwrap_or(0)
    }

    /// Serves until SIGTERM or SIGINT; then stops accepting, lets running jobs finish within
    /// `shutdown_grace`, terminates the rest (recorded `interrupted`), and commits the store.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        tokio::select! {
            result = &mut server => return Ok(result.context("the HTTP server task failed")??),
            signal = stop_signal() => tracing::info!(signal, grace = ?self.shutdown_grace, "stopping: no new requests, running jobs may finish"),
        }
        tokio::join!(handle.stop(true), self.engine.shutdown(self.shutdown_grace));
        server.await.context("the HTTP server task failed")??;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Waits for SIGTERM or SIGINT and names it.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}
