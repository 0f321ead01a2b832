//! Config reload: on SIGHUP, and with `--watch` when the file or a file it includes changes —
//! editors and `git pull` that replace the file included, since folders are watched, not files.
//! The folders of the `include` patterns are those of the config that started the server. A file that fails `check`
//! is refused with its location logged, and the old config keeps serving. Jobs are never disturbed:
//! they carry their own rendered commands. With `server.tls`, the certificate and key files are
//! watched too, and a reload hands the new pair to the connections that come next.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use actix_web::web;
use anyhow::Context as _;
use notify::Watcher as _;
use tokio::sync::mpsc;

use crate::config::{self, ServerSettings, TlsSource};
use crate::http::AppState;

/// Changes to a file usually come as several events (truncate, write, rename); wait for them to settle.
const SETTLE: Duration = Duration::from_millis(200);

/// Starts the task that reloads on SIGHUP and, when `watch` is set, on file changes.
pub fn spawn(
    state: web::Data<AppState>,
    watch: bool,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let (changed_tx, mut changed) = mpsc::unbounded_channel::<()>();
    let watcher = if watch {
        let config = state.config();
        let tls_files: Vec<PathBuf> = config
            .server
            .tls
            .iter()
            .flat_map(|tls| match &tls.source {
                TlsSource::Files { cert, key, .. } => vec![cert.clone(), key.clone()],
                TlsSource::Acme(_) => Vec::new(),
            })
            .collect();
        Some(watch_file(
            &config.file,
            &config.include,
            &tls_files,
            changed_tx,
        )?)
    } else {
        None
    };
    Ok(tokio::spawn(async move {
        // The watcher stops when dropped, so this task owns it.
        let _watcher = watcher;
        loop {
            let cause = tokio::select! {
                Some(()) = hangup.recv() => "SIGHUP",
                Some(()) = changed.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while changed.try_recv().is_ok() {}
                    "file change"
                }
                else => return,
            };
            reload(&state, cause).await;
        }
    }))
}

