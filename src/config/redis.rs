//! The optional `redis:` section: where the Redis side listens, its
//! upstream, and the namespace rules that move legacy keys to their new
//! prefix and database. Raw shape and validation together: the section is
//! small and no other part of the file refers to it.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::Mode;
use super::tls::{
    ClientTls, ClientTlsMode, RawProxyTls, RawUpstreamTls, UpstreamTls, UpstreamTlsMode,
};
use crate::keyspace::{Channels, Namespaces, Rule, Unmatched};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    /// Where legacy services connect with their Redis clients.
    #[serde(default = "default_listen")]
    listen: String,
    /// The Redis server.
    #[serde(default)]
    upstream: RawUpstream,
    /// Old prefix on the client's selected db -> new prefix and db.
    #[serde(default)]
    namespaces: Vec<RawRule>,
    /// Pub/sub channel prefixes: old -> new (channels have no database).
    #[serde(default)]
    channels: Vec<RawChannelRule>,
    /// forward | reject: keys no rule matches.
    #[serde(default)]
    unmatched: Unmatched,
    /// rewrite | dry_run | off.
    #[serde(default)]
    mode: Mode,
    /// Largest request (all its arguments) accepted from a client; a longer
    /// one, or a bulk length past it, gets `-ERR Protocol error` and a
    /// close.
    #[serde(default = "default_max_request_bytes")]
    max_request_bytes: usize,
    /// Largest reply relayed from the server.
    #[serde(default = "default_max_reply_bytes")]
    max_reply_bytes: usize,
    /// TLS toward Redis clients (TLS from the first byte, as Redis does);
    /// without cert_file and key_file, proxy.tls's files are used.
    #[serde(default)]
    tls: RawRedisTls,
    /// Share server connections between clients whose connection state is
    /// the proxy's own (see README, Redis, "Multiplexing").
    #[serde(default = "default_multiplex")]
    multiplex: bool,
}

