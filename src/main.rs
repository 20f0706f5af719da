//! The binary's edge: parse the command line, set up logging, load the
//! config, run. `anyhow` lives only here.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use heal7_proxy::cli::{Cli, Command};
use heal7_proxy::commands;
use heal7_proxy::config::{Config, Overrides};
use heal7_proxy::http;
use heal7_proxy::listener;
use heal7_proxy::reload::{self, ConfigStore};
use heal7_proxy::rewrite::{EncodingClass, SessionFacts};
use heal7_proxy::server;
use heal7_proxy::state::ProxyState;
use heal7_proxy::workers::Workers;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("heal7-proxy: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr: text with colours only when stderr is a terminal (a
/// file or a pipe gets no escape codes), or JSON lines.
fn init_logging(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "heal7_proxy=info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A failed write (stderr's reader gone) would be reported with
        // eprintln!, which panics on that same closed stderr: the task
        // logging then died, the accept loop or the stop signal with it.
        .log_internal_errors(false);
    if format == "json" {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            config,
            peer_id,
            admin_listen,
        } => {
            // 1. Load and validate before binding anything.
            let overrides = Overrides {
                peer_id,
                admin_listen,
            };
            let store = Arc::new(ConfigStore::from_file_with(&config, overrides)?);
            let threads = worker_threads(&store.load().config)?;
            raise_open_file_limit(store.load().max_client_connections);
            // 2. Runtimes. The accepting one is also a session event loop,
            // the others get a thread each; the admin plane (HTTP endpoint,
            // reload triggers) gets its own, so a reload's file read and
            // parse or a slow scrape never delays a session.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let admin_runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let workers = Workers::spawn(runtime.handle(), threads - 1)?;
            // 3. Bind, each listener on the runtime that serves it.
            let snapshot = store.load_full();
            let peering = &snapshot.start.peering;
            let listener = runtime
                .block_on(listener::bind(&snapshot.start.listen, peering.reuse_port))
                .with_context(|| format!("cannot listen on {}", snapshot.start.listen))?;
            // With reuse_port, peers reach this very process at its own
            // `peers` entry, not at the shared port.
            let cancel_listener = match peering.cancel_listen() {
                Some(addr) => Some(runtime.block_on(listener::bind(addr, false)).with_context(
                    || format!("cannot listen on {addr} (this instance's entry in proxy.peers)"),
                )?),
                None => None,
            };
            let admin = match &snapshot.start.admin_listen {
                Some(addr) => Some(
                    admin_runtime
                        .block_on(TcpListener::bind(addr))
                        .with_context(|| format!("cannot listen on {addr} (proxy.admin_listen)"))?,
                ),
                None => None,
            };
            let redis_listener = match &snapshot.start.redis_listen {
                Some(addr) => Some(
                    runtime
                        .block_on(TcpListener::bind(addr))
                        .with_context(|| format!("cannot listen on {addr} (redis.listen)"))?,
                ),
                None => None,
            };
            tracing::info!(
                listen = %listener.local_addr()?,
                admin = ?admin.as_ref().and_then(|a| a.local_addr().ok()),
                config = %snapshot.source,
                databases = snapshot.databases.len(),
                worker_threads = workers.len(),
                reuse_port = peering.reuse_port,
                peer_id = ?peering.peer_id,
                peer_cancels = ?cancel_listener.as_ref().and_then(|a| a.local_addr().ok()),
                mapping_hash = %snapshot.mapping_hash,
                "heal7-proxy listening"
            );
            if let Some(addr) = admin.as_ref().and_then(|a| a.local_addr().ok())
                && !addr.ip().is_loopback()
                && snapshot.admin_http.token.is_none()
            {
                tracing::warn!(
                    admin = %addr,
                    "the admin HTTP endpoint listens beyond loopback without proxy.admin_http.token_file: anyone who reaches it can reload and read the report"
                );
            }
            if let Some(addr) = redis_listener.as_ref().and_then(|l| l.local_addr().ok())
                && !addr.ip().is_loopback()
            {
                tracing::warn!(
                    redis = %addr,
                    "redis.listen is beyond loopback: Redis clients are not authenticated by the proxy, which logs in with redis.upstream's credentials for each of them"
                );
            }
            // Held for the process's life it would keep the first maps (and
            // their caches) alive after every reload.
            drop(snapshot);
            // 4. Serve until a stop signal, then stop the admin plane too.
            let mut state = ProxyState::with_store(store);
            state.workers = workers;
            let shutdown = CancellationToken::new();
            let admin_plane =
                spawn_admin_plane(admin_runtime, admin, state.clone(), shutdown.clone())?;
            let served = runtime.block_on(async {
                let redis = redis_listener
                    .map(|l| tokio::spawn(server::run_redis(l, state.clone(), shutdown.clone())));
                let served = serve(listener, cancel_listener, state, shutdown.clone()).await;
                // The Postgres side stops on the signal; the Redis side too.
                shutdown.cancel();
                if let Some(redis) = redis {
                    let _ = redis.await;
                }
                served
            });
            shutdown.cancel();
            if admin_plane.join().is_err() {
                tracing::error!("the admin thread panicked");
            }
            served?;
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
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(commands::check(config, user))
        }
        Command::Introspect { database, user } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(commands::introspect(database, user))
        }
        Command::HashPassword => commands::hash_password(),
        Command::MigrateKeys {
            config,
            dry_run,
            batch,
        } => {
            let config = Config::load(&config)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(commands::migrate_keys(
                &config,
                dry_run,
                batch.max(1),
                &mut std::io::stdout(),
            ))?;
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
        .or(config.start.worker_threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok(n.max(1))
}

/// Raise the soft open-file limit to the hard one and log both: each
/// client holds two sockets (its own and its upstream's), and services
/// often start with a soft limit of 1024 whatever the hard limit allows.
fn raise_open_file_limit(max_client_connections: usize) {
    use rlimit::Resource;
    let before = match rlimit::getrlimit(Resource::NOFILE) {
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open file limit");
            return;
        }
    };
    // increase_nofile_limit knows the platforms whose hard limit cannot
    // be the soft one as is (macOS's OPEN_MAX).
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, soft = before, "cannot raise the open file limit");
    }
    let Ok((soft, hard)) = rlimit::getrlimit(Resource::NOFILE) else {
        return;
    };
    tracing::info!(soft_before = before, soft, hard, "open file limit");
    // Two descriptors per client (its socket and its upstream's).
    if soft < (max_client_connections as u64).saturating_mul(2) {
        tracing::warn!(
            soft,
            max_client_connections,
            "the open file limit is below two per client: clients may fail with `Too many open files` before proxy.max_client_connections is reached"
        );
    }
}

