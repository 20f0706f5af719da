//! TLS settings: the raw shape of `proxy.tls` and `databases.*.tls`, and
//! their validated form. Certificate and key files are read and checked
//! when the config is built, so a bad pair is a config error naming its key
//! (and a reload with one keeps the old snapshot); the rustls configs built
//! from them live in the snapshot, so a session keeps the one it started
//! with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ServerConfig;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;

/// The ALPN protocol name of PostgreSQL 17's direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// `proxy.tls`: TLS between clients and the proxy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxyTls {
    /// disable | allow | require (default disable: SSLRequest is answered
    /// `N`).
    #[serde(default)]
    pub(super) mode: ClientTlsMode,
    /// PEM certificate chain the proxy presents, leaf first. Re-read on
    /// every reload.
    #[serde(default)]
    pub(super) cert_file: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub(super) key_file: Option<PathBuf>,
}

/// `databases.<name>.tls`: TLS between the proxy and that upstream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamTls {
    /// disable | prefer | require | verify-ca | verify-full, as libpq's
    /// sslmode (default disable).
    #[serde(default)]
    pub(super) mode: UpstreamTlsMode,
    /// PEM root certificates the server's chain must lead to (required by
    /// verify-ca and verify-full; with require it makes require verify-ca,
    /// as in libpq).
    #[serde(default)]
    pub(super) ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for servers that ask for one.
    #[serde(default)]
    pub(super) client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub(super) client_key_file: Option<PathBuf>,
    /// The name the server's certificate must carry (verify-full) and the
    /// SNI sent; default: the upstream's `host`.
    #[serde(default)]
    pub(super) server_name: Option<String>,
}

/// Whether clients may or must speak TLS to the proxy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientTlsMode {
    /// SSLRequest is answered `N`; clients continue in clear.
    #[default]
    Disable,
    /// SSLRequest is answered `S`; clients that do not ask stay in clear.
    Allow,
    /// As allow, and a client that sends its StartupMessage in clear is
    /// refused.
    Require,
}

impl ClientTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientTlsMode::Disable => "disable",
            ClientTlsMode::Allow => "allow",
            ClientTlsMode::Require => "require",
        }
    }
}

/// How the proxy secures its connection to an upstream (libpq's sslmode).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    /// Clear text.
    #[default]
    Disable,
    /// Ask for TLS, continue in clear if the server says no; no
    /// verification.
    Prefer,
    /// TLS or fail; no verification.
    Require,
    /// TLS, the chain verified against `ca_file`.
    VerifyCa,
    /// As verify-ca, and the certificate must name the host.
    VerifyFull,
}

impl UpstreamTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamTlsMode::Disable => "disable",
            UpstreamTlsMode::Prefer => "prefer",
            UpstreamTlsMode::Require => "require",
            UpstreamTlsMode::VerifyCa => "verify-ca",
            UpstreamTlsMode::VerifyFull => "verify-full",
        }
    }
}

/// Validated `proxy.tls`.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub mode: ClientTlsMode,
    /// Present unless the mode is disable.
    pub server_config: Option<Arc<ServerConfig>>,
    /// RFC 5929 `tls-server-end-point` data of the certificate (its hash),
    /// for SCRAM-SHA-256-PLUS where the proxy authenticates clients itself.
    pub channel_binding: Option<Vec<u8>>,
    /// The files read and the SHA-256 of their contents (never the key
    /// itself: `Config` is `Debug`), to tell on reload whether a
    /// certificate changed although the config text did not.
    inputs: Vec<(PathBuf, [u8; 32])>,
}

impl ClientTls {
    /// The server config, unless TLS is off.
    pub fn acceptor_config(&self) -> Option<&Arc<ServerConfig>> {
        self.server_config.as_ref()
    }

    /// Whether every file this config was built from still holds what it
    /// held then (false if one changed or cannot be read).
    pub fn files_unchanged(&self) -> bool {
        unchanged(&self.inputs)
    }
}

