//! End-to-end tests: heal7-proxy in-process on 127.0.0.1:0 in front of a real
//! PostgreSQL 15 that the harness starts (see harness.rs), driven by real
//! clients (tokio-postgres, psql, and raw sockets for malformed input).
//!
//! Assertions are on SQLSTATE codes and on data: every mapped table has a
//! stale copy in `public` with different rows, so a missed qualification
//! reads STALE-... and fails.
//!
//! Run: `cargo test --test e2e` (as root the server runs as the `postgres`
//! OS user). `HEAL7_TEST_PG` points the harness at an existing server
//! instead (see harness.rs).

mod auth;
mod cli;
mod console;
mod dashboard;
mod demo;
mod deploy_haproxy;
mod differential;
mod drain;
mod errors;
mod extended;
mod hardening;
mod harness;
mod harness_selftest;
mod instances;
mod observe;
mod pooling;
mod pooling_begin;
mod pooling_prepared;
mod pooling_sql_prepare;
mod qualify;
#[path = "../support/raw_wire.rs"]
mod raw_wire;
mod redis;
mod redis_harness;
mod redis_mux;
mod redis_tls;
mod relay;
mod reload;
mod routing;
mod session_facts;
mod tls;
mod tls_upstream;
mod wire;
