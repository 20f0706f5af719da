//! heal7-proxy: a PostgreSQL wire-protocol proxy that qualifies bare table
//! names from a schema map, so legacy services keep working after their tables
//! moved out of `public`.
//!
//! Layers, top-down; a module imports only from its own layer or below, and
//! the connection handlers of L3 never import each other (`tests/layers.rs`
//! keeps this true):
//! - L5, the binary's edge: `main`, [`cli`], [`commands`] (rewrite, check,
//!   introspect, hash-password). `anyhow` lives only here.
//! - L4, assembly: [`server`] (accept -> startup -> console or session;
//!   drain), [`http`] (the admin HTTP endpoint).
//! - L3, connection handlers: [`startup`], [`session`], [`console`].
//! - L2, shared services: [`state`] (what handlers share), [`reload`] (the
//!   live config and its triggers), [`qualify`] (the one statement step),
//!   [`metrics`], [`clients`], [`unmapped`], [`cancel`], [`shutdown`],
//!   [`farewell`], [`listener`], [`workers`], [`stream`] (plain or TLS
//!   sockets), [`upstream`] (opening a server connection), [`pool`]
//!   (server connection pools).
//! - L1: [`config`] (YAML -> validated routes and schema maps).
//! - L0, pure (no tokio, no I/O): [`protocol`] (the wire codec and
//!   SQLSTATEs), [`auth`] (SCRAM, md5), [`rewrite`] (SQL text + map + session
//!   facts in, SQL text + what it did out).
#![forbid(unsafe_code)]

// L0
pub mod auth;
pub mod protocol;
pub mod rewrite;
// L1
pub mod config;
// L2
pub mod cancel;
pub mod clients;
pub mod farewell;
pub mod listener;
pub mod metrics;
pub mod pool;
pub mod qualify;
pub mod reload;
pub mod shutdown;
pub mod state;
pub mod stream;
pub mod unmapped;
pub mod upstream;
pub mod workers;
// L3
pub mod console;
pub mod session;
pub mod startup;
// L4
pub mod http;
pub mod server;
// L5
pub mod cli;
pub mod commands;
