//! The admin HTTP endpoint (`proxy.admin_listen`, loopback by default):
//! `GET /metrics` (Prometheus text), `GET /healthz`, `GET /readyz`,
//! `GET /mapping` and `GET /unmapped` (JSON), `POST /reload`, and `GET /`,
//! the cut-over dashboard (`dashboard.html`: a static page whose script
//! reads the other routes).
//!
//! HTTP/1.1 on hyper: one request per connection (`connection: close`), no
//! request bodies read, request head bounded (431 past it), a deadline on
//! each connection. It reads the shared state and never touches a client
//! session. What the routes show lives in [`prometheus`] and [`views`]; this
//! file only serves them.

mod guard;
mod prometheus;
mod prometheus_redis;
mod views;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE,
    X_FRAME_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::listener;
use crate::reload::reload_off_loop;
use crate::state::ProxyState;

pub use prometheus::render_metrics;

/// Bytes of request line and headers hyper buffers before answering 431
/// (hyper's smallest allowed buffer, the bound the hand-parsed server had).
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request head, and the deadline
/// for a whole connection (a client that does not read its answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// The dashboard: plain HTML and one inline script, no build step and
/// nothing fetched from elsewhere. It holds no data (its script reads
/// `/mapping`, `/unmapped` and `/metrics`), so it is served whole.
const DASHBOARD: &str = include_str!("dashboard.html");
/// Only the page's own inline script and style, fetches to this origin,
/// and no framing by another site.
const DASHBOARD_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the admin endpoint reads: the proxy's shared state.
pub type AdminState = ProxyState;

