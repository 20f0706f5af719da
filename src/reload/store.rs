//! The live config store: one validated [`Snapshot`] behind an `ArcSwap`,
//! a generation, and the record of the last reload. It knows nothing of what
//! triggers a reload (see `triggers`).

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::{ArcSwap, Guard};

use crate::config::{Config, ConfigError, Overrides};

/// One validated config with the generation it was loaded as.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Config,
    /// 1 for the config the process started with, +1 per successful reload.
    pub generation: u64,
    pub loaded_at: SystemTime,
}

impl Deref for Snapshot {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

/// Why the last reload was refused (cleared by the next successful one).
#[derive(Debug, Clone)]
pub struct ReloadFailure {
    pub message: String,
    pub at: SystemTime,
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub generation: u64,
    /// The file was byte-for-byte the one in force: nothing was swapped and
    /// the generation stayed (editors and watchers fire more than once).
    pub unchanged: bool,
    /// Settings that changed in the file but apply only after a restart.
    pub needs_restart: Vec<String>,
}

/// The live config: an `ArcSwap` so the hot path reads it without a lock.
#[derive(Debug)]
pub struct ConfigStore {
    current: ArcSwap<Snapshot>,
    /// The current snapshot's generation, readable with one atomic load:
    /// sessions compare it per batch to learn of a reload.
    generation: AtomicU64,
    /// The file reloads read; `None` for a config built in memory (tests).
    path: Option<PathBuf>,
    last_error: Mutex<Option<ReloadFailure>>,
    /// The text of the file in force, to tell a real change from a touch.
    loaded_text: Mutex<Option<String>>,
    /// Serialises reloads so two triggers cannot race on the generation.
    reload_lock: Mutex<()>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Times the file was read for a reload, an unchanged one included.
    pub reads: AtomicU64,
    /// Command-line and environment settings applied to every read.
    overrides: Overrides,
}

impl ConfigStore {
    /// A store for a config read from `path` (reloads re-read that file).
    pub fn from_file(path: &Path) -> Result<ConfigStore, ConfigError> {
        Self::from_file_with(path, Overrides::default())
    }

    /// [`ConfigStore::from_file`] with `overrides` winning over the file,
    /// now and on every reload.
    pub fn from_file_with(path: &Path, overrides: Overrides) -> Result<ConfigStore, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let config = Config::from_yaml_with(&text, &path.display().to_string(), &overrides)?;
        let mut store = Self::new(config, Some(path.to_owned()), Some(text));
        store.overrides = overrides;
        Ok(store)
    }

    /// A store with no file behind it (reloads then fail).
    pub fn in_memory(config: Config) -> ConfigStore {
        Self::new(config, None, None)
    }

