//! The binary's edge: parse the command line, set up logging, load the
//! config, run. `anyhow` lives only here.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use heal7_proxy::cli::{Cli, Command};
use heal7_proxy::commands;
use heal7_proxy::config::Config;
use heal7_proxy::reload::{self, ConfigStore};
use heal7_proxy::rewrite::{EncodingClass, SessionFacts};
use heal7_proxy::server;
use heal7_proxy::state::ProxyState;
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
            commands::rewrite(Config::load(&config)?, database, verbose, facts)
        }
        Command::Check { config, user } => {
            let config = Config::load(&config)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(commands::check(config, user))
        }
        Command::Introspect { database, user } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(commands::introspect(database, user))
        }
        Command::HashPassword => commands::hash_password(),
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
        .or(config.start.worker_threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok(n.max(1))
}

async fn serve(store: Arc<ConfigStore>, workers: Workers) -> anyhow::Result<()> {
    let config = store.load_full();
    let listener = tokio::net::TcpListener::bind(&config.start.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.start.listen))?;
    let admin = match &config.start.admin_listen {
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
        tokio::spawn(heal7_proxy::http::run(
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
