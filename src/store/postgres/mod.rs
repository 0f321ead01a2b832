//! The PostgreSQL backend: jobs, their output and the cluster's instances in one database that any
//! number of instances share.
//!
//! Every decision the boundary promises is one transaction: `admit` locks the lane's row for the
//! modes whose limits and supersession must be exact (`queue`, `latest`, `replace`), and `claim`
//! runs under a cluster-wide advisory lock and asks `decide` (a pure function) which jobs start.
//! Ends and output go through the `outbox`, which retries them in order until the database takes
//! them, so a job's end is never lost while the database is away. `listener` holds this
//! instance's name (a session lock) on the `LISTEN` connection that turns other instances' words
//! into [`StoreEvent`]s; `cluster` keeps its heartbeat and reaps instances gone silent.
//! `notifications` keeps the outbox of jobs' ends, which every instance delivers from.
//!
//! Only this module speaks SQL to PostgreSQL: the schema is in `schema.rs`, the row mapping in
//! `rows.rs`.

mod admit;
mod approvals;
mod claim;
mod cluster;
mod decide;
mod direct;
mod jobs;
mod listener;
mod notifications;
mod outbox;
mod retry;
mod rows;
mod schema;
mod starter;
mod transaction;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use self::outbox::Outbox;
use self::transaction::{begin, conflicted, retrying};
use super::{Durability, StoreError, StoreEvent, StoreStats};
use crate::command::JobCommand;
use crate::job::JobId;

/// How long a call waits for a connection from the pool, or for a new one to be made, before it
/// fails with [`StoreError::Unavailable`]: a request never hangs on a database that is away.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often an idle connection is probed, and the unit of how long an unanswered one lives.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Connections per instance in each of its two pools (see [`Pools`]): admissions and reads in
/// parallel, plus the outbox's one.
const POOL_SIZE: usize = 6;

/// The instance's connections, in two pools that differ only in their `synchronous_commit`,
/// set when each connection opens (so a statement outside a transaction commits as its pool
/// says, and a transaction needs no statement to say it): a commit on `disk` is answered once
/// it is on the database's disk (and its synchronous standbys'), whatever the server's default;
/// one on `fast` once the database server holds it, on its disk shortly after.
struct Pools {
    disk: Pool,
    fast: Pool,
}

impl Pools {
    fn open(config: &tokio_postgres::Config) -> Result<Pools, StoreError> {
        Ok(Pools {
            disk: pool(config, "on")?,
            fast: pool(config, "off")?,
        })
    }

    fn of(&self, durability: Durability) -> &Pool {
        match durability {
            Durability::Disk => &self.disk,
            Durability::Os => &self.fast,
        }
    }
}

/// `config` whose sessions also take `settings` (`-c NAME=VALUE ...`), after the URL's own
/// `options`.
fn with_settings(config: &tokio_postgres::Config, settings: &str) -> tokio_postgres::Config {
    let mut config = config.clone();
    let options = match config.get_options() {
        Some(options) => format!("{options} {settings}"),
        None => settings.to_string(),
    };
    config.options(options);
    config
}

/// Makes the pools' connections on the runtime that opened the store (the server's), whichever
/// task asks first for one: a connection's socket and the task that drives it belong to the
/// runtime they were made on, and an HTTP worker's runtime stops with the worker (at shutdown,
/// its connections would die under the outbox's last writes) and is busy with its requests.
struct OnRuntime(tokio::runtime::Handle);

impl deadpool_postgres::Connect for OnRuntime {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let config = config.clone();
        let runtime = self.0.clone();
        Box::pin(async move {
            match runtime.spawn(connect_here(config.clone())).await {
                Ok(connected) => connected,
                // The server's runtime is stopping (or the task panicked): made here instead.
                Err(_) => connect_here(config).await,
            }
        })
    }
}

/// A connection, and the task that drives it, on the current runtime.
async fn connect_here(
    config: tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "a connection to the job store's database ended");
        }
    });
    Ok((client, driver))
}

/// A pool of connections whose sessions commit with this `synchronous_commit`, after the URL's
/// own `options`.
fn pool(config: &tokio_postgres::Config, synchronous_commit: &str) -> Result<Pool, StoreError> {
    let config = with_settings(
        config,
        &format!("-c synchronous_commit={synchronous_commit}"),
    );
    let manager = Manager::from_connect(
        config,
        OnRuntime(tokio::runtime::Handle::current()),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|error| StoreError::Database(Box::new(error)))
}

/// A handle on the PostgreSQL store. Clones are cheap and share the pool and the tasks.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

pub use self::outbox::RowsWriter;

