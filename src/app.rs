//! The `Application`: binds the listeners (port 0 works, for tests), then serves until stopped.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;

use crate::config::Config;
use crate::engine::Engine;
use crate::http::{self, AppState};

/// How long a client may take to send its request head before the connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Application {
    server: Server,
    ports: Vec<u16>,
}

impl Application {
    /// Binds every `listen` address and prepares the server; jobs run on the current runtime.
    pub fn build(config: Config) -> anyhow::Result<Application> {
        let settings = &config.server;
        let engine = Engine::new(
            settings.max_jobs,
            settings.max_pending,
            settings.retention.max_jobs,
        );
        let base_path = settings.base_path.clone();
        let listen = settings.listen.clone();
        let grace = settings.shutdown_grace;
        let state = web::Data::new(AppState {
            config: Arc::new(config),
            engine,
        });
        let mut server = HttpServer::new(move || {
            let base_path = base_path.clone();
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(http::request_middleware))
                .configure(move |routes| http::configure(routes, &base_path))
        })
        .client_request_timeout(HEADER_READ_TIMEOUT)
        .shutdown_timeout(grace.as_secs().max(1));

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
            ports,
        })
    }

    /// The port of the first TCP listener.
    pub fn port(&self) -> u16 {
        self.ports.first().copied().unwrap_or(0)
    }

    /// Serves until SIGINT or SIGTERM, then lets in-flight requests finish within `shutdown_grace`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