/// `redis.tls`: the keys of `proxy.tls`, and `client_ca_file`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisTls {
    /// disable | allow | require (default disable).
    #[serde(default)]
    mode: ClientTlsMode,
    /// PEM certificate chain, leaf first (default: proxy.tls's).
    #[serde(default)]
    cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (default: proxy.tls's).
    #[serde(default)]
    key_file: Option<PathBuf>,
    /// PEM roots: when set, every client must present a certificate that
    /// leads to them (mode require only).
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    #[serde(default = "super::raw::default_host")]
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    /// ACL user (Redis 6+); without it, AUTH sends the password alone.
    #[serde(default)]
    username: Option<String>,
    /// A file holding the password (trailing newline dropped).
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    password_env: Option<String>,
    /// TLS toward the Redis server: the keys of `databases.*.tls`.
    #[serde(default)]
    tls: RawUpstreamTls,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            host: super::raw::default_host(),
            port: default_port(),
            username: None,
            password_file: None,
            password_env: None,
            tls: RawUpstreamTls::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    from: String,
    #[serde(default)]
    from_db: u16,
    to: String,
    /// Default: `from_db`.
    #[serde(default)]
    to_db: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannelRule {
    from: String,
    to: String,
}

fn default_listen() -> String {
    "127.0.0.1:6380".to_owned()
}
fn default_port() -> u16 {
    6379
}
fn default_max_request_bytes() -> usize {
    64 << 20
}
fn default_max_reply_bytes() -> usize {
    512 << 20
}
fn default_multiplex() -> bool {
    true
}

/// Redis' own cap on a bulk string (proto-max-bulk-len's default).
const REDIS_MAX_BULK: usize = 512 << 20;

/// A password; Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisPassword(pub String);

impl std::fmt::Debug for RedisPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisPassword(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUpstream {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<RedisPassword>,
    /// Used by every server connection: sessions, the command table,
    /// migrate-keys.
    pub tls: UpstreamTls,
}

/// The validated `redis:` section.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Fixed at start (a reload that changes it says a restart is needed).
    pub listen: String,
    pub upstream: RedisUpstream,
    pub namespaces: Arc<Namespaces>,
    /// Pub/sub channel rules (empty: channels pass unchanged).
    pub channels: Arc<Channels>,
    pub unmatched: Unmatched,
    pub mode: Mode,
    pub max_request_bytes: usize,
    pub max_reply_bytes: usize,
    /// `redis.tls`: the listener's TLS (no ALPN).
    pub tls: ClientTls,
    /// Plain clients share one server connection per database and event
    /// loop; a client leaves for connections of its own at its first
    /// command that changes or holds its connection.
    pub multiplex: bool,
}

impl RedisConfig {
    /// Whether the certificate, key and CA files of both TLS settings
    /// still hold what they held when this was built.
    pub fn tls_files_unchanged(&self) -> bool {
        self.tls.files_unchanged() && self.upstream.tls.files_unchanged()
    }
}

/// Validate the section (`proxy_tls`: the files `redis.tls` falls back
/// to); errors are (dotted key, message).
pub(super) fn build(
    raw: RawRedis,
    proxy_tls: &RawProxyTls,
) -> Result<RedisConfig, (String, String)> {
    if !super::build::looks_like_host_port(&raw.listen) {
        return Err((
            "redis.listen".into(),
            format!("`{}` is not HOST:PORT", raw.listen),
        ));
    }
    for (key, value) in [
        ("redis.max_request_bytes", raw.max_request_bytes),
        ("redis.max_reply_bytes", raw.max_reply_bytes),
    ] {
        if !(1024..=REDIS_MAX_BULK + (1 << 20)).contains(&value) {
            return Err((
                key.into(),
                format!("{value} is outside 1024..=537919488 bytes"),
            ));
        }
    }
    let up = raw.upstream;
    if up.host.is_empty() {
        return Err(("redis.upstream.host".into(), "must not be empty".into()));
    }
    let password = match (&up.password_file, &up.password_env) {
        (Some(_), Some(_)) => {
            return Err((
                "redis.upstream".into(),
                "set password_file or password_env, not both".into(),
            ));
        }
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                (
                    "redis.upstream.password_file".into(),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Some(RedisPassword(
                text.trim_end_matches(['\r', '\n']).to_owned(),
            ))
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) => Some(RedisPassword(v)),
            Err(_) => {
                return Err((
                    "redis.upstream.password_env".into(),
                    format!("environment variable {var} is not set (or not UTF-8)"),
                ));
            }
        },
        (None, None) => None,
    };
    if up.username.is_some() && password.is_none() {
        return Err((
            "redis.upstream.username".into(),
            "needs password_file or password_env".into(),
        ));
    }
    let tls = listener_tls(raw.tls, proxy_tls)?;
    if up.tls.mode == UpstreamTlsMode::Prefer {
        return Err((
            "redis.upstream.tls.mode".into(),
            "prefer has no meaning for Redis (its TLS starts with the first byte; there is no request to fall back from): use disable or require".into(),
        ));
    }
    let upstream_tls = super::tls::upstream_tls(up.tls, &up.host)
        .map_err(|(k, m)| (format!("redis.upstream.tls.{k}"), m))?;
    let rules = raw
        .namespaces
        .into_iter()
        .map(|r| Rule {
            from: r.from.into_bytes(),
            from_db: r.from_db,
            to_db: r.to_db.unwrap_or(r.from_db),
            to: r.to.into_bytes(),
        })
        .collect();
    let namespaces =
        Namespaces::new(rules).map_err(|e| ("redis.namespaces".to_owned(), e.to_string()))?;
    let channels = Channels::new(
        raw.channels
            .into_iter()
            .map(|c| (c.from.into_bytes(), c.to.into_bytes()))
            .collect(),
    )
    .map_err(|e| ("redis.channels".to_owned(), e.to_string()))?;
    Ok(RedisConfig {
        listen: raw.listen,
        channels: Arc::new(channels),
        upstream: RedisUpstream {
            host: up.host,
            port: up.port,
            username: up.username,
            password,
            tls: upstream_tls,
        },
        namespaces: Arc::new(namespaces),
        unmatched: raw.unmatched,
        mode: raw.mode,
        max_request_bytes: raw.max_request_bytes,
        max_reply_bytes: raw.max_reply_bytes,
        tls,
        multiplex: raw.multiplex,
    })
}