/// Watches the config file's folder, the folders of the `include` patterns and those of
/// `tls_files`, and sends on `changed` when one of these files changes.
fn watch_file(
    file: &Path,
    include: &[String],
    tls_files: &[PathBuf],
    changed: mpsc::UnboundedSender<()>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let folder = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .map(|name| name.to_os_string())
        .context("the config path has no file name")?;
    // Events name paths as the watched folder is written; a canonical folder lets the patterns
    // compare with them.
    let folder = std::fs::canonicalize(&folder).unwrap_or(folder);
    let absolute = |relative: &str| folder.join(relative);
    let patterns: Vec<glob::Pattern> = include
        .iter()
        .filter_map(|pattern| glob::Pattern::new(&absolute(pattern).to_string_lossy()).ok())
        .collect();
    // The folder of each pattern: its path up to the first part with a wildcard.
    let mut folders = vec![folder.clone()];
    for pattern in include {
        let plain: PathBuf = absolute(pattern)
            .components()
            .take_while(|part| !part.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        let plain = if plain.is_dir() {
            plain
        } else {
            plain.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        if plain.is_dir() && !folders.contains(&plain) {
            folders.push(plain);
        }
    }
    // The certificate's and the key's folders (canonical), watched alone, not recursively: any
    // change there counts, since a renewal may swap a symlink or a folder (Kubernetes' `..data`)
    // rather than the files themselves.
    let mut tls_folders: Vec<PathBuf> = Vec::new();
    for tls_file in tls_files {
        let Some(parent) = tls_file.parent() else {
            continue;
        };
        let parent = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        if !tls_folders.contains(&parent) {
            tls_folders.push(parent);
        }
    }
    let tls_watched: Vec<PathBuf> = tls_folders
        .iter()
        .filter(|folder| !folders.contains(folder))
        .cloned()
        .collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let concerned = event.paths.iter().any(|path| {
            path.file_name() == Some(name.as_os_str())
                || patterns.iter().any(|pattern| pattern.matches_path(path))
                || path
                    .parent()
                    .is_some_and(|parent| tls_folders.iter().any(|folder| folder == parent))
        });
        if concerned {
            let _ = changed.send(());
        }
    })
    .context("cannot watch the config file")?;
    for (index, folder) in folders.iter().enumerate() {
        // Recursive for the include folders, whose patterns may reach into subfolders.
        let mode = if index == 0 {
            notify::RecursiveMode::NonRecursive
        } else {
            notify::RecursiveMode::Recursive
        };
        watcher
            .watch(folder, mode)
            .with_context(|| format!("cannot watch `{}`", folder.display()))?;
    }
    for folder in &tls_watched {
        watcher
            .watch(folder, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch `{}`", folder.display()))?;
    }
    Ok(watcher)
}

/// Loads the file again and swaps it in, or logs why not.
pub async fn reload(state: &AppState, cause: &str) {
    let current = state.config();
    let file = current.file.clone();
    let loaded = tokio::task::spawn_blocking(move || config::load(&file)).await;
    let mut fresh = match loaded {
        Ok(Ok(config)) => config,
        Ok(Err(errors)) => {
            state.metrics.reload(false);
            tracing::error!(
                cause,
                "config reload refused; the previous config keeps serving:\n{}",
                errors.render().trim_end()
            );
            return;
        }
        Err(error) => {
            state.metrics.reload(false);
            tracing::error!(cause, %error, "config reload failed");
            return;
        }
    };
    // The running config holds the command line's settings; the fresh one gets them too, so
    // only what the file changed is compared.
    fresh.apply_overrides(current.overrides().clone());
    keep_startup_settings(&mut fresh.server, &current.server);
    for warning in std::mem::take(&mut fresh.warnings) {
        tracing::warn!("{}", warning.trim_end());
    }
    // An ACME certificate is the ACME task's to replace; changed `acme` settings wait for a restart.
    let files = fresh.server.tls.as_ref().and_then(|tls| match &tls.source {
        TlsSource::Files { cert, pair, .. } => Some((cert, pair)),
        TlsSource::Acme(_) => None,
    });
    if let (Some(resolver), Some((cert, pair))) = (&state.tls, files) {
        let now = std::time::SystemTime::now();
        let serving_expired = resolver
            .current()
            .is_none_or(|serving| serving.expired(now).is_some());
        match pair.expired(now) {
            // An expired certificate never replaces a good one; the rest of the file applies.
            Some(at) if !serving_expired => tracing::error!(
                cert = %cert.display(),
                serial = pair.serial(),
                "the new TLS certificate expired on {at}; the one serving now is kept"
            ),
            _ => replace_certificate(resolver, cert, pair),
        }
    }
    let hooks = fresh.hooks.len();
    state.rate_limits.apply(&fresh);
    *state.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
    state.metrics.reload(true);
    tracing::info!(cause, hooks, "config reloaded");
}

/// Serves `pair` (from `cert`) to new connections, and says so when it is another certificate.
fn replace_certificate(
    resolver: &crate::tls::Resolver,
    cert: &Path,
    pair: &Arc<crate::tls::CertificatePair>,
) {
    let replaced = resolver.replace(Arc::clone(pair));
    let previous = replaced
        .as_ref()
        .map(|replaced| replaced.serial().to_string());
    if previous.as_deref() != Some(pair.serial()) {
        tracing::info!(
            cert = %cert.display(),
            serial = pair.serial(),
            previous,
            "TLS certificate replaced; new connections get it, open ones keep theirs"
        );
    }
}

/// Settings that only take effect at start: the running values stay, and a change is logged.
fn keep_startup_settings(fresh: &mut ServerSettings, running: &ServerSettings) {
    macro_rules! keep {
        ($($field:ident),*) => {$(
            if fresh.$field != running.$field {
                tracing::warn!("`server.{}` changed; it takes effect at the next restart", stringify!($field));
                fresh.$field = running.$field.clone();
            }
        )*};
    }
    // The TLS listeners were set up at start: without `server.tls` now, they keep the pair they
    // have, and a new `min_version` waits for the next restart (the certificate itself does not).
    match (&mut fresh.tls, &running.tls) {
        (None, Some(running_tls)) => {
            tracing::warn!("`server.tls` was removed; it takes effect at the next restart");
            fresh.tls = Some(running_tls.clone());
        }
        (Some(_), None) => {
            tracing::warn!("`server.tls` was added; it takes effect at the next restart");
        }
        (Some(fresh_tls), Some(running_tls)) => {
            if fresh_tls.min_version != running_tls.min_version {
                tracing::warn!(
                    "`server.tls.min_version` changed; it takes effect at the next restart"
                );
                fresh_tls.min_version = running_tls.min_version;
            }
            // The ACME task was started with the running `acme`; files in place of ACME, ACME in
            // place of files, or other `acme` settings take effect at the next restart.
            let acme_changed = match (&fresh_tls.source, &running_tls.source) {
                (TlsSource::Acme(fresh_acme), TlsSource::Acme(running_acme)) => {
                    fresh_acme != running_acme
                }
                (TlsSource::Files { .. }, TlsSource::Files { .. }) => false,
                _ => true,
            };
            if acme_changed {
                tracing::warn!("`server.tls.acme` changed; it takes effect at the next restart");
                fresh_tls.source = running_tls.source.clone();
            }
        }
        _ => {}
    }
    keep!(
        listen,
        base_path,
        state_dir,
        max_jobs,
        max_pending,
        retention,
        log_format,
        store,
        instance,
        heartbeat,
        lease
    );
}