struct Inner {
    pools: Pools,
    failure: Failure,
    instance: String,
    /// This run's id in `instances.boot`, so `close` deletes this run's row only.
    boot: String,
    heartbeat: Duration,
    lease: Duration,
    /// The commands of jobs admitted here that only this instance runs and that are not stored
    /// in full (a `wait` or `stream` job's), until claimed.
    /// With when each was kept: the heartbeat forgets only commands older than an admission
    /// can take, whose jobs ended without being claimed here.
    commands: Mutex<HashMap<JobId, (JobCommand, std::time::Instant)>>,
    /// The jobs claimed here and not yet finished: the heartbeat stops those no longer recorded
    /// running here (another instance took this one for dead and ended them).
    running: Mutex<HashSet<JobId>>,
    /// Jobs whose claim may have committed unheard (see `claim`).
    unsettled: Mutex<HashSet<JobId>>,
    /// Since when this instance's heartbeats have all gone through; `None` while they fail.
    /// Only an instance heard for a whole lease reaps others: after the database was away, every
    /// instance's last heartbeat is old, and those alive must get the time to be heard again.
    beating_since: Mutex<Option<std::time::Instant>>,
    outbox: Outbox,
    starter: starter::Starter,
    /// Whether this instance holds its name (see `listener`).
    name: Mutex<listener::Name>,
    /// Work for this instance may have been queued since a look found none: set by every word
    /// of work (another instance's `NOTIFY`, the heartbeat's polling, a reconnect, an admission
    /// here that queued its job, a claim that took all it could), taken by the next look. A
    /// look while it is unset finds nothing without asking the database.
    work_hint: Arc<AtomicBool>,
    /// When the first retry waiting for this instance is due, as the last look found.
    next_due_ms: Mutex<Option<i64>>,
    events: Mutex<Option<mpsc::UnboundedReceiver<StoreEvent>>>,
    /// The cluster's queued jobs, as last counted.
    waiting: AtomicUsize,
    commits: AtomicU64,
    synced: AtomicU64,
    writes: AtomicU64,
    /// Stops the heartbeat and the listener at `close`.
    stop: CancellationToken,
    /// The heartbeat and the listener, which `close` waits for.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// The last handle is gone: the heartbeat and the listener stop, which releases the name
    /// (the row stays until another instance reaps it, or this name starts again).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("instance", &self.inner.instance)
            .field("database", &self.inner.failure.target)
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url`, migrates its schema, takes the name `instance` in the
    /// cluster (refused while another live process holds it), ends what a previous run of this
    /// instance left, and starts the heartbeat, the listener and the outbox.
    pub async fn open(
        url: &str,
        instance: &str,
        heartbeat: Duration,
        lease: Duration,
    ) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| StoreError::BadUrl(Box::new(error)))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        // A database host that vanishes without closing its connections (a network partition)
        // fails them within seconds instead of the system's TCP timeouts (minutes).
        config
            .keepalives_idle(KEEPALIVE)
            .keepalives_interval(KEEPALIVE)
            .keepalives_retries(2);
        config.application_name(format!("hookrunner {instance}"));
        let failure = Failure::of(&config);
        let pools = Pools::open(&config)?;
        schema::migrate(&pools.disk, &failure).await?;
        let (events_sender, events) = mpsc::unbounded_channel();
        let work_hint = Arc::new(AtomicBool::new(true));
        let listener =
            listener::Listener::connect(&config, instance, &failure, &events_sender, &work_hint)
                .await?;
        let boot = format!("{:032x}", rand::random::<u128>());
        let inner = Arc::new(Inner {
            outbox: Outbox::start(
                (pools.disk.clone(), pools.fast.clone()),
                failure.clone(),
                instance.to_string(),
            ),
            starter: starter::Starter::start(&pools, &failure, instance),
            work_hint,
            next_due_ms: Mutex::new(None),
            name: Mutex::new(listener::Name::Held),
            pools,
            failure,
            instance: instance.to_string(),
            boot,
            heartbeat,
            lease,
            commands: Mutex::default(),
            running: Mutex::default(),
            unsettled: Mutex::default(),
            beating_since: Mutex::default(),
            events: Mutex::new(Some(events)),
            waiting: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            stop: CancellationToken::new(),
            tasks: Mutex::default(),
        });
        let store = PgStore { inner };
        store.register().await?;
        listener.serve(&store, config, events_sender.clone());
        store.heartbeat_every(events_sender);
        Ok(store)
    }

    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The store again from a task's weak handle; `None` once every handle is gone.
    fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<PgStore> {
        weak.upgrade().map(|inner| PgStore { inner })
    }

    /// The other instances' words, for the one caller that serves them; `None` after the first.
    pub fn events(&self) -> Option<mpsc::UnboundedReceiver<StoreEvent>> {
        lock(&self.inner.events).take()
    }

    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> StoreStats {
        let inner = &self.inner;
        let outbox = inner.outbox.stats();
        StoreStats {
            commits: inner.commits.load(Ordering::Relaxed) + outbox.commits,
            synced: inner.synced.load(Ordering::Relaxed) + outbox.synced,
            writes: inner.writes.load(Ordering::Relaxed) + outbox.writes,
        }
    }

    /// Resolves once every end and output handed to the store before it is in the database.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.outbox.flush().await
    }

    /// Order: a read through this handle sees the ends and output handed over before it. The
    /// wait is bounded, so a read still fails promptly while the database is away.
    async fn settle(&self) {
        self.inner.outbox.settle(CONNECT_TIMEOUT).await;
    }

    /// Counts a committed transaction of `writes` statements.
    fn committed(&self, writes: u64, synced: bool) {
        let inner = &self.inner;
        inner.commits.fetch_add(1, Ordering::Relaxed);
        inner.writes.fetch_add(writes, Ordering::Relaxed);
        if synced {
            inner.synced.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A connection whose commits reach the disk before they are answered.
    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.client_for(Durability::Disk).await
    }

    /// A connection whose commits are as durable as `durability` says.
    async fn client_for(
        &self,
        durability: Durability,
    ) -> Result<deadpool_postgres::Client, StoreError> {
        self.inner
            .pools
            .of(durability)
            .get()
            .await
            .map_err(|error| self.inner.failure.pool(error))
    }

    fn sql(&self, error: tokio_postgres::Error) -> StoreError {
        self.inner.failure.sql(error)
    }
}

/// Turns the client's errors into the store's, naming the database by its host, port and name
/// only: the URL may hold a password.
#[derive(Clone, Debug)]
pub(super) struct Failure {
    target: Arc<str>,
}

impl Failure {
    fn of(config: &tokio_postgres::Config) -> Failure {
        use tokio_postgres::config::Host;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let database = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres");
        Failure {
            target: Arc::from(format!("{host}:{port}/{database}")),
        }
    }

    fn pool(&self, error: PoolError) -> StoreError {
        match error {
            PoolError::Backend(error) => self.sql(error),
            other => StoreError::Unavailable {
                target: self.target.to_string(),
                source: Box::new(other),
            },
        }
    }

    /// A connection the server turned away (authentication, no such database) is
    /// [`StoreError::Refused`]; a statement the database refused is [`StoreError::Database`]; a
    /// connection that failed, or a server shutting down, is [`StoreError::Unavailable`].
    fn sql(&self, error: tokio_postgres::Error) -> StoreError {
        let turned_away = error.as_db_error().is_some_and(|db| {
            db.code().code().starts_with("28") || *db.code() == SqlState::INVALID_CATALOG_NAME
        });
        if turned_away {
            return StoreError::Refused {
                target: self.target.to_string(),
                source: Box::new(error),
            };
        }
        let refused = error.as_db_error().is_some_and(|db| {
            let code = db.code().code();
            !(code.starts_with("08")
                || code.starts_with("57P")
                || *db.code() == SqlState::TOO_MANY_CONNECTIONS)
        });
        if refused {
            StoreError::Database(Box::new(error))
        } else {
            StoreError::Unavailable {
                target: self.target.to_string(),
                source: Box::new(error),
            }
        }
    }
}

/// The statement that makes a transaction's commit as durable as `durability` says: `Disk`
/// waits for the database's WAL flush (and its synchronous standbys), whatever the server's
/// default; `Os` is kept by the database server once answered, on its disk shortly after.
fn synchronous_commit(durability: Durability) -> &'static str {
    match durability {
        Durability::Disk => "SET LOCAL synchronous_commit = on",
        Durability::Os => "SET LOCAL synchronous_commit = off",
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each change under these locks leaves the value whole; a panic elsewhere does not make it
    // wrong.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Unix milliseconds as the database writes them.
fn now_ms() -> i64 {
    crate::job::now_ms()
}

/// Runs each statement through its connection's statement cache: prepared once per connection,
/// then one round trip per call instead of two (parse, then bind and execute).
pub(super) struct Cached<'a, C>(pub &'a C);

/// For jobs that `transaction` ended without their succeeding: gives their duplicate keys back
/// (a redelivery runs again) and tells every instance they ended.
pub(super) async fn ended_unsucceeded(
    transaction: &deadpool_postgres::Transaction<'_>,
    ids: &[String],
) -> Result<(), tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    Cached(transaction)
        .execute("DELETE FROM dedupe WHERE job_id = ANY($1)", &[&ids])
        .await?;
    Cached(transaction)
        .execute(
            "SELECT pg_notify('hookrunner_ended', id) FROM unnest($1::text[]) AS id",
            &[&ids],
        )
        .await?;
    Ok(())
}

impl<C: deadpool_postgres::GenericClient> Cached<'_, C> {
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.0.prepare_cached(sql).await?;
        self.0.execute(&statement, params).await
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.0.prepare_cached(sql).await?;
        self.0.query(&statement, params).await
    }

    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        let statement = self.0.prepare_cached(sql).await?;
        self.0.query_one(&statement, params).await
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.0.prepare_cached(sql).await?;
        self.0.query_opt(&statement, params).await
    }
}
