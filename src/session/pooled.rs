//! A session on a pooled database: the proxy authenticates the client
//! itself (its verifier looked up with `auth_query` as the pool's
//! `auth_user`), then lends it a server connection logged in with what the
//! exchange revealed (pass-through: SCRAM ClientKey or md5 hash, never a
//! password), with the client's startup parameters applied by SET.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::relay::{self, RelayContext};
use super::{SessionError, Summary};
use crate::auth::md5;
use crate::auth::scram::{Binding, ScramError, ScramServer, Verifier};
use crate::cancel::CancelTarget;
use crate::config::{PoolMode, PoolSettings, Route};
use crate::pool::{Credentials, Pool, PoolError, ServerConn, ServerError, UpstreamTarget};
use crate::protocol::{self, MAX_AUTH_FRAME, StartupMessage, peek_header, tag};
use crate::reload::Snapshot;
use crate::state::ProxyState;
use crate::stream::Stream;

/// Startup parameters that are not settings.
const NOT_SETTINGS: [&str; 4] = ["user", "database", "options", "replication"];

pub(super) struct PooledSession<'a> {
    pub route: &'a Route,
    pub settings: &'a Arc<PoolSettings>,
    pub config: &'a Arc<Snapshot>,
    pub state: &'a ProxyState,
    pub client_database: &'a str,
}

impl PooledSession<'_> {
    /// The pool's connections start with the user, the routed database and
    /// the route's search_path; each client's own parameters are SET.
    fn target(&self, user: &str) -> UpstreamTarget {
        let mut startup = StartupMessage {
            version: protocol::PROTOCOL_3_0,
            params: Vec::new(),
        };
        startup.set("user", user.as_bytes());
        startup.set("database", self.route.database.as_bytes());
        if let Some(search_path) = &self.route.search_path {
            startup.append_setting("search_path", search_path);
        }
        UpstreamTarget {
            host: self.route.host.clone(),
            port: self.route.port,
            tls: self.route.tls.clone(),
            startup: startup.encode(),
            connect_timeout: self.config.connect_timeout,
        }
    }

    /// The pool of (client database, `user`), following the live config.
    fn pool(&self, user: &str) -> Arc<Pool> {
        let pool = self
            .state
            .pools
            .get(self.client_database, user, self.settings);
        pool.follow(self.settings, self.target(user));
        pool
    }
}

/// Serve a pooled client from its StartupMessage until it leaves. `client`
/// is taken by the relay; while it is still here, the caller can tell the
/// client why the session ends.
pub(super) async fn serve(
    client: &mut Option<Stream>,
    mut buf: BytesMut,
    session: PooledSession<'_>,
    client_startup: &StartupMessage,
    mut ctx: RelayContext,
) -> Result<Summary, SessionError> {
    let stream = client.as_mut().expect("the client stream");
    let user = client_startup
        .get_str("user")
        .filter(|u| !u.is_empty())
        .ok_or(SessionError::NoUser)?
        .into_owned();
    let settings = session.settings;
    let verifier = lookup_verifier(&session, &user).await?;
    let credentials = authenticate(
        stream,
        &mut buf,
        &user,
        verifier,
        session.state,
        session.config.tls.channel_binding.as_deref(),
    )
    .await?;
    // Only now: a pool (and its metric series) per authenticated user, so
    // made-up user names cannot grow the proxy.
    let pool = session.pool(&user);
    let clients = pool.stats.clients_active.fetch_add(1, Ordering::Relaxed);
    let _client_slot = ClientSlot(&pool);
    if clients >= settings.max_client_connections {
        return Err(SessionError::PoolClients {
            database: session.client_database.to_owned(),
            user,
            limit: settings.max_client_connections,
        });
    }
    pool.set_credentials(credentials);
    let wanted = startup_settings(client_startup, session.route.search_path.is_some())?;

    if settings.mode == PoolMode::Transaction {
        let state = session.state.clone();
        let workers = &session.state.workers;
        let home = pool.event_loop(|| workers.place_pool());
        let stream = client.take().expect("the client stream");
        // A TLS stream cannot be handed to another I/O driver; it stays
        // and its pool's connections come to it.
        if workers.is_current(home) || stream.is_tls() {
            let (back, result) =
                serve_transactions(stream, buf, state, Arc::clone(&pool), wanted, ctx).await;
            *client = back;
            return result;
        }
        let moved_pool = Arc::clone(&pool);
        let moved = workers.run_on(home, async move {
            let pool = moved_pool;
            let stream = match stream.rehome() {
                Ok(stream) => stream,
                Err(e) => return (None, Err(SessionError::Io(e))),
            };
            serve_transactions(stream, buf, state, pool, wanted, ctx).await
        });
        return match moved.await {
            Ok((back, result)) => {
                *client = back;
                result
            }
            Err(e) => Err(SessionError::Io(std::io::Error::other(format!(
                "the session's task on its pool's event loop failed: {e}"
            )))),
        };
    }

    let mut lease = pool.acquire(&session.state.metrics).await?;
    if let Err(e) = apply_settings(&mut lease.conn, &wanted, &[]).await {
        lease.discard();
        return Err(e.into());
    }
    let proxy_key = session.state.cancel_keys.issue(Some(CancelTarget {
        addr: lease.conn.addr,
        key: lease.conn.key,
    }));
    let _key = IssuedKey(session.state, proxy_key);
    answer_login(stream, &lease.conn, proxy_key).await?;

    let server = std::mem::replace(&mut lease.conn.stream, Stream::Closed);
    ctx.upstream = lease.conn.addr;
    ctx.upstream_tls = server.is_tls();
    let result = relay::relay::<{ relay::SESSION_POOL }>(
        client.take().expect("the client stream"),
        server,
        buf,
        BytesMut::new(),
        &ctx,
    )
    .await;
    match result {
        Ok(relayed) => {
            match relayed.server {
                Some(server) => {
                    lease.conn.stream = server;
                    lease.release(true);
                }
                None => lease.discard(),
            }
            Ok(relayed.summary)
        }
        Err(e) => {
            lease.discard();
            Err(e)
        }
    }
}