/// Validated `databases.<name>.tls` (and `redis.upstream.tls`).
#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    pub mode: UpstreamTlsMode,
    /// Present unless the mode is disable.
    pub client_config: Option<Arc<ClientConfig>>,
    /// `server_name`, checked at load.
    server_name: Option<ServerName<'static>>,
    /// The files read (CA, client certificate and key) and their SHA-256,
    /// as [`ClientTls`] keeps them.
    inputs: Vec<(PathBuf, [u8; 32])>,
}

impl UpstreamTls {
    /// The name to send as SNI and, in verify-full, to find in the
    /// server's certificate: `server_name`, else `host`.
    pub fn server_name(&self, host: &str) -> ServerName<'static> {
        if let Some(name) = &self.server_name {
            return name.clone();
        }
        ServerName::try_from(host.to_owned()).unwrap_or_else(|_| {
            // Only verify-full compares names, and it was checked at load;
            // any name will do for the rest.
            ServerName::try_from("localhost").expect("a DNS name")
        })
    }

    /// As [`ClientTls::files_unchanged`].
    pub fn files_unchanged(&self) -> bool {
        unchanged(&self.inputs)
    }
}

/// Equal when built from the same mode, name and file contents (the rustls
/// config follows from them): a reload that changed none of them changed
/// nothing here.
impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode
            && self.server_name == other.server_name
            && self.inputs == other.inputs
    }
}

impl Eq for UpstreamTls {}

fn unchanged(inputs: &[(PathBuf, [u8; 32])]) -> bool {
    inputs
        .iter()
        .all(|(path, digest)| std::fs::read(path).is_ok_and(|now| &sha256(&now) == digest))
}

/// The crypto provider: ring (aws-lc-rs would need cmake to build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Build `proxy.tls`; errors are (key suffix, message).
pub(super) fn client_tls(raw: RawProxyTls) -> Result<ClientTls, (String, String)> {
    listener_tls(raw, Some(ALPN_POSTGRESQL), None)
}

/// Build a listener's TLS settings (`proxy.tls`, `redis.tls`), offering
/// `alpn` when given and, with `client_ca_file`, asking every client for a
/// certificate that leads to those roots; errors are (key suffix,
/// message).
pub(super) fn listener_tls(
    raw: RawProxyTls,
    alpn: Option<&[u8]>,
    client_ca_file: Option<&Path>,
) -> Result<ClientTls, (String, String)> {
    if raw.mode == ClientTlsMode::Disable {
        return Ok(ClientTls::default());
    }
    let need = |v: Option<PathBuf>, key: &str| {
        v.ok_or_else(|| {
            (
                key.to_owned(),
                format!("required when mode is {}", raw.mode.as_str()),
            )
        })
    };
    let cert_file = need(raw.cert_file, "cert_file")?;
    let key_file = need(raw.key_file, "key_file")?;
    let (cert_bytes, certs) = read_certs(&cert_file).map_err(|m| ("cert_file".to_owned(), m))?;
    let (key_bytes, key) = read_key(&key_file).map_err(|m| ("key_file".to_owned(), m))?;
    let mut inputs = vec![
        (cert_file.clone(), sha256(&cert_bytes)),
        (key_file.clone(), sha256(&key_bytes)),
    ];
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("mode".to_owned(), e.to_string()))?;
    let builder = match client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let (bytes, roots) = read_roots(path).map_err(|m| ("client_ca_file".to_owned(), m))?;
            inputs.push((path.to_owned(), sha256(&bytes)));
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| ("client_ca_file".to_owned(), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        (
            "key_file".to_owned(),
            format!("does not go with {}: {e}", cert_file.as_path().display()),
        )
    })?;
    config.alpn_protocols = alpn.into_iter().map(<[u8]>::to_vec).collect();
    let channel_binding = config_leaf(&cert_bytes).map(|der| end_point_hash(&der));
    Ok(ClientTls {
        mode: raw.mode,
        server_config: Some(Arc::new(config)),
        channel_binding,
        inputs,
    })
}

