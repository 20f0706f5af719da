//! The live configuration and its hot reload.
//!
//! Order of a reload, as in PgDog's `databases.rs`:
//! 1. read and fully validate the new file (nothing changes on error);
//! 2. keep the settings that cannot change live (the listen address) at their
//!    old values, and say so;
//! 3. swap in the new snapshot with a generation one higher;
//! 4. record the outcome (counters, last error) for the admin endpoints.
//!
//! Sessions load one snapshot per statement (per transaction inside one), so
//! no statement ever sees two mappings. Triggers (file watch, SIGHUP, admin)
//! all call [`ConfigStore::reload`].
//!
//! [`store`] holds the config and does a reload; [`triggers`] decides when.
//! The two are apart so the store (read by every session) never depends on
//! signals or file watching.

mod store;
mod triggers;

pub use store::{ConfigStore, ReloadFailure, ReloadReport, Snapshot};
pub use triggers::{reload_off_loop, reload_on_file_change, reload_on_sighup};
