//! Run the relay alone for manual smoke tests with psql and pgbench:
//! `cargo run --example relay_smoke -- CONFIG.yaml [LISTEN]`.
//! Stops (gracefully) on Ctrl-C. The real CLI lives in `main.rs`.

use heal7_proxy::config::Config;
use heal7_proxy::server::{self, ProxyState};
use tokio_util::sync::CancellationToken;

fn main() -> std::io::Result<()> {
    // RELAY_THREADS=1 runs a current-thread runtime, for comparing.
    let threads: usize = std::env::var("RELAY_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b.enable_all().build()?
    };
    runtime.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: relay_smoke CONFIG.yaml [LISTEN]");
    let config = Config::load(path.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let listen = args.next().unwrap_or_else(|| config.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    server::run(listener, ProxyState::new(config), shutdown).await
}