/// Accept and serve clients until SIGINT or SIGTERM.
async fn serve(
    listener: TcpListener,
    cancel_listener: Option<TcpListener>,
    state: ProxyState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(l) = cancel_listener {
        tokio::spawn(server::run_cancel_listener(
            l,
            state.clone(),
            shutdown.clone(),
        ));
    }
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        // Stop first, then say so: nothing may stand between the signal
        // and the stop.
        signal.cancel();
        tracing::info!(
            "shutting down: sessions finish their transaction (a second signal exits at once)"
        );
        // The handlers stay installed, so a second signal would otherwise
        // do nothing: the operator's way out of a long drain.
        wait_for_stop_signal().await;
        tracing::warn!("second stop signal: exiting without waiting for sessions");
        std::process::exit(1);
    });
    server::run(listener, state, shutdown).await?;
    Ok(())
}

/// The admin plane on its own thread (`heal7-admin`) and current-thread
/// runtime: the HTTP endpoint and the reload triggers (SIGHUP, file
/// watch). None of it runs on an event loop that carries sessions; it
/// stops when `shutdown` is cancelled.
fn spawn_admin_plane(
    runtime: tokio::runtime::Runtime,
    admin: Option<TcpListener>,
    state: ProxyState,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("heal7-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let store = state.config.clone();
                let sighup = reload::reload_on_sighup(store.clone(), shutdown.clone());
                let watch = async {
                    if let Err(e) =
                        reload::reload_on_file_change(store, FILE_WATCH_DEBOUNCE, shutdown.clone())
                            .await
                    {
                        tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or POST /reload");
                    }
                };
                let endpoint = async {
                    if let Some(admin) = admin {
                        http::run(admin, state, shutdown.clone()).await;
                    }
                };
                tokio::join!(sighup, watch, endpoint);
            })
        })
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