/// A transaction-pooled client from its authentication on: the login
/// answer from a lent connection, then the relay. Owns what it uses, so it
/// can run on its pool's event loop; the client stream comes back while
/// the caller can still tell the client why the session ends.
async fn serve_transactions(
    mut client: Stream,
    buf: BytesMut,
    state: ProxyState,
    pool: Arc<Pool>,
    wanted: Vec<(String, String)>,
    ctx: RelayContext,
) -> (Option<Stream>, Result<Summary, SessionError>) {
    let mut lease = match pool.acquire(&state.metrics).await {
        Ok(lease) => lease,
        Err(e) => return (Some(client), Err(e.into())),
    };
    if let Err(e) = apply_settings(&mut lease.conn, &wanted, &[]).await {
        lease.discard();
        return (Some(client), Err(e.into()));
    }
    // The key's server is set at each transaction.
    let (proxy_key, cancel_target) = state.cancel_keys.issue_pooled();
    let _key = IssuedKey(&state, proxy_key);
    if let Err(e) = answer_login(&mut client, &lease.conn, proxy_key).await {
        lease.release(false);
        return (Some(client), Err(e));
    }
    // The connection that answered the login goes back at once.
    lease.release(false);
    let result = relay::relay_transactions(client, buf, &ctx, &pool, &wanted, &cancel_target).await;
    (None, result)
}

/// AuthenticationOk, the server connection's parameters, the proxy's
/// cancel key and ReadyForQuery.
async fn answer_login(
    client: &mut Stream,
    conn: &ServerConn,
    proxy_key: (i32, i32),
) -> Result<(), SessionError> {
    let mut out = BytesMut::new();
    protocol::encode_authentication(&mut out, 0, &[]);
    for (name, value) in &conn.params {
        protocol::encode_parameter_status(&mut out, name.as_bytes(), value.as_bytes());
    }
    protocol::encode_backend_key_data(&mut out, proxy_key.0, proxy_key.1);
    protocol::encode_ready_for_query(&mut out, b'I');
    client.write_all(&out).await?;
    client.flush().await?;
    Ok(())
}

/// Counts one client of a pool while it lives.
struct ClientSlot<'a>(&'a Arc<Pool>);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.stats.clients_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cancel key the proxy issued, forgotten when the session ends.
struct IssuedKey<'a>(&'a ProxyState, (i32, i32));

impl Drop for IssuedKey<'_> {
    fn drop(&mut self) {
        self.0.cancel_keys.forget(self.1);
    }
}

/// The client's stored verifier, by `auth_query` on a connection of the
/// auth user's pool (`None`: no such user, or no password).
async fn lookup_verifier(
    session: &PooledSession<'_>,
    user: &str,
) -> Result<Option<String>, SessionError> {
    let auth = &session.settings.auth;
    let auth_pool = session.pool(&auth.user);
    auth_pool.set_credentials(Credentials::Password {
        user: auth.user.clone(),
        password: auth.password.clone(),
    });
    let mut lease = auth_pool
        .acquire(&session.state.metrics)
        .await
        .map_err(SessionError::AuthQuery)?;
    match lease.conn.query_one_param(&auth.query, user).await {
        Ok(rows) => {
            lease.release(false);
            Ok(rows
                .into_iter()
                .next()
                .and_then(|row| row.into_iter().nth(1).flatten())
                .filter(|v| !v.is_empty()))
        }
        Err(e) => {
            lease.discard();
            Err(SessionError::AuthQuery(PoolError::Server(e)))
        }
    }
}