/// The first certificate of a PEM chain, as DER.
fn config_leaf(pem: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .next()?
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// RFC 5929's `tls-server-end-point`: the certificate's hash with the hash
/// of its signature algorithm, SHA-256 for MD5, SHA-1 and anything else
/// (PostgreSQL does the same).
pub fn end_point_hash(der: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    // ecdsa-with-SHA384/512 and sha384/512WithRSAEncryption.
    const SHA384: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
    ];
    match signature_algorithm(der) {
        Some(oid) if SHA384.contains(&oid) => sha2::Sha384::digest(der).to_vec(),
        Some(oid) if SHA512.contains(&oid) => sha2::Sha512::digest(der).to_vec(),
        _ => sha2::Sha256::digest(der).to_vec(),
    }
}

/// The OID of a certificate's outer signatureAlgorithm:
/// SEQUENCE { tbsCertificate, SEQUENCE { OID, ... }, BIT STRING }.
fn signature_algorithm(der: &[u8]) -> Option<&[u8]> {
    /// (tag, contents, rest) of the DER element at the start of `b`.
    fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *b.first()?;
        let first = *b.get(1)? as usize;
        let (len, start) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None;
            }
            let len = b
                .get(2..2 + n)?
                .iter()
                .fold(0usize, |a, &x| a << 8 | x as usize);
            (len, 2 + n)
        };
        let end = start.checked_add(len)?;
        Some((tag, b.get(start..end)?, b.get(end..)?))
    }
    let (_, certificate, _) = element(der)?;
    let (_, _, after_tbs) = element(certificate)?;
    let (_, algorithm, _) = element(after_tbs)?;
    let (tag, oid, _) = element(algorithm)?;
    (tag == 0x06).then_some(oid)
}

/// Build `databases.<name>.tls` for upstream `host`; errors are (key
/// suffix, message).
pub(super) fn upstream_tls(
    raw: RawUpstreamTls,
    host: &str,
) -> Result<UpstreamTls, (String, String)> {
    let mode = raw.mode;
    if mode == UpstreamTlsMode::Disable {
        return Ok(UpstreamTls::default());
    }
    let mut inputs = Vec::new();
    let roots = match &raw.ca_file {
        Some(path) => {
            let (bytes, roots) = read_roots(path).map_err(|m| ("ca_file".to_owned(), m))?;
            inputs.push((path.clone(), sha256(&bytes)));
            Some(roots)
        }
        None if matches!(
            mode,
            UpstreamTlsMode::VerifyCa | UpstreamTlsMode::VerifyFull
        ) =>
        {
            return Err((
                "ca_file".to_owned(),
                format!("required when mode is {}", mode.as_str()),
            ));
        }
        None => None,
    };
    let server_name = match raw.server_name {
        Some(name) => Some(ServerName::try_from(name.clone()).map_err(|e| {
            (
                "server_name".to_owned(),
                format!("`{name}` is not a DNS name or IP address: {e}"),
            )
        })?),
        None => None,
    };
    if mode == UpstreamTlsMode::VerifyFull && server_name.is_none() {
        ServerName::try_from(host.to_owned()).map_err(|e| {
            (
                "mode".to_owned(),
                format!(
                    "verify-full needs a DNS name or IP address as host (or a server_name): {e}"
                ),
            )
        })?;
    }
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        // As libpq: a root certificate makes prefer and require verify the
        // chain too.
        Some(roots) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| ("ca_file".to_owned(), e.to_string()))?;
            if mode == UpstreamTlsMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
        None => Arc::new(NoVerification(provider.signature_verification_algorithms)),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("mode".to_owned(), e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (raw.client_cert_file, raw.client_key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert_file), Some(key_file)) => {
            let (cert_bytes, certs) =
                read_certs(&cert_file).map_err(|m| ("client_cert_file".to_owned(), m))?;
            let (key_bytes, key) =
                read_key(&key_file).map_err(|m| ("client_key_file".to_owned(), m))?;
            inputs.push((cert_file.clone(), sha256(&cert_bytes)));
            inputs.push((key_file.clone(), sha256(&key_bytes)));
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                (
                    "client_key_file".to_owned(),
                    format!("does not go with {}: {e}", cert_file.display()),
                )
            })?
        }
        (Some(_), None) => {
            return Err((
                "client_key_file".to_owned(),
                "required with client_cert_file".to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err((
                "client_cert_file".to_owned(),
                "required with client_key_file".to_owned(),
            ));
        }
    };
    Ok(UpstreamTls {
        mode,
        client_config: Some(Arc::new(config)),
        server_name,
        inputs,
    })
}

