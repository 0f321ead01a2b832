//! The `Application`: opens the job store, recovers the jobs a previous run left, takes its listeners
//! (bound here, or handed over by systemd), then serves until SIGTERM or SIGINT, reloading the config
//! on SIGHUP or, with `--watch`, when the file changes.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;

use crate::config::{Concurrency, Config, StoreSetting, TlsSource};
use crate::delivery::Deliverer;
use crate::engine::Engine;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::reload;
use crate::store::Store;
use crate::tls;

/// How long a client may take to send its request head before the connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle keep-alive connection stays open.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Open connections per worker thread; beyond, new ones wait in the accept backlog.
const MAX_CONNECTIONS_PER_WORKER: usize = 10_000;
/// How often finished jobs beyond `retention` are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// A socket to serve on.
pub enum Listener {
    /// A TCP socket; `tls` when it speaks TLS with `server.tls`'s certificate.
    Tcp { listener: TcpListener, tls: bool },
    /// A unix socket; `path` is removed at exit when hookrunner created it.
    Unix {
        listener: UnixListener,
        path: Option<PathBuf>,
    },
}

/// Opens the configured store: SQLite in the state directory, or the PostgreSQL database the
/// URL names (never logged: it may hold a password).
async fn open_store(settings: &crate::config::ServerSettings) -> anyhow::Result<Store> {
    match &settings.store {
        StoreSetting::Sqlite => Store::sqlite(&settings.state_dir, &settings.instance)
            .with_context(|| {
                format!(
                    "cannot open the job store in `{}`",
                    settings.state_dir.display()
                )
            }),
        StoreSetting::Postgres(url) => {
            let url = std::str::from_utf8(url.expose())
                .context("the PostgreSQL URL in `store` is not UTF-8")?;
            let store =
                Store::postgres(url, &settings.instance, settings.heartbeat, settings.lease)
                    .await
                    .context("cannot open the job store in PostgreSQL (`store`)")?;
            tracing::info!(instance = %settings.instance, "jobs are kept in PostgreSQL");
            Ok(store)
        }
    }
}

/// Binds the `listen` addresses: `HOST:PORT`, `tls:HOST:PORT`, or `unix:PATH` (created mode
/// 0660, replacing a stale one).
pub fn bind(addresses: &[String]) -> anyhow::Result<Vec<Listener>> {
    addresses
        .iter()
        .map(|address| match address.strip_prefix("unix:") {
            Some(path) => {
                let path = PathBuf::from(path);
                // A socket left by a run that was killed would make bind fail.
                if std::fs::symlink_metadata(&path).is_ok_and(|meta| std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type())) {
                    let _ = std::fs::remove_file(&path);
                }
                let listener = UnixListener::bind(&path).with_context(|| {
                    format!("cannot listen on unix socket `{}`; does its directory exist and is it writable?", path.display())
                })?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
                    .with_context(|| format!("cannot set the permissions of `{}`", path.display()))?;
                Ok(Listener::Unix { listener, path: Some(path) })
            }
            None => {
                let (tls, plain) = match address.strip_prefix("tls:") {
                    Some(plain) => (true, plain),
                    None => (false, address.as_str()),
                };
                let listener = TcpListener::bind(plain).with_context(|| {
                    format!("cannot listen on `{address}`; is another process using it? Pick another with `--listen HOST:PORT`")
                })?;
                Ok(Listener::Tcp { listener, tls })
            }
        })
        .collect()
}

/// The sockets systemd handed over (`LISTEN_FDS`), if any. Call it before starting threads: it
/// clears the variables so that commands do not inherit them. A TCP socket named `tls`
/// (`FileDescriptorName=tls` in its socket unit, which systemd passes in `LISTEN_FDNAMES`) speaks
/// TLS; the others plain HTTP.
pub fn inherited() -> anyhow::Result<Option<Vec<Listener>>> {
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    std::env::remove_var("LISTEN_FDNAMES");
    if fds.len() == 0 {
        return Ok(None);
    }
    let names: Vec<&str> = names.split(':').collect();
    let mut listeners = Vec::new();
    for index in 0..fds.len() {
        if let Ok(Some(listener)) = fds.take_tcp_listener(index) {
            let tls = names.get(index) == Some(&"tls");
            listeners.push(Listener::Tcp { listener, tls });
        } else if let Some(listener) = fds.take_unix_listener(index).with_context(|| {
            format!("socket {index} from systemd is neither TCP nor a unix stream socket")
        })? {
            listeners.push(Listener::Unix {
                listener,
                path: None,
            });
        }
    }
    Ok(Some(listeners))
}