/// Read one client frame during login (bounded like every pre-login frame).
async fn read_frame(client: &mut Stream, buf: &mut BytesMut) -> Result<BytesMut, SessionError> {
    loop {
        if let Some(h) = peek_header(buf, MAX_AUTH_FRAME).map_err(SessionError::Client)?
            && buf.len() >= h.total_len
        {
            return Ok(buf.split_to(h.total_len));
        }
        buf.reserve(1024);
        if client.read_buf(buf).await? == 0 {
            return Err(SessionError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

async fn password_message(
    client: &mut Stream,
    buf: &mut BytesMut,
) -> Result<BytesMut, SessionError> {
    let frame = read_frame(client, buf).await?;
    if frame[0] != tag::PASSWORD {
        return Err(SessionError::Client(protocol::ProtocolError::Malformed {
            what: "password message",
        }));
    }
    Ok(frame)
}

async fn send(client: &mut Stream, code: i32, data: &[u8]) -> Result<(), SessionError> {
    let mut out = BytesMut::new();
    protocol::encode_authentication(&mut out, code, data);
    client.write_all(&out).await?;
    client.flush().await?;
    Ok(())
}

/// Authenticate the client against `verifier` as PostgreSQL would: SCRAM
/// for a SCRAM verifier, md5 for an md5 hash; an unknown user runs SCRAM
/// against a mock verifier and fails exactly as a wrong password does.
async fn authenticate(
    client: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    verifier: Option<String>,
    state: &ProxyState,
    channel_binding: Option<&[u8]>,
) -> Result<Credentials, SessionError> {
    let failed = || SessionError::AuthFailed {
        user: user.to_owned(),
    };
    if let Some(hash) = verifier.as_deref().filter(|v| md5::is_md5_hash(v)) {
        let mut salt = [0u8; 4];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut salt);
        send(client, 5, &salt).await?;
        let frame = password_message(client, buf).await?;
        let answer = frame[5..].strip_suffix(&[0]).unwrap_or(&frame[5..]);
        if !md5::verify(hash, salt, answer) {
            return Err(failed());
        }
        return Ok(Credentials::Md5(hash.to_owned()));
    }
    let real = verifier.as_deref().and_then(|v| v.parse::<Verifier>().ok());
    let known = real.is_some();
    let verifier = real.unwrap_or_else(|| Verifier::mock(user, state.pools.mock_secret()));
    // Over TLS the client may bind to the proxy's own certificate: the
    // exchange ends here, so channel_binding=require works.
    let plus = channel_binding.filter(|_| client.is_tls());
    let offer: &[u8] = if plus.is_some() {
        b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"
    } else {
        b"SCRAM-SHA-256\0\0"
    };
    send(client, 10, offer).await?;
    let frame = password_message(client, buf).await?;
    let (mechanism, first) =
        protocol::sasl::parse_sasl_initial(&frame[5..]).map_err(SessionError::Client)?;
    let binding = match (mechanism, plus) {
        ("SCRAM-SHA-256", None) => Binding::NotOffered,
        ("SCRAM-SHA-256", Some(data)) => Binding::Offered {
            data,
            selected: false,
        },
        ("SCRAM-SHA-256-PLUS", Some(data)) => Binding::Offered {
            data,
            selected: true,
        },
        _ => {
            return Err(SessionError::Client(protocol::ProtocolError::Malformed {
                what: "SASL mechanism selection (not one the proxy offered)",
            }));
        }
    };
    let (server, server_first) = ScramServer::start_bound(verifier.clone(), first, binding)
        .map_err(|e| scram_error(e, user))?;
    send(client, 11, server_first.as_bytes()).await?;
    let frame = password_message(client, buf).await?;
    let (server_final, key) = server
        .finish_with_key(&frame[5..])
        .map_err(|e| scram_error(e, user))?;
    if !known {
        return Err(failed());
    }
    send(client, 12, server_final.as_bytes()).await?;
    Ok(Credentials::Scram { key, verifier })
}

fn scram_error(e: ScramError, user: &str) -> SessionError {
    match e {
        ScramError::Failed => SessionError::AuthFailed {
            user: user.to_owned(),
        },
        e => SessionError::Scram(e),
    }
}

/// The client's startup parameters to apply as settings: every one but
/// user/database/replication, and `-c name=value` / `--name=value` pairs
/// of `options`.
/// With `route_search_path`, the route's search_path (in the pool's
/// startup options) wins over the client's, as in the 1:1 relay.
fn startup_settings(
    startup: &StartupMessage,
    route_search_path: bool,
) -> Result<Vec<(String, String)>, SessionError> {
    let mut wanted = Vec::new();
    for (name, value) in &startup.params {
        let name = String::from_utf8_lossy(name);
        let value = String::from_utf8_lossy(value);
        if name == "options" {
            options_settings(&value, &mut wanted)?;
        } else if !NOT_SETTINGS.contains(&name.as_ref()) {
            wanted.push((name.into_owned(), value.into_owned()));
        }
    }
    if route_search_path {
        wanted.retain(|(n, _)| !n.eq_ignore_ascii_case("search_path"));
    }
    Ok(wanted)
}

/// `-c a=b --c=d` (backslash escapes a space, as libpq writes them).
fn options_settings(options: &str, out: &mut Vec<(String, String)>) -> Result<(), SessionError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let pair = if w == "-c" {
            words.next()
        } else {
            w.strip_prefix("--")
                .or_else(|| w.strip_prefix("-c"))
                .map(str::to_owned)
        };
        match pair.as_deref().and_then(|p| p.split_once('=')) {
            Some((name, value)) => out.push((name.replace('-', "_"), value.to_owned())),
            None => return Err(SessionError::UnsupportedOption(options.to_owned())),
        }
    }
    Ok(())
}

/// SET on the server connection each wanted setting whose value differs
/// from what it has: `wanted` values are quoted here, `carried` ones
/// (SET commands a transaction-pooled client ran) are SQL as it wrote them.
/// Whether the connection has exactly the settings a client wants, so
/// there is nothing to reset or set: the common case (one application's
/// clients share their startup settings), checked without allocating.
#[inline]
pub(super) fn already_applied(
    conn: &ServerConn,
    wanted: &[(String, String)],
    carried: &[(String, String)],
) -> bool {
    let named = |list: &[(String, String)], name: &str| {
        list.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    conn.applied
        .iter()
        .all(|(n, _)| named(wanted, n) || named(carried, n))
        && wanted.iter().all(|(name, value)| {
            conn.applied
                .iter()
                .chain(conn.params.iter())
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .is_some_and(|(_, v)| v == value)
        })
        && carried.iter().all(|(name, value)| {
            conn.applied
                .iter()
                .any(|(n, v)| n == name && v.strip_prefix("sql:") == Some(value.as_str()))
        })
}

pub(super) async fn apply_settings(
    conn: &mut ServerConn,
    wanted: &[(String, String)],
    carried: &[(String, String)],
) -> Result<(), PoolError> {
    if already_applied(conn, wanted, carried) {
        return Ok(());
    }
    let mut sql = String::new();
    // Whatever an earlier client set that this one does not want goes back
    // to the connection's default.
    let stale: Vec<String> = conn
        .applied
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| {
            !wanted.iter().any(|(w, _)| w.eq_ignore_ascii_case(n))
                && !carried.iter().any(|(c, _)| c.eq_ignore_ascii_case(n))
        })
        .collect();
    for name in &stale {
        sql.push_str(&format!("RESET {name};"));
    }
    conn.applied
        .retain(|(n, _)| !stale.iter().any(|s| s.eq_ignore_ascii_case(n)));
    for (name, value) in wanted {
        let current = conn
            .applied
            .iter()
            .chain(conn.params.iter())
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        if current == Some(value.as_str()) {
            continue;
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(PoolError::Server(ServerError::Unsupported(
                "a startup parameter name that is not an identifier",
            )));
        }
        sql.push_str("SET ");
        sql.push_str(name);
        sql.push_str(" = E'");
        for c in value.chars() {
            if c == '\'' || c == '\\' {
                sql.push('\\');
            }
            sql.push(c);
        }
        sql.push_str("';");
    }
    // Carried values are kept as written, marked so they never equal a
    // quoted startup value of the same name.
    for (name, value) in carried {
        let marked = format!("sql:{value}");
        if conn.applied.iter().any(|(n, v)| n == name && *v == marked) {
            continue;
        }
        sql.push_str(&format!("SET {name} TO {value};"));
    }
    if sql.is_empty() {
        return Ok(());
    }
    conn.simple(&sql).await?;
    for (name, value) in wanted {
        crate::pool::set_param(&mut conn.applied, name, value);
    }
    for (name, value) in carried {
        crate::pool::set_param(&mut conn.applied, name, &format!("sql:{value}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_settings() {
        let mut out = Vec::new();
        options_settings(
            r"-c search_path=a,b --statement-timeout=5s -cwork_mem=1MB -c x=a\ b",
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            [
                ("search_path".into(), "a,b".into()),
                ("statement_timeout".into(), "5s".into()),
                ("work_mem".into(), "1MB".into()),
                ("x".into(), "a b".into()),
            ]
        );
        assert!(options_settings("-v", &mut Vec::new()).is_err());
    }
}