type Certs = Vec<CertificateDer<'static>>;

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn read_certs(path: &Path) -> Result<(Vec<u8>, Certs), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Certs, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok((bytes, certs))
}

/// A PEM file of root certificates; returns its bytes too.
fn read_roots(path: &Path) -> Result<(Vec<u8>, Arc<RootCertStore>), String> {
    let (bytes, certs) = read_certs(path)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok((bytes, Arc::new(roots)))
}

fn read_key(path: &Path) -> Result<(Vec<u8>, PrivateKeyDer<'static>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The error never echoes the file's content: it is a secret.
    let key = PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{}: no PEM private key: {e}", path.display()))?;
    Ok((bytes, key))
}

/// libpq's prefer and require without a root certificate: encryption
/// without any check of who the server is. The handshake signatures are
/// still checked (they cost nothing and prove the key matches the
/// certificate).
struct NoVerification(WebPkiSupportedAlgorithms);

impl fmt::Debug for NoVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoVerification")
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// libpq's verify-ca: the chain must lead to a configured root; the names
/// in the certificate are not compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(yaml: &str) -> Result<Config, String> {
        Config::from_yaml(yaml, "t.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn tls_is_off_on_both_sides_by_default() {
        let c = load("databases: {a: {}}\n").unwrap();
        assert_eq!(c.tls.mode, ClientTlsMode::Disable);
        assert!(c.tls.acceptor_config().is_none());
        assert!(c.tls.files_unchanged());
        let route = c.route("a");
        assert_eq!(route.tls.mode, UpstreamTlsMode::Disable);
        assert!(route.tls.client_config.is_none());
        // Unknown names take the first entry's upstream TLS, as its host.
        let c = load("databases: {a: {tls: {mode: require}}}\n").unwrap();
        assert_eq!(c.route("other").tls.mode, UpstreamTlsMode::Require);
        assert!(c.route("other").tls.client_config.is_some());
    }

    #[test]
    fn tls_keys_are_checked_and_named() {
        let e = load("proxy: {tls: {mode: allow, cert: x}}\ndatabases: {a: {}}\n").unwrap_err();
        assert!(e.contains("unknown field `cert`"), "{e}");
        let e = load("proxy: {tls: {mode: prefer}}\ndatabases: {a: {}}\n").unwrap_err();
        assert!(e.contains("unknown variant `prefer`"), "{e}");
        let e = load("databases: {a: {tls: {mode: verify_ca}}}\n").unwrap_err();
        assert!(e.contains("unknown variant `verify_ca`"), "{e}");
        let e =
            load("proxy: {tls: {mode: require, cert_file: /x}}\ndatabases: {a: {}}\n").unwrap_err();
        assert!(e.contains("proxy.tls.key_file: required"), "{e}");
        let e = load("databases: {a: {tls: {mode: verify-ca}}}\n").unwrap_err();
        assert!(e.contains("databases.a.tls.ca_file: required"), "{e}");
        let e = load("databases: {a: {tls: {mode: require, client_cert_file: /x}}}\n").unwrap_err();
        assert!(
            e.contains("databases.a.tls.client_key_file: required"),
            "{e}"
        );
        let e = load("databases: {a: {tls: {mode: require, ca_file: /nonexistent/ca.crt}}}\n")
            .unwrap_err();
        assert!(
            e.contains("databases.a.tls.ca_file: cannot read /nonexistent/ca.crt"),
            "{e}"
        );
    }
}
