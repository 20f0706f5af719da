//! The one-shot commands besides `serve`: what the proxy would send
//! (`rewrite`), whether the catalog matches the map (`check`), a map from a
//! catalog (`introspect`), and admin verifiers (`hash-password`). The
//! binary's edge, like `main`: errors are `anyhow` here.

pub mod check;
pub mod introspect;
pub mod migrate_keys;

pub use migrate_keys::migrate_keys;

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::{Config, Mode};
use crate::metrics::Metrics;
use crate::qualify::{Observer, TextRewrite, qualify};
use crate::rewrite::{SessionFacts, rewrite_sql, splice};
use check::{Credentials, check_database};

/// `rewrite`: stdin -> what the proxy would send for it, on stdout.
pub fn rewrite(
    config: Config,
    database: Option<String>,
    verbose: bool,
    mut facts: SessionFacts,
) -> anyhow::Result<ExitCode> {
    let database = database.unwrap_or_else(|| config.databases[0].name.clone());
    let route = config.route(&database);
    let Some(map) = route.map else {
        bail!(
            "database `{database}` is not in the config: the proxy would forward its statements unchanged"
        );
    };
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    if verbose {
        // The per-name report needs text; non-UTF-8 input is shown lossily.
        let lossy = String::from_utf8_lossy(&input);
        let report = rewrite_sql(&lossy, &map, config.on_parse_error);
        eprintln!("outcome: {:?}", report.outcome);
        for name in &report.names {
            let what = name.decision.describe();
            eprintln!("  {} at byte {}: {what}", name.name, name.offset);
        }
        if let Some(e) = &report.parse_error {
            eprintln!("parser: {e}");
        }
    }
    // The session's own path: encoding handling, mode and policy included.
    let metrics = Metrics::default();
    let sent = qualify(
        &input,
        Some(&map),
        route.mode,
        config.on_parse_error,
        &mut facts,
        rewrite_sql,
        &Observer::global(&metrics),
    );
    if route.mode != Mode::Rewrite {
        eprintln!(
            "database `{database}` has mode {}: the proxy sends the text unchanged",
            route.mode.as_str()
        );
    }
    let out = match sent {
        TextRewrite::Unchanged => input,
        TextRewrite::Changed { edits, .. } => splice(&input, &edits),
        TextRewrite::Rejected { code, message } => {
            eprintln!("rejected ({}): {message}", code.code());
            return Ok(ExitCode::from(1));
        }
    };
    std::io::stdout().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `introspect`: the catalog of one database as a schema map on stdout.
pub async fn introspect(
    database: Option<String>,
    user: Option<String>,
) -> anyhow::Result<ExitCode> {
    let credentials = Credentials::from_env(user);
    let host = std::env::var("PGHOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let port = match std::env::var("PGPORT").ok().filter(|p| !p.is_empty()) {
        Some(p) => p
            .trim()
            .parse::<u16>()
            .context("PGPORT must be a port number")?,
        None => 5432,
    };
    let database = database
        .or_else(|| std::env::var("PGDATABASE").ok().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| credentials.effective_user());
    let catalog = introspect::read_catalog(&host, port, &database, &credentials).await?;
    println!(
        "# heal7-proxy introspect: {database} on {host}:{port}; paste under databases.<name>:"
    );
    print!("{}", introspect::render(&catalog));
    Ok(ExitCode::SUCCESS)
}

/// `hash-password`: a SCRAM-SHA-256 verifier for `proxy.admin_users`.
pub fn hash_password() -> anyhow::Result<ExitCode> {
    let password = read_password()?;
    println!("{}", crate::auth::scram::hash_password(&password));
    Ok(ExitCode::SUCCESS)
}

/// The password for `hash-password`: one line from stdin; on a terminal,
/// prompted for with echo off (stty, so no unsafe termios code here).
fn read_password() -> anyhow::Result<Vec<u8>> {
    use std::io::IsTerminal;
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let echo_off = tty && {
        eprint!("Password: ");
        std::io::stderr().flush()?;
        stty("-echo")
    };
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if echo_off {
        stty("echo");
        eprintln!();
    }
    read.context("cannot read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password.as_bytes().to_vec())
}

/// `check`: is every mapped object where the map says.
pub async fn check(config: Config, user: Option<String>) -> anyhow::Result<ExitCode> {
    let credentials = Credentials::from_env(user);
    let mut all_ok = true;
    for db in &config.databases {
        // What string and catalog lookups (`'users'::regclass`, psql's \d)
        // resolve through, per name a client connects with.
        let names = std::iter::once((db.name.as_str(), String::new())).chain(
            db.aliases
                .iter()
                .map(|a| (a.name.as_str(), format!(" (alias of {})", db.name))),
        );
        for (name, what) in names {
            match config.route(name).search_path {
                Some(path) => println!("{name}{what} search_path: {path}"),
                None => println!(
                    "{name}{what} search_path: not set (mode {}): the server's default",
                    db.mode.as_str()
                ),
            }
        }
        match check_database(db, &credentials).await {
            Ok(objects) => {
                for o in objects {
                    all_ok &= o.present;
                    println!("{} {}: {}", db.name, o.label(), o.status());
                }
            }
            Err(e) => {
                all_ok = false;
                println!("{}: error: {e}", db.name);
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
