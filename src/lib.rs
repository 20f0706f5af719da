//! heal7-proxy: a PostgreSQL wire-protocol proxy that qualifies bare table
//! names from a schema map, so legacy services keep working after their tables
//! moved out of `public`.
//!
//! Layers, and the direction of their dependencies:
//! - [`protocol`]: the pure wire codec (frames, startup packets, lazy views of
//!   the few messages the proxy acts on). Knows nothing of SQL or sockets.
//! - [`rewrite`]: the pure rewriter (SQL text + [`rewrite::SchemaMap`] in,
//!   SQL text + what it did out). Knows nothing of the wire or sockets.
//! - [`config`]: YAML -> validated routing table and schema maps.
//! - [`session`]: one client connection: startup, auth relay, frame relay,
//!   rewriting Query/Parse. Uses protocol, rewrite and config.
//! - [`console`]: the admin console on the virtual database `heal7_proxy`
//!   (SCRAM login, SHOW/RELOAD/EXPLAIN REWRITE). Uses config, rewrite and
//!   the shared state; never an upstream.
//! - [`clients`]: the registry of live sessions the console lists.
//! - [`server`]: the accept loop, cancel-key registry, shutdown.
//! - [`check`], [`introspect`]: the catalog side of the map (is every
//!   mapped object where the map says; what map describes a database).
//! - [`error`]: per-layer errors and their SQLSTATEs.
#![forbid(unsafe_code)]

pub mod admin;
pub mod check;
pub mod cli;
pub mod clients;
pub mod config;
pub mod console;
pub mod error;
pub mod introspect;
pub mod metrics;
pub mod protocol;
pub mod reload;
pub mod rewrite;
pub mod server;
pub mod session;
pub mod unmapped;
pub mod workers;
