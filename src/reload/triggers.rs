//! What starts a reload besides the admin endpoints: SIGHUP and a change of
//! the config file on disk. Each calls [`ConfigStore::reload`] through
//! [`reload_off_loop`], so reading and parsing the file never runs on the
//! event loop that awaits the trigger.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;

use super::{ConfigStore, ReloadReport};

/// [`ConfigStore::reload`] on tokio's blocking pool: file read, YAML parse
/// and map building are milliseconds of CPU that must not stall the tasks
/// sharing the caller's event loop.
pub async fn reload_off_loop(store: &Arc<ConfigStore>) -> Result<ReloadReport, ConfigError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.reload()).await {
        Ok(result) => result,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // The runtime is shutting down: the old snapshot stays.
            Err(_) => Err(ConfigError::Invalid {
                source_name: "(reload)".into(),
                key: "-".into(),
                message: "cancelled: the proxy is shutting down".into(),
            }),
        },
    }
}

/// Reload on SIGHUP until `shutdown`.
pub async fn reload_on_sighup(store: Arc<ConfigStore>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() { return; }
                tracing::info!("SIGHUP: reloading config");
                let _ = reload_off_loop(&store).await;
            }
        }
    }
}

/// Whether a watch event can mean new content. Opening, reading and closing
/// the file unwritten (the proxy's own read during a reload, a `cat`) and
/// metadata changes (atime, chown, chmod) cannot: reacting to them made
/// every reload trigger the next one, every 200 ms, forever.
fn may_change_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

/// The directory entry a Kubernetes ConfigMap volume swaps on every update
/// (the config file is a symlink through it and never changes itself).
const CONFIGMAP_DATA: &str = "..data";

/// Reload when the config file changes on disk, debounced by `debounce`.
///
/// The directory is watched rather than the file, so editors that save by
/// writing a new file and renaming it over the old one are seen too, and
/// so is a ConfigMap's `..data` symlink swap. A change that leaves the
/// file's text as it was reloads nothing and logs only at debug level.
pub async fn reload_on_file_change(
    store: Arc<ConfigStore>,
    debounce: Duration,
    shutdown: CancellationToken,
) -> Result<(), notify::Error> {
    use notify::{RecursiveMode, Watcher};
    let Some(path) = store.path().map(Path::to_owned) else {
        return Ok(());
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    let dir = path
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| ".".into());
    let file_name = path.file_name().map(|n| n.to_owned());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && may_change_content(&event.kind)
            && event.paths.iter().any(|p| {
                p.file_name() == file_name.as_deref()
                    || p.file_name() == Some(std::ffi::OsStr::new(CONFIGMAP_DATA))
            })
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            got = rx.recv() => {
                if got.is_none() { return Ok(()); }
                // Debounce: an editor's save is several events; wait until
                // they stop, then read the file once.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(debounce) => break,
                        more = rx.recv() => if more.is_none() { return Ok(()); },
                    }
                }
                tracing::debug!(file = %path.display(), "config file event: reading it");
                // The store logs a reload and a refusal; identical text is
                // neither.
                let _ = reload_off_loop(&store).await;
            }
        }
    }
}