pub struct Application {
    server: Server,
    state: web::Data<AppState>,
    ports: Vec<u16>,
    unix_paths: Vec<PathBuf>,
    watch: bool,
    /// With `server.tls.acme`: the resolver the ACME task hands certificates to, and its settings.
    acme: Option<(
        Arc<tls::Resolver>,
        crate::acme::AcmeSettings,
        crate::acme::KeptFiles,
    )>,
}

impl Application {
    /// Binds the config's `listen` addresses and builds the application.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let listeners = bind(&config.server.listen)?;
        Application::build_with(config, listeners).await
    }

    /// Opens the store, re-queues recovered jobs, and serves on the given listeners.
    pub async fn build_with(
        config: Config,
        listeners: Vec<Listener>,
    ) -> anyhow::Result<Application> {
        let settings = &config.server;
        let store = open_store(settings).await?;
        let metrics = Arc::new(Metrics::new());
        // A crash leaves the files of the runs it cut short; nothing of this instance runs yet,
        // so all of its folder goes (other instances sharing the state dir have their own).
        let files_dir = settings.state_dir.join("files").join(&settings.instance);
        crate::runner::remove_leftovers(&files_dir)
            .with_context(|| format!("cannot remove old job files in {}", files_dir.display()))?;
        let engine = Engine::new(
            store,
            Arc::clone(&metrics),
            settings.max_jobs,
            settings.max_pending,
            files_dir,
        );
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
        let shutdown_grace = settings.shutdown_grace;
        let rate_limits = crate::rate_limit::RateLimits::new(&config);
        let tls = tls_for(settings, &listeners)?;
        let state = web::Data::new(AppState {
            config: std::sync::RwLock::new(Arc::new(config)),
            engine,
            metrics,
            exec_limits: crate::runner::exec_limits(),
            page_changes: Default::default(),
            sign_ins: Default::default(),
            rate_limits,
            tls: tls.as_ref().map(|serving| Arc::clone(&serving.resolver)),
        });
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            let base_path = base_path.clone();
            App::new()
                .app_data(app_state.clone())
                .wrap(from_fn(http::request_middleware))
                .configure(move |routes| http::configure(routes, &base_path))
        })
        .client_request_timeout(HEADER_READ_TIMEOUT)
        .client_disconnect_timeout(Duration::from_secs(5))
        .keep_alive(KEEP_ALIVE)
        .max_connections(MAX_CONNECTIONS_PER_WORKER)
        .shutdown_timeout(shutdown_grace.as_secs().max(1))
        // Signals are handled here, so the HTTP server and the job engine stop together.
        .disable_signals();

        let (mut ports, mut unix_paths) = (Vec::new(), Vec::new());
        for listener in listeners {
            match listener {
                Listener::Tcp {
                    listener,
                    tls: false,
                } => {
                    ports.push(listener.local_addr()?.port());
                    server = server.listen(listener)?;
                }
                Listener::Tcp {
                    listener,
                    tls: true,
                } => {
                    ports.push(listener.local_addr()?.port());
                    let serving = tls.as_ref().expect("`tls_for` made it");
                    server = server.listen_rustls_0_23(listener, serving.rustls_config.clone())?;
                }
                Listener::Unix { listener, path } => {
                    unix_paths.extend(path);
                    server = server.listen_uds(listener)?;
                }
            }
        }
        if ports.is_empty() && unix_paths.is_empty() {
            anyhow::bail!("nothing to listen on; give `--listen HOST:PORT` or `server.listen`");
        }
        Ok(Application {
            server: server.run(),
            state,
            ports,
            unix_paths,
            watch: false,
            acme: tls.and_then(|serving| {
                let (settings, files) = serving.acme?;
                Some((serving.resolver, settings, files))
            }),
        })
    }

    /// The port of the first TCP listener.
    pub fn port(&self) -> u16 {
        self.ports.first().copied().unwrap_or(0)
    }

    /// Also reload when the config file changes (editors and `git pull` that replace it included).
    pub fn watch_config(mut self) -> Application {
        self.watch = true;
        self
    }

    /// The notifications' delivery, reading the config that serves at each step.
    fn deliverer(&self) -> Deliverer {
        let state = self.state.clone();
        Deliverer::new(
            self.state.engine.clone(),
            Arc::new(move || state.config()),
            Arc::clone(&self.state.metrics),
        )
    }

    /// Serves until SIGTERM or SIGINT; then stops accepting, lets running jobs finish within
    /// `shutdown_grace`, terminates the rest (recorded `interrupted`), and commits the store.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let deliveries = tokio::spawn(self.deliverer().run());
        let mut server = tokio::spawn(self.server);
        let reloads = reload::spawn(self.state.clone(), self.watch)?;
        let acme = self.acme.map(|(resolver, settings, files)| {
            tokio::spawn(crate::acme::run(resolver, settings, files))
        });
        let refusals = {
            let state = self.state.clone();
            tokio::spawn(async move { state.rate_limits.report_refusals().await })
        };
        tokio::select! {
            result = &mut server => {
                acme.iter().for_each(tokio::task::JoinHandle::abort);
                reloads.abort();
                deliveries.abort();
                refusals.abort();
                self.state.rate_limits.report_remaining();
                return Ok(result.context("the HTTP server task failed")??);
            }
            signal = stop_signal() => tracing::info!(signal, "stopping: no new requests, running jobs may finish"),
        }
        acme.iter().for_each(tokio::task::JoinHandle::abort);
        reloads.abort();
        deliveries.abort();
        refusals.abort();
        let grace = self.state.config().server.shutdown_grace;
        tokio::join!(handle.stop(true), self.state.engine.shutdown(grace));
        server.await.context("the HTTP server task failed")??;
        self.state.rate_limits.report_remaining();
        for path in &self.unix_paths {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The TLS listeners' certificate: its resolver, their rustls settings, and, with ACME, what
/// the task that orders and renews certificates needs.
struct TlsServing {
    resolver: Arc<tls::Resolver>,
    rustls_config: rustls::ServerConfig,
    acme: Option<(crate::acme::AcmeSettings, crate::acme::KeptFiles)>,
}

/// How the TLS listeners get their certificate; `None` when there are none.
fn tls_for(
    settings: &crate::config::ServerSettings,
    listeners: &[Listener],
) -> anyhow::Result<Option<TlsServing>> {
    let speaks_tls = listeners
        .iter()
        .any(|listener| matches!(listener, Listener::Tcp { tls: true, .. }));
    match (&settings.tls, speaks_tls) {
        (Some(tls), true) => match &tls.source {
            TlsSource::Files { cert, pair, .. } => {
                let resolver = Arc::new(tls::Resolver::new(Arc::clone(pair)));
                let rustls_config =
                    tls::server_config(Arc::clone(&resolver), tls.min_version, false);
                tracing::info!(cert = %cert.display(), serial = pair.serial(), "serving TLS");
                Ok(Some(TlsServing {
                    resolver,
                    rustls_config,
                    acme: None,
                }))
            }
            TlsSource::Acme(acme) => {
                let files = crate::acme::KeptFiles::new(&settings.state_dir);
                let resolver = match files.certificate(&acme.domains, std::time::SystemTime::now())
                {
                    Some(pair) => {
                        tracing::info!(
                            serial = pair.serial(),
                            "serving TLS with the kept ACME certificate"
                        );
                        Arc::new(tls::Resolver::new(Arc::new(pair)))
                    }
                    None => {
                        tracing::info!("no kept ACME certificate for `domains`: TLS clients are refused until the CA issues one");
                        Arc::new(tls::Resolver::waiting_for_acme())
                    }
                };
                let rustls_config =
                    tls::server_config(Arc::clone(&resolver), tls.min_version, true);
                Ok(Some(TlsServing {
                    resolver,
                    rustls_config,
                    acme: Some((acme.clone(), files)),
                }))
            }
        },
        (None, true) => anyhow::bail!(
            "a `tls:` listener needs `server.tls` with the `cert` and `key` it serves, or `acme`"
        ),
        (Some(_), false) => {
            tracing::warn!("`server.tls` is set but no listener speaks TLS; list one as `tls:HOST:PORT` (or, under systemd, name its socket `FileDescriptorName=tls`)");
            Ok(None)
        }
        (None, false) => Ok(None),
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
