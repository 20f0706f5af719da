//! The binary's edge: parse the command line, set up logging, load the
//! config, run. `anyhow` lives only here.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use heal7_proxy::admin::AdminState;
use heal7_proxy::check::{Credentials, check_database};
use heal7_proxy::cli::{Cli, Command};
use heal7_proxy::config::Config;
use heal7_proxy::reload::{self, ConfigStore};
use heal7_proxy::rewrite::{Decision, Outcome, rewrite_sql};
use heal7_proxy::server::{self, ProxyState};
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
            let runtime = serve_runtime()?;
            runtime.block_on(serve(store))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rewrite {
            config,
            database,
            verbose,
        } => rewrite(Config::load(&config)?, database, verbose),
        Command::Check { config, user } => {
            let config = Config::load(&config)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(check(config, user))
        }
    }
}

/// The runtime the proxy serves on. `HEAL7_WORKER_THREADS` (until the
/// config file carries it): 1 = a current-thread runtime (no work stealing
/// and no cross-thread wake-ups: least CPU per query, one core at most);
/// N > 1 = a multi-thread runtime with N workers; unset = one worker per
/// core.
fn serve_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("HEAL7_WORKER_THREADS")
        .ok()
        .map(|v| v.trim().parse::<usize>())
        .transpose()
        .context("HEAL7_WORKER_THREADS must be a number")?;
    let runtime = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(n) if n > 1 => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
        _ => tokio::runtime::Runtime::new()?,
    };
    Ok(runtime)
}

async fn serve(store: Arc<ConfigStore>) -> anyhow::Result<()> {
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
    let state = ProxyState::with_store(store.clone());
    if let Some(admin) = admin {
        let admin_state = AdminState {
            store: store.clone(),
            metrics: state.metrics.clone(),
        };
        tokio::spawn(heal7_proxy::admin::run(
            admin,
            admin_state,
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

fn rewrite(config: Config, database: Option<String>, verbose: bool) -> anyhow::Result<ExitCode> {
    let database = database.unwrap_or_else(|| config.databases[0].name.clone());
    let route = config.route(&database);
    let Some(map) = route.map else {
        bail!(
            "database `{database}` is not in the config: the proxy would forward its statements unchanged"
        );
    };
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let sql = String::from_utf8(input).context("stdin is not UTF-8")?;
    let result = rewrite_sql(&sql, &map, config.on_parse_error);
    if verbose {
        eprintln!("outcome: {:?}", result.outcome);
        for name in &result.names {
            let what = match &name.decision {
                Decision::QualifiedByMap { schema } => format!("qualified by map -> {schema}"),
                Decision::QualifiedByFallback { schema } => {
                    format!("qualified by token fallback -> {schema}")
                }
                Decision::AlreadyQualified => "already qualified".to_owned(),
                Decision::Cte => "CTE in scope".to_owned(),
                Decision::NotInMap => "not in map".to_owned(),
            };
            eprintln!("  {} at byte {}: {what}", name.name, name.offset);
        }
        if let Some(e) = &result.parse_error {
            eprintln!("parser: {e}");
        }
    }
    if result.outcome == Outcome::Rejected {
        eprintln!(
            "rejected (on_parse_error: reject): statement names mapped table `{}` but does not parse: {}",
            result.rejected_table.as_deref().unwrap_or("?"),
            result.parse_error.as_deref().unwrap_or("?")
        );
        return Ok(ExitCode::from(1));
    }
    std::io::stdout().write_all(result.apply(&sql).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

async fn check(config: Config, user: Option<String>) -> anyhow::Result<ExitCode> {
    let credentials = Credentials::from_env(user);
    let mut all_ok = true;
    for db in &config.databases {
        match check_database(db, &credentials).await {
            Ok(tables) => {
                for t in tables {
                    all_ok &= t.present;
                    println!("{} {}.{}: {}", db.name, t.schema, t.table, t.status());
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