    fn new(config: Config, path: Option<PathBuf>, text: Option<String>) -> ConfigStore {
        ConfigStore {
            current: ArcSwap::from_pointee(Snapshot {
                config,
                generation: 1,
                loaded_at: SystemTime::now(),
            }),
            generation: AtomicU64::new(1),
            path,
            last_error: Mutex::new(None),
            loaded_text: Mutex::new(text),
            reload_lock: Mutex::new(()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            overrides: Overrides::default(),
        }
    }

    /// The generation of the current snapshot (one atomic load; cheaper than
    /// [`ConfigStore::load`] for a session that only asks "did it change?").
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot; cheap (no lock, no allocation).
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, to keep across awaits (a
    /// transaction holds one for its whole duration).
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn last_error(&self) -> Option<ReloadFailure> {
        self.last_error.lock().expect("reload error lock").clone()
    }

    /// Re-read the file; on success swap it in, on error keep the old one.
    pub fn reload(&self) -> Result<ReloadReport, ConfigError> {
        let Some(path) = &self.path else {
            return Err(ConfigError::Invalid {
                source_name: "(in memory)".into(),
                key: "-".into(),
                message: "this config was not loaded from a file".into(),
            });
        };
        let _serial = self.reload_lock.lock().expect("reload lock");
        self.reads.fetch_add(1, Ordering::Relaxed);
        let text = std::fs::read_to_string(path);
        if let Ok(text) = &text
            && self
                .loaded_text
                .lock()
                .expect("loaded text lock")
                .as_deref()
                == Some(text.as_str())
            // A certificate rotated under the same config text is a change.
            && self.current.load().tls.files_unchanged()
            && self.current.load().redis.as_ref().is_none_or(|r| r.tls_files_unchanged())
        {
            *self.last_error.lock().expect("reload error lock") = None;
            return Ok(ReloadReport {
                generation: self.current.load().generation,
                unchanged: true,
                needs_restart: Vec::new(),
            });
        }
        let result = text
            .map_err(|error| ConfigError::Read {
                path: path.to_owned(),
                error,
            })
            .and_then(|text| {
                let config =
                    Config::from_yaml_with(&text, &path.display().to_string(), &self.overrides)?;
                Ok((config, text))
            });
        let (mut config, text) = match result {
            Ok(x) => x,
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().expect("reload error lock") = Some(ReloadFailure {
                    message: e.to_string(),
                    at: SystemTime::now(),
                });
                tracing::error!(error = %e, "config reload refused; the old mapping stays");
                return Err(e);
            }
        };
        let old = self.current.load_full();
        // Settings fixed at start stay as they are, and the report says so.
        let needs_restart = config.start.changes_from(&old.config.start);
        config.start = old.config.start.clone();
        let generation = old.generation + 1;
        self.current.store(Arc::new(Snapshot {
            config,
            generation,
            loaded_at: SystemTime::now(),
        }));
        // After the store: a session that sees the new number loads the
        // new snapshot.
        self.generation.store(generation, Ordering::Release);
        self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("reload error lock") = None;
        *self.loaded_text.lock().expect("loaded text lock") = Some(text);
        for note in &needs_restart {
            tracing::warn!("{note}");
        }
        tracing::info!(generation, file = %path.display(), "config reloaded");
        Ok(ReloadReport {
            generation,
            unchanged: false,
            needs_restart,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, tables: &str, listen: &str) {
        std::fs::write(
            path,
            format!(
                "proxy: {{listen: \"{listen}\"}}\ndatabases:\n  heal7:\n    schemas:\n      s: {{tables: [{tables}]}}\n"
            ),
        )
        .unwrap();
    }

    #[test]
    fn valid_reload_bumps_generation_and_invalid_keeps_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        write(&path, "users", "127.0.0.1:6432");
        let store = ConfigStore::from_file(&path).unwrap();
        assert_eq!(store.load().generation, 1);

        write(&path, "users, kasi_cache", "127.0.0.1:6432");
        let report = store.reload().unwrap();
        assert_eq!(report.generation, 2);
        assert!(report.needs_restart.is_empty());
        let snap = store.load();
        assert!(
            snap.route("heal7")
                .map
                .unwrap()
                .schema_of("kasi_cache", false)
                .is_some()
        );

        std::fs::write(&path, "databases: {heal7: {bogus: 1}}\n").unwrap();
        let err = store.reload().unwrap_err().to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
        assert_eq!(store.load().generation, 2);
        assert!(store.last_error().unwrap().message.contains("bogus"));
        assert_eq!(store.reloads_failed.load(Ordering::Relaxed), 1);

        write(&path, "users", "127.0.0.1:6432");
        assert_eq!(store.reload().unwrap().generation, 3);
        assert!(store.last_error().is_none());

        // The same bytes again (a second event for one save): no new generation.
        let again = store.reload().unwrap();
        assert!(again.unchanged);
        assert_eq!(again.generation, 3);
    }

    #[test]
    fn listen_change_needs_restart_and_keeps_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        write(&path, "users", "127.0.0.1:6432");
        let store = ConfigStore::from_file(&path).unwrap();
        write(&path, "users", "127.0.0.1:7000");
        let report = store.reload().unwrap();
        assert_eq!(report.needs_restart.len(), 1);
        assert!(report.needs_restart[0].contains("needs restart"));
        assert_eq!(store.load().start.listen, "127.0.0.1:6432");
    }

    #[test]
    fn peering_change_needs_restart_and_the_override_holds_across_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let text = |peers: &str| format!("proxy: {{peers: {{{peers}}}}}\ndatabases: {{a: {{}}}}\n");
        std::fs::write(&path, text("1: \"a:1\", 2: \"b:1\"")).unwrap();
        let overrides = Overrides {
            peer_id: Some(2),
            ..Overrides::default()
        };
        let store = ConfigStore::from_file_with(&path, overrides).unwrap();
        assert_eq!(store.load().start.peering.peer_id, Some(2));
        // The file has no peer_id: the override is applied again on reload.
        std::fs::write(&path, text("1: \"a:1\", 2: \"b:2\"")).unwrap();
        let report = store.reload().unwrap();
        assert_eq!(report.needs_restart.len(), 1, "{report:?}");
        assert!(report.needs_restart[0].contains("proxy.peers"));
        assert_eq!(store.load().start.peering.address_of(2), Some("b:1"));
    }

    #[test]
    fn worker_threads_change_needs_restart_and_keeps_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let text = |n: usize| format!("proxy: {{worker_threads: {n}}}\ndatabases: {{a: {{}}}}\n");
        std::fs::write(&path, text(2)).unwrap();
        let store = ConfigStore::from_file(&path).unwrap();
        std::fs::write(&path, text(4)).unwrap();
        let report = store.reload().unwrap();
        assert_eq!(report.needs_restart.len(), 1);
        assert!(report.needs_restart[0].contains("proxy.worker_threads"));
        assert_eq!(store.load().start.worker_threads, Some(2));
    }
}
