//! The binary's edge: parse the command line, set up logging, load the
//! config, run. `anyhow` lives only here.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use heal7_proxy::check::{Credentials, check_database};
use heal7_proxy::cli::{Cli, Command};
use heal7_proxy::config::Config;
use heal7_proxy::config::Mode;
use heal7_proxy::metrics::Metrics;
use heal7_proxy::reload::{self, ConfigStore};
use heal7_proxy::rewrite::rewrite_sql;
use heal7_proxy::server::{self, ProxyState};
use heal7_proxy::session::{
    EncodingClass, Observer, SessionFacts, TextRewrite, rewrite_text, splice,
};
use heal7_proxy::workers::Workers;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "heal7_proxy=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("heal7-proxy: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            // Load and validate before binding anything.
            let store = Arc::new(ConfigStore::from_file(&config)?);
            let threads = worker_threads(&store.load().config)?;
            // The accepting runtime is one of the event loops; the others
            // get a thread each.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let workers = Workers::spawn(threads - 1)?;
            runtime.block_on(serve(store, workers))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rewrite {
            config,
            database,
            verbose,
            client_encoding,
            standard_conforming_strings,
        } => {
            let facts = SessionFacts {
                encoding: EncodingClass::of(client_encoding.as_bytes()),
                standard_conforming_strings: standard_conforming_strings == "on",
                ..SessionFacts::default()
            };
            rewrite(Config::load(&config)?, database, verbose, facts)
        }
        Command::Check { config, user } => {
            let config = Config::load(&config)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(check(config, user))
        }
        Command::Introspect { database, user } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(introspect(database, user))
        }
        Command::HashPassword => {
            let password = read_password()?;
            println!("{}", heal7_proxy::console::scram::hash_password(&password));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How many event loops serve sessions: `HEAL7_WORKER_THREADS` (to compare
/// settings without editing the file), else `proxy.worker_threads`, else
/// one per core.
fn worker_threads(config: &Config) -> anyhow::Result<usize> {
    let from_env = std::env::var("HEAL7_WORKER_THREADS")
        .ok()
        .map(|v| v.trim().parse::<usize>())
        .transpose()
        .context("HEAL7_WORKER_THREADS must be a number")?;
    let n = from_env
        .or(config.worker_threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok(n.max(1))
}

async fn serve(store: Arc<ConfigStore>, workers: Workers) -> anyhow::Result<()> {
    let config = store.load_full();
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin = match &config.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (proxy.admin_listen)"))?,
        ),
        None => None,
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = ?admin.as_ref().and_then(|a| a.local_addr().ok()),
        config = %config.source,
        databases = config.databases.len(),
        worker_threads = workers.len(),
        "heal7-proxy listening"
    );
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    tokio::spawn(reload::reload_on_sighup(store.clone(), shutdown.clone()));
    let (watch_store, watch_shutdown) = (store.clone(), shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) =
            reload::reload_on_file_change(watch_store, FILE_WATCH_DEBOUNCE, watch_shutdown).await
        {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or POST /reload");
        }
    });
    let mut state = ProxyState::with_store(store.clone());
    state.workers = workers;
    if let Some(admin) = admin {
        tokio::spawn(heal7_proxy::admin::run(
            admin,
            state.clone(),
            shutdown.clone(),
        ));
    }
    server::run(listener, state, shutdown).await?;
    Ok(())
}

/// An editor's save is several file events; wait this long for quiet.
const FILE_WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn rewrite(
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
    let sent = match route.mode {
        Mode::Off => TextRewrite::Unchanged,
        mode => rewrite_text(
            &input,
            &map,
            config.on_parse_error,
            &mut facts,
            rewrite_sql,
            &Observer::global(&metrics),
            mode == Mode::DryRun,
        ),
    };
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
async fn introspect(database: Option<String>, user: Option<String>) -> anyhow::Result<ExitCode> {
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
    let catalog =
        heal7_proxy::introspect::read_catalog(&host, port, &database, &credentials).await?;
    println!(
        "# heal7-proxy introspect: {database} on {host}:{port}; paste under databases.<name>:"
    );
    print!("{}", heal7_proxy::introspect::render(&catalog));
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

async fn check(config: Config, user: Option<String>) -> anyhow::Result<ExitCode> {
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