/// Serve admin requests until `shutdown`, then let requests in flight
/// finish (each is bounded by [`REQUEST_TIMEOUT`]).
pub async fn run(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let Some((stream, _)) = listener::accept(&listener, &shutdown, "admin").await else {
            break;
        };
        let (state, shutdown) = (state.clone(), shutdown.clone());
        connections.spawn(async move {
            if tokio::time::timeout(REQUEST_TIMEOUT, serve(stream, state, shutdown))
                .await
                .is_err()
            {
                tracing::debug!("admin request timed out");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// One connection: one request, one answer, then close.
async fn serve(stream: TcpStream, state: AdminState, shutdown: CancellationToken) {
    let service = hyper::service::service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(answer(&request, &state).await) }
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        // The hand-parsed server sent no Date; answers stay as they were.
        .auto_date_header(false);
    let connection = http1.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        _ = shutdown.cancelled() => {
            // Finish the request in progress, take no other.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "admin connection failed");
    }
}

/// The answer to one request: routes by method and path (the query string
/// is ignored); 405 for a known path with another method, else 404.
async fn answer(request: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    let checked = guard::check(
        request.uri().path(),
        request.headers(),
        &state.config.load().admin_http,
    );
    if let Err(refusal) = checked {
        let mut response = respond(refusal.status(), TEXT, refusal.body().into());
        if refusal == guard::Refusal::Token {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return response;
    }
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => {
            let mut page = respond(200, HTML, DASHBOARD.into());
            let headers = page.headers_mut();
            headers.insert(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DASHBOARD_POLICY),
            );
            headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return page;
        }
        (&Method::GET, "/metrics") => (200, PROMETHEUS, render_metrics(state)),
        (&Method::GET, "/healthz") => (200, TEXT, "ok\n".into()),
        (&Method::GET, "/readyz") => {
            let (status, body) = views::readyz(state).await;
            (status, TEXT, body)
        }
        (&Method::GET, "/mapping") => (200, JSON, views::mapping_json(state)),
        (&Method::GET, "/unmapped") => (200, JSON, views::unmapped_json(state)),
        (&Method::POST, "/reload") => {
            let (status, body) = views::reload_answer(state, reload_off_loop(&state.config).await);
            (status, JSON, body)
        }
        (_, "/" | "/metrics" | "/healthz" | "/readyz" | "/mapping" | "/unmapped" | "/reload") => {
            (405, TEXT, "method not allowed\n".into())
        }
        _ => (404, TEXT, "not found\n".into()),
    };
    respond(status, content_type, body)
}

fn respond(status: u16, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).expect("the routes answer valid status codes");
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An admin endpoint on port 0 over a one-database config.
    async fn start() -> (
        std::net::SocketAddr,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let config = Config::from_yaml(
            "databases:\n  heal7:\n    schemas: {s: {tables: [t]}}\n",
            "t",
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(run(listener, ProxyState::new(config), shutdown.clone()));
        (addr, shutdown, server)
    }

    /// Send `request` as is and read the answer until the server closes.
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
            .await
            .expect("the server closes after one answer")
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn status(response: &str) -> &str {
        &response[9..12]
    }

    #[tokio::test]
    async fn routes_answer_with_status_type_and_close() {
        let (addr, shutdown, server) = start().await;
        let ok = exchange(
            addr,
            b"GET /healthz?x=1 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        let head = ok.to_ascii_lowercase();
        assert!(
            head.contains("content-type: text/plain; charset=utf-8\r\n"),
            "{ok}"
        );
        assert!(head.contains("content-length: 3\r\n"), "{ok}");
        assert!(head.contains("connection: close\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nok\n"), "{ok}");

        let metrics = exchange(addr, b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await;
        assert_eq!(status(&metrics), "200", "{metrics}");
        assert!(
            metrics
                .to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n")
        );
        assert!(
            metrics.contains("\nheal7_proxy_config_generation 1\n"),
            "{metrics}"
        );

        let mapping = exchange(addr, b"GET /mapping HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await;
        assert_eq!(status(&mapping), "200", "{mapping}");
        assert!(
            mapping
                .to_ascii_lowercase()
                .contains("content-type: application/json\r\n")
        );

        let page = exchange(addr, b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await;
        assert_eq!(status(&page), "200", "{page}");
        let head = page.to_ascii_lowercase();
        assert!(head.contains("content-type: text/html; charset=utf-8\r\n"));
        assert!(head.contains("content-security-policy: default-src 'none';"));
        assert!(head.contains("x-frame-options: deny\r\n"));
        assert!(page.contains("<title>heal7-proxy: cut-over</title>"));
        let wrong = exchange(addr, b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await;
        assert_eq!(status(&wrong), "405", "{wrong}");

        // A config built in memory cannot be reloaded: refused, as JSON.
        let reload = exchange(addr, b"POST /reload HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await;
        assert_eq!(status(&reload), "422", "{reload}");
        assert!(reload.contains("\"result\":\"refused\""), "{reload}");

        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_wrong_method_405() {
        let (addr, shutdown, server) = start().await;
        let missing = exchange(addr, b"GET /nope HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await;
        assert_eq!(status(&missing), "404", "{missing}");
        assert!(missing.ends_with("\r\n\r\nnot found\n"), "{missing}");
        let wrong = exchange(addr, b"POST /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await;
        assert_eq!(status(&wrong), "405", "{wrong}");
        assert!(wrong.ends_with("\r\n\r\nmethod not allowed\n"), "{wrong}");
        let wrong = exchange(addr, b"GET /reload HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await;
        assert_eq!(status(&wrong), "405", "{wrong}");
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn headers_past_the_bound_are_431() {
        let (addr, shutdown, server) = start().await;
        let big = format!(
            "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nx-filler: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST_BYTES + 1024)
        );
        let refused = exchange(addr, big.as_bytes()).await;
        assert_eq!(status(&refused), "431", "{refused}");
        // Just under the bound is served.
        let fits = format!(
            "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-filler: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST_BYTES - 1024)
        );
        assert_eq!(status(&exchange(addr, fits.as_bytes()).await), "200");
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let (addr, shutdown, server) = start().await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("run returns on shutdown")
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }

    /// Issue 10, finding 5: `POST /reload` answered any Origin and Host,
    /// and nothing asked for a credential.
    #[tokio::test]
    async fn foreign_hosts_origins_and_missing_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "s3cret-admin-token-0123\n").unwrap();
        let yaml = format!(
            "proxy:\n  admin_http: {{token_file: {}}}\ndatabases:\n  heal7:\n    schemas: {{s: {{tables: [t]}}}}\n",
            token_file.display()
        );
        let config = Config::from_yaml(&yaml, "t").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(run(listener, ProxyState::new(config), shutdown.clone()));
        let ask = |request: String| async move { exchange(addr, request.as_bytes()).await };

        let open = ask("GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".into()).await;
        assert_eq!(status(&open), "200", "{open}");
        let no_token = ask("POST /reload HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".into()).await;
        assert_eq!(status(&no_token), "401", "{no_token}");
        assert!(
            no_token
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer")
        );
        let mapping = ask("GET /mapping HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".into()).await;
        assert_eq!(status(&mapping), "401", "{mapping}");
        // The dashboard is behind the token too, unless open_paths lists `/`.
        let page = ask("GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".into()).await;
        assert_eq!(status(&page), "401", "{page}");
        let bearer = "authorization: Bearer s3cret-admin-token-0123\r\n";
        let with_token = ask(format!(
            "GET /mapping HTTP/1.1\r\nhost: 127.0.0.1\r\n{bearer}\r\n"
        ))
        .await;
        assert_eq!(status(&with_token), "200", "{with_token}");
        let rebinding = ask(format!(
            "GET /mapping HTTP/1.1\r\nhost: evil.example\r\n{bearer}\r\n"
        ))
        .await;
        assert_eq!(status(&rebinding), "403", "{rebinding}");
        let cross_site = ask(format!(
            "POST /reload HTTP/1.1\r\nhost: 127.0.0.1\r\norigin: http://evil.example\r\n{bearer}\r\n"
        ))
        .await;
        assert_eq!(status(&cross_site), "403", "{cross_site}");
        shutdown.cancel();
        server.await.unwrap();

        std::fs::write(&token_file, "short\n").unwrap();
        let refused = Config::from_yaml(&yaml, "t").unwrap_err().to_string();
        assert!(refused.contains("proxy.admin_http.token_file"), "{refused}");
    }
}
