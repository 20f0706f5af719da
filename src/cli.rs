//! The command line: `serve`, `rewrite`, `check`, `introspect` and
//! `hash-password`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "heal7-proxy",
    version,
    about = "A PostgreSQL proxy that qualifies bare table names from a schema map"
)]
pub struct Cli {
    /// Log lines as text (colours only on a terminal) or as one JSON object
    /// per line, for log shippers.
    #[arg(long, global = true, env = "HEAL7_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// This instance's peer id (0..=15), over `proxy.peer_id`, so
        /// replicas can share one file.
        #[arg(long, env = "HEAL7_PEER_ID")]
        peer_id: Option<u32>,
        /// The admin HTTP address (HOST:PORT), over `proxy.admin_listen`:
        /// processes sharing one file on one host need one each.
        #[arg(long, env = "HEAL7_ADMIN_LISTEN")]
        admin_listen: Option<String>,
    },
    /// Read SQL on stdin and print what the proxy would send.
    Rewrite {
        #[arg(long, short)]
        config: PathBuf,
        /// The database name a client would connect with (default: the
        /// first database in the config).
        #[arg(long, short)]
        database: Option<String>,
        /// Also print, on stderr, one line per table name found and what was
        /// done with it.
        #[arg(long, short)]
        verbose: bool,
        /// The client_encoding of the input (as a client would set it), for
        /// text that is not UTF-8: EUC_KR, UHC, SJIS, ...
        #[arg(long, default_value = "UTF8")]
        client_encoding: String,
        /// The session's standard_conforming_strings: with `off`, a
        /// backslash escapes inside '...' literals.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        standard_conforming_strings: String,
    },
    /// Check that every mapped object (tables, views, sequences, types,
    /// functions) exists where the map says, in each upstream database, and
    /// print the search_path each client database name gets (credentials
    /// from PGUSER, PGPASSWORD, PGSSLMODE).
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// User to connect as (overrides PGUSER).
        #[arg(long, short)]
        user: Option<String>,
    },
    /// Read a live database's catalog and print the schema map that
    /// describes it, in the config's YAML shape (paste it under
    /// `databases.<name>:`). Connects with PGHOST (default localhost),
    /// PGPORT (5432), PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE.
    Introspect {
        /// Database to read (overrides PGDATABASE; default: the user name).
        #[arg(long, short)]
        database: Option<String>,
        /// User to connect as (overrides PGUSER).
        #[arg(long, short)]
        user: Option<String>,
    },
    /// Print the SCRAM-SHA-256 verifier of a password, for
    /// `proxy.admin_users`. The password is read from stdin (prompted for,
    /// without echo, on a terminal); it is never taken as an argument, so it
    /// stays out of shell history and `ps`.
    HashPassword,
}