/// `redis.tls`, its certificate files defaulting to `proxy.tls`'s.
fn listener_tls(raw: RawRedisTls, proxy_tls: &RawProxyTls) -> Result<ClientTls, (String, String)> {
    if raw.client_ca_file.is_some() && raw.mode != ClientTlsMode::Require {
        return Err((
            "redis.tls.client_ca_file".into(),
            format!(
                "needs mode require (with {} a client could skip it by speaking plain text)",
                raw.mode.as_str()
            ),
        ));
    }
    let (cert_file, key_file) = if raw.cert_file.is_none() && raw.key_file.is_none() {
        (proxy_tls.cert_file.clone(), proxy_tls.key_file.clone())
    } else {
        (raw.cert_file, raw.key_file)
    };
    let shared = RawProxyTls {
        mode: raw.mode,
        cert_file,
        key_file,
    };
    super::tls::listener_tls(shared, None, raw.client_ca_file.as_deref()).map_err(|(k, m)| {
        let hint = if k.ends_with("_file") && m.starts_with("required") {
            " (or set proxy.tls's cert_file and key_file)"
        } else {
            ""
        };
        (format!("redis.tls.{k}"), format!("{m}{hint}"))
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Mode};
    use crate::keyspace::Unmatched;

    fn load(redis: &str) -> Result<Config, String> {
        Config::from_yaml(&format!("databases: {{heal7: {{}}}}\nredis:\n{redis}"), "t")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_section_validates_and_defaults_apply() {
        let c = load(
            "  listen: 127.0.0.1:6380\n  upstream: {host: 10.0.0.5, port: 6390}\n  namespaces:\n    - {from: \"saju:\", from_db: 0, to: \"saju_service:\", to_db: 1}\n    - {from: \"session:\", to: \"shared_common:session:\"}\n  unmatched: reject\n  mode: dry_run\n",
        )
        .unwrap();
        let r = c.redis.unwrap();
        assert_eq!(
            (r.upstream.host.as_str(), r.upstream.port),
            ("10.0.0.5", 6390)
        );
        assert_eq!(r.unmatched, Unmatched::Reject);
        assert_eq!(r.mode, Mode::DryRun);
        assert_eq!(r.namespaces.rules().len(), 2);
        assert_eq!(
            r.namespaces.rules()[1].to_db,
            0,
            "to_db defaults to from_db"
        );
        assert_eq!(r.max_request_bytes, 64 << 20);
        assert!(r.multiplex, "multiplexing is on by default");
        assert!(
            !load("  multiplex: false\n")
                .unwrap()
                .redis
                .unwrap()
                .multiplex
        );
        assert!(load("").is_err() || load("  {}\n").is_ok());
        assert!(
            Config::from_yaml("databases: {heal7: {}}\n", "t")
                .unwrap()
                .redis
                .is_none()
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            ("  listen: nowhere\n", "redis.listen"),
            ("  bogus: 1\n", "unknown field `bogus`"),
            ("  mode: sometimes\n", "unknown variant `sometimes`"),
            ("  unmatched: drop\n", "unknown variant `drop`"),
            ("  namespaces: [{from: \"\", to: x}]\n", "redis.namespaces"),
            (
                "  namespaces: [{from: \"a:\", to: \"x:\", to_db: 1}, {from: \"b:\", to: \"x:y\", to_db: 1}]\n",
                "overlapping prefixes",
            ),
            (
                "  namespaces: [{from: a, to: b, from_db: 70000}]\n",
                "from_db",
            ),
            ("  max_request_bytes: 10\n", "redis.max_request_bytes"),
            ("  channels: [{from: \"\", to: x}]\n", "redis.channels"),
            ("  upstream: {username: u}\n", "redis.upstream.username"),
            (
                "  upstream: {password_env: HEAL7_TEST_SURELY_UNSET_VAR}\n",
                "HEAL7_TEST_SURELY_UNSET_VAR",
            ),
            (
                "  upstream: {password_file: /nonexistent/pw}\n",
                "redis.upstream.password_file",
            ),
        ];
        for (yaml, needle) in cases {
            let e = load(yaml).unwrap_err();
            assert!(e.contains(needle), "{yaml}: {e}");
        }
    }

    #[test]
    fn tls_mistakes_name_their_key() {
        let cases = [
            (
                "  upstream: {tls: {mode: prefer}}\n",
                "redis.upstream.tls.mode: prefer",
            ),
            (
                "  upstream: {tls: {mode: verify-full}}\n",
                "redis.upstream.tls.ca_file: required",
            ),
            (
                "  upstream: {tls: {mode: require, ca_file: /nonexistent/ca.crt}}\n",
                "redis.upstream.tls.ca_file: cannot read /nonexistent/ca.crt",
            ),
            (
                "  upstream: {tls: {mode: require, client_cert_file: /x}}\n",
                "redis.upstream.tls.client_key_file: required",
            ),
            (
                "  upstream: {tls: {mode: require, server_name: \"not a name\"}}\n",
                "redis.upstream.tls.server_name",
            ),
            (
                "  upstream: {tls: {sslmode: require}}\n",
                "unknown field `sslmode`",
            ),
            (
                "  tls: {mode: require}\n",
                "redis.tls.cert_file: required when mode is require (or set proxy.tls",
            ),
            ("  tls: {mode: prefer}\n", "unknown variant `prefer`"),
            (
                "  tls: {mode: allow, client_ca_file: /x}\n",
                "redis.tls.client_ca_file: needs mode require",
            ),
            (
                "  tls: {mode: allow, cert_file: /nonexistent/c, key_file: /nonexistent/k}\n",
                "redis.tls.cert_file: cannot read /nonexistent/c",
            ),
        ];
        for (yaml, needle) in cases {
            let e = load(yaml).unwrap_err();
            assert!(e.contains(needle), "{yaml}: {e}");
        }
        let r = load("  upstream: {tls: {mode: require}}\n")
            .unwrap()
            .redis
            .unwrap();
        assert!(r.upstream.tls.client_config.is_some());
        assert!(
            r.tls.acceptor_config().is_none(),
            "redis.tls is off by default"
        );
    }

    /// `redis.tls` without files takes proxy.tls's; a rotated file is seen.
    #[test]
    fn redis_tls_falls_back_to_proxy_certificate_and_tracks_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let write_pair = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            std::fs::write(dir.path().join(format!("{name}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        write_pair("proxy");
        let (crt, key) = (dir.path().join("proxy.crt"), dir.path().join("proxy.key"));
        let yaml = format!(
            "proxy: {{tls: {{mode: allow, cert_file: {}, key_file: {}}}}}\ndatabases: {{heal7: {{}}}}\nredis:\n  tls: {{mode: require}}\n  upstream: {{tls: {{mode: verify-ca, ca_file: {}}}}}\n",
            crt.display(),
            key.display(),
            crt.display(),
        );
        let c = Config::from_yaml(&yaml, "t").unwrap();
        let r = c.redis.unwrap();
        let server = r.tls.acceptor_config().expect("proxy.tls's pair");
        assert!(
            server.alpn_protocols.is_empty(),
            "Redis clients send no ALPN"
        );
        assert!(r.tls_files_unchanged());
        let again = Config::from_yaml(&yaml, "t").unwrap().redis.unwrap();
        assert_eq!(again.upstream, r.upstream, "same settings, same files");
        write_pair("proxy");
        let rotated = Config::from_yaml(&yaml, "t").unwrap().redis.unwrap();
        assert_ne!(rotated.upstream, r.upstream, "a new CA file is a change");
        assert!(
            !r.tls_files_unchanged(),
            "a rotated certificate is a change"
        );

        let with_ca = |ca: &str| {
            Config::from_yaml(
                &yaml.replace(
                    "tls: {mode: require}",
                    &format!("tls: {{mode: require, client_ca_file: {ca}}}"),
                ),
                "t",
            )
            .map_err(|e| e.to_string())
        };
        let e = with_ca("/nonexistent/ca.crt").unwrap_err();
        assert!(
            e.contains("redis.tls.client_ca_file: cannot read /nonexistent/ca.crt"),
            "{e}"
        );
        let r = with_ca(&crt.display().to_string()).unwrap().redis.unwrap();
        assert!(r.tls.acceptor_config().is_some());
        assert!(r.tls_files_unchanged());
    }

    #[test]
    fn a_new_redis_listen_needs_a_restart() {
        let a = load("  listen: 127.0.0.1:6380\n").unwrap();
        let b = load("  listen: 127.0.0.1:6390\n").unwrap();
        let changes = b.start.changes_from(&a.start);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].starts_with("redis.listen:") && changes[0].contains("needs restart"));
        assert!(a.start.changes_from(&a.start).is_empty());
    }

    #[test]
    fn the_password_comes_from_its_file_and_never_shows_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let c = load(&format!(
            "  upstream: {{username: app, password_file: {}}}\n",
            path.display()
        ))
        .unwrap();
        let r = c.redis.unwrap();
        assert_eq!(r.upstream.password.as_ref().unwrap().0, "s3cret");
        assert!(!format!("{r:?}").contains("s3cret"));
    }
}
