//! The server side of SCRAM-SHA-256 (RFC 5802 / RFC 7677) as Postgres does
//! it, against a stored verifier in Postgres' `pg_authid.rolpassword` format:
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//!
//! Pure: messages in, messages out; no sockets, no logging (a proof or a
//! password must never reach a log line). Channel binding is not offered
//! (the proxy has no TLS), so the client's gs2 flag must be `n` or `y`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};

/// The only mechanism the console advertises.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// Bytes of server nonce (Postgres: SCRAM_RAW_NONCE_LEN).
const SERVER_NONCE_BYTES: usize = 18;
/// Iterations and salt length of a mock verifier (Postgres' defaults).
const MOCK_ITERATIONS: u32 = 4096;
const MOCK_SALT_BYTES: usize = 16;

/// Why a verifier string is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a SCRAM-SHA-256 verifier ({0}); expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as printed by `heal7-proxy hash-password`"
)]
pub struct VerifierError(&'static str);

/// A parsed SCRAM-SHA-256 verifier: what the server keeps instead of the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

// Keys stay out of Debug output, so a `{:?}` of the config never prints them.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for Verifier {
    type Err = VerifierError;

    fn from_str(s: &str) -> Result<Self, VerifierError> {
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(VerifierError("it does not start with SCRAM-SHA-256$"))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(VerifierError("missing `$` before the keys"))?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or(VerifierError("missing `:` between iterations and salt"))?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or(VerifierError("missing `:` between StoredKey and ServerKey"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| VerifierError("iterations is not a number"))?;
        if iterations == 0 {
            return Err(VerifierError("iterations must be at least 1"));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| VerifierError("salt is not base64"))?;
        if salt.is_empty() {
            return Err(VerifierError("salt is empty"));
        }
        let key = |k: &str, what| -> Result<[u8; 32], VerifierError> {
            B64.decode(k)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or(VerifierError(what))
        };
        Ok(Verifier {
            iterations,
            salt,
            stored_key: key(stored, "StoredKey is not 32 bytes of base64")?,
            server_key: key(server, "ServerKey is not 32 bytes of base64")?,
        })
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

impl Verifier {
    /// The verifier of `password` with a given salt, derived here to check
    /// [`hash_password`] against (which also applies SASLprep).
    #[cfg(test)]
    fn from_password(password: &[u8], salt: &[u8], iterations: u32) -> Verifier {
        let salted = hi(password, salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// A verifier no password matches, for a user that does not exist: the
    /// exchange then runs to its end and fails exactly as a wrong password
    /// does. The salt derives from the user and a per-process secret, so a
    /// repeated attempt sees the same salt, as for a real user.
    pub fn mock(user: &str, secret: &[u8; 32]) -> Verifier {
        let mut mac = <Hmac<Sha256>>::new_from_slice(secret).expect("any key size");
        mac.update(user.as_bytes());
        let seed: [u8; 32] = mac.finalize().into_bytes().into();
        Verifier {
            iterations: MOCK_ITERATIONS,
            salt: seed[..MOCK_SALT_BYTES].to_vec(),
            // SHA-256 of a random key: no ClientKey hashes to it in practice.
            stored_key: Sha256::digest(seed).into(),
            server_key: seed,
        }
    }
}

/// A new verifier for `password`: SASLprep, 16 random salt bytes, 4096
/// iterations, exactly what Postgres stores for password_encryption =
/// scram-sha-256 (postgres-protocol implements libpq's
/// PQencryptPasswordConn).
pub fn hash_password(password: &[u8]) -> String {
    postgres_protocol::password::scram_sha_256(password)
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The client's message does not follow RFC 5802.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=`), which is not offered.
    #[error("channel binding is not supported by the heal7-proxy console")]
    ChannelBinding,
    /// Wrong password (or unknown user: the same answer on purpose).
    #[error("password authentication failed")]
    Failed,
    /// The client's channel-binding choice does not fit what was offered
    /// (PostgreSQL's own checks and words).
    #[error("SCRAM channel binding negotiation error: {0}")]
    Negotiation(&'static str),
}

/// What the server offered and the client chose, for channel binding.
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// Only SCRAM-SHA-256 was offered (no TLS, or no certificate data).
    NotOffered,
    /// SCRAM-SHA-256-PLUS was offered with `data` (tls-server-end-point);
    /// `selected`: the client chose it.
    Offered { data: &'a [u8], selected: bool },
}

/// The server's state between its first and final message.
pub struct ScramServer {
    verifier: Verifier,
    gs2_header: String,
    /// Channel-binding data the client bound to (empty without binding).
    binding: Vec<u8>,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramServer {
    /// Read the client-first-message; answer the server-first-message.
    pub fn start(verifier: Verifier, client_first: &[u8]) -> Result<(Self, String), ScramError> {
        let mut raw = [0u8; SERVER_NONCE_BYTES];
        rand::rng().fill_bytes(&mut raw);
        Self::start_with_nonce(
            verifier,
            client_first,
            &B64.encode(raw),
            Binding::NotOffered,
        )
    }

    /// [`ScramServer::start`] where SCRAM-SHA-256-PLUS may have been offered.
    pub fn start_bound(
        verifier: Verifier,
        client_first: &[u8],
        binding: Binding<'_>,
    ) -> Result<(Self, String), ScramError> {
        let mut raw = [0u8; SERVER_NONCE_BYTES];
        rand::rng().fill_bytes(&mut raw);
        Self::start_with_nonce(verifier, client_first, &B64.encode(raw), binding)
    }

    fn start_with_nonce(
        verifier: Verifier,
        client_first: &[u8],
        server_nonce: &str,
        binding: Binding<'_>,
    ) -> Result<(Self, String), ScramError> {
        let msg = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("client-first-message is not UTF-8"))?;
        let (flag, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let bound = match (flag, binding) {
            ("n", Binding::Offered { selected: true, .. }) => {
                return Err(ScramError::Negotiation(
                    "the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data",
                ));
            }
            ("y", Binding::Offered { .. }) => {
                return Err(ScramError::Negotiation(
                    "the client supports SCRAM channel binding but thinks the server does not; however, this server does support channel binding",
                ));
            }
            ("n" | "y", _) => Vec::new(),
            (
                f,
                Binding::Offered {
                    data,
                    selected: true,
                },
            ) if f.starts_with("p=") => {
                if f != "p=tls-server-end-point" {
                    return Err(ScramError::Negotiation(
                        "unsupported SCRAM channel-binding type (only tls-server-end-point)",
                    ));
                }
                data.to_vec()
            }
            (f, Binding::Offered { .. }) if f.starts_with("p=") => {
                return Err(ScramError::Negotiation(
                    "the client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data",
                ));
            }
            (f, Binding::NotOffered) if f.starts_with("p=") => {
                return Err(ScramError::ChannelBinding);
            }
            _ => return Err(ScramError::Malformed("unknown gs2 channel-binding flag")),
        };
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "authorization identities are not supported",
            ));
        }
        if bare.starts_with("m=") {
            return Err(ScramError::Malformed(
                "mandatory extensions are not supported",
            ));
        }
        // Like Postgres, the user name inside SCRAM is ignored: the
        // StartupMessage's user is the one authenticated.
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
            .ok_or(ScramError::Malformed("missing or invalid client nonce"))?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        let server = ScramServer {
            verifier,
            gs2_header: format!("{flag},{authzid},"),
            binding: bound,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((server, server_first))
    }

    /// Check the client-final-message's proof; answer the
    /// server-final-message (`v=<ServerSignature>`).
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        self.finish_with_key(client_final).map(|(last, _)| last)
    }

    /// [`ScramServer::finish`], with the ClientKey the proof revealed: the
    /// proxy logs in to the server with it (pass-through, as PgBouncer does),
    /// so no password is ever stored.
    pub fn finish_with_key(self, client_final: &[u8]) -> Result<(String, ClientKey), ScramError> {
        let msg = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final-message is not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding attribute"))?;
        let mut expected = self.gs2_header.clone().into_bytes();
        expected.extend_from_slice(&self.binding);
        if B64.decode(binding).ok().as_deref() != Some(&expected[..]) {
            return Err(ScramError::Malformed(
                "channel binding does not match the gs2 header",
            ));
        }
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("proof is not 32 bytes of base64"))?;

        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(signature) {
            *k ^= s;
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !constant_time_eq(&stored, &self.verifier.stored_key) {
            return Err(ScramError::Failed);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok((
            format!("v={}", B64.encode(server_signature)),
            ClientKey(client_key),
        ))
    }
}

/// A user's SCRAM ClientKey, learned from a successful exchange: enough to
/// log in as that user to a server holding the same verifier, not to learn
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey(..)")
    }
}

/// The client side of SCRAM-SHA-256 with a known ClientKey instead of a
/// password (gs2 flag `n`: no channel binding toward the server).
pub struct PassThroughClient {
    client_key: [u8; 32],
    server_key: [u8; 32],
    nonce: String,
    auth_message: String,
}

impl PassThroughClient {
    /// The client-first-message to send (the user name inside SCRAM is
    /// ignored by Postgres; the StartupMessage names the user).
    pub fn start(key: &ClientKey, verifier: &Verifier) -> (Self, String) {
        let mut raw = [0u8; SERVER_NONCE_BYTES];
        rand::rng().fill_bytes(&mut raw);
        let nonce = B64.encode(raw);
        let client_first = format!("n,,n=,r={nonce}");
        let client = PassThroughClient {
            client_key: key.0,
            server_key: verifier.server_key,
            nonce,
            auth_message: String::new(),
        };
        (client, client_first)
    }

    /// Answer the server-first-message with the client-final-message.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("server-first-message is not UTF-8"))?;
        let nonce = server_first
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no server nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed("server nonce does not extend ours"));
        }
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("n=,r={},{server_first},{without_proof}", self.nonce);
        let stored_key: [u8; 32] = Sha256::digest(self.client_key).into();
        let signature = hmac(&stored_key, self.auth_message.as_bytes());
        let mut proof = self.client_key;
        for (p, s) in proof.iter_mut().zip(signature) {
            *p ^= s;
        }
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Check the server-final-message: the server knows the verifier too.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let expected = hmac(&self.server_key, self.auth_message.as_bytes());
        let got = std::str::from_utf8(server_final)
            .ok()
            .and_then(|m| m.strip_prefix("v="))
            .and_then(|v| B64.decode(v).ok())
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or(ScramError::Malformed(
                "server-final-message has no signature",
            ))?;
        if constant_time_eq(&expected, &got) {
            Ok(())
        } else {
            Err(ScramError::Failed)
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("any key size");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one output block: RFC 5802's Hi().
#[cfg(test)]
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &block);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

/// Compare without an early exit, so timing tells nothing about the keys.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    use super::*;

    // RFC 7677 section 3: user "user", password "pencil".
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_verifier() -> Verifier {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        Verifier::from_password(b"pencil", &salt, 4096)
    }

    /// The ClientKey a client's proof reveals logs in, through a second
    /// exchange with another nonce, to a server holding the same verifier.
    #[test]
    fn pass_through_logs_in_with_the_client_key_alone() {
        let (server, _) = ScramServer::start_with_nonce(
            rfc_verifier(),
            CLIENT_FIRST.as_bytes(),
            SERVER_NONCE,
            Binding::NotOffered,
        )
        .unwrap();
        let (_, key) = server.finish_with_key(CLIENT_FINAL.as_bytes()).unwrap();

        let (mut client, first) = PassThroughClient::start(&key, &rfc_verifier());
        let (upstream, server_first) =
            ScramServer::start(rfc_verifier(), first.as_bytes()).unwrap();
        let last = client.respond(server_first.as_bytes()).unwrap();
        let server_final = upstream.finish(last.as_bytes()).expect("accepted");
        client.verify(server_final.as_bytes()).unwrap();
        assert!(client.verify(b"v=AAAA").is_err());

        // A wrong key is refused by the server.
        let mut wrong = key.clone();
        wrong.0[0] ^= 1;
        let (mut client, first) = PassThroughClient::start(&wrong, &rfc_verifier());
        let (upstream, server_first) =
            ScramServer::start(rfc_verifier(), first.as_bytes()).unwrap();
        let last = client.respond(server_first.as_bytes()).unwrap();
        assert_eq!(upstream.finish(last.as_bytes()), Err(ScramError::Failed));
    }

    /// SCRAM-SHA-256-PLUS with tls-server-end-point, against libpq's own
    /// client code (postgres-protocol): the bound data must match.
    #[test]
    fn plus_binds_to_the_certificate_data() {
        let v = Verifier::from_password(b"s3cret", b"salty-salt-16byt", 4096);
        let data = b"hash of the proxy certificate";
        let exchange = |client_data: &[u8], server: Binding<'_>| {
            let mut client = ScramSha256::new(
                b"s3cret",
                ChannelBinding::tls_server_end_point(client_data.to_vec()),
            );
            let (s, first) = ScramServer::start_bound(v.clone(), client.message(), server)?;
            client.update(first.as_bytes()).unwrap();
            s.finish(client.message())
        };
        let offered = Binding::Offered {
            data,
            selected: true,
        };
        assert!(exchange(data, offered).is_ok());
        assert!(exchange(b"another certificate", offered).is_err());
        // A client that binds while PLUS was not offered is refused.
        assert_eq!(
            exchange(data, Binding::NotOffered),
            Err(ScramError::ChannelBinding)
        );
        // `y` while PLUS was offered: a downgrade, refused.
        let client = ScramSha256::new(b"s3cret", ChannelBinding::unrequested());
        let not_selected = Binding::Offered {
            data,
            selected: false,
        };
        assert!(matches!(
            ScramServer::start_bound(v.clone(), client.message(), not_selected),
            Err(ScramError::Negotiation(_))
        ));
        let _ = client.message();
    }

    #[test]
    fn rfc7677_vector() {
        let (server, first) = ScramServer::start_with_nonce(
            rfc_verifier(),
            CLIENT_FIRST.as_bytes(),
            SERVER_NONCE,
            Binding::NotOffered,
        )
        .unwrap();
        assert_eq!(first, SERVER_FIRST);
        assert_eq!(
            server.finish(CLIENT_FINAL.as_bytes()).unwrap(),
            SERVER_FINAL
        );
    }

    #[test]
    fn rfc7677_vector_with_the_wrong_password_fails() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let wrong = Verifier::from_password(b"pencil2", &salt, 4096);
        let (server, _) = ScramServer::start_with_nonce(
            wrong,
            CLIENT_FIRST.as_bytes(),
            SERVER_NONCE,
            Binding::NotOffered,
        )
        .unwrap();
        assert_eq!(
            server.finish(CLIENT_FINAL.as_bytes()),
            Err(ScramError::Failed)
        );
    }

    #[test]
    fn verifier_round_trips_through_its_text() {
        let v = rfc_verifier();
        let text = v.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        assert_eq!(text.parse::<Verifier>().unwrap(), v);
    }

    #[test]
    fn hash_password_matches_our_derivation_and_logs_in_a_real_client() {
        let text = hash_password(b"s3cret");
        let v: Verifier = text.parse().unwrap();
        assert_eq!(v.iterations, 4096);
        assert_eq!(v.salt.len(), 16);
        assert_eq!(v, Verifier::from_password(b"s3cret", &v.salt, 4096));

        // tokio-postgres' client side of the exchange.
        let mut client = ScramSha256::new(b"s3cret", ChannelBinding::unsupported());
        let (server, first) = ScramServer::start(v, client.message()).unwrap();
        client.update(first.as_bytes()).unwrap();
        let last = server.finish(client.message()).unwrap();
        client.finish(last.as_bytes()).unwrap();
    }

    #[test]
    fn a_real_client_with_the_wrong_password_fails() {
        let v: Verifier = hash_password(b"right").parse().unwrap();
        let mut client = ScramSha256::new(b"wrong", ChannelBinding::unsupported());
        let (server, first) = ScramServer::start(v, client.message()).unwrap();
        client.update(first.as_bytes()).unwrap();
        assert_eq!(server.finish(client.message()), Err(ScramError::Failed));
    }

    #[test]
    fn mock_verifier_is_stable_per_user_and_matches_nothing() {
        let secret = [7u8; 32];
        assert_eq!(Verifier::mock("x", &secret), Verifier::mock("x", &secret));
        assert_ne!(
            Verifier::mock("x", &secret).salt,
            Verifier::mock("y", &secret).salt
        );
        let mut client = ScramSha256::new(b"", ChannelBinding::unsupported());
        let (server, first) =
            ScramServer::start(Verifier::mock("x", &secret), client.message()).unwrap();
        client.update(first.as_bytes()).unwrap();
        assert_eq!(server.finish(client.message()), Err(ScramError::Failed));
    }

    #[test]
    fn bad_verifiers_are_named() {
        for (text, what) in [
            ("hunter2", "SCRAM-SHA-256$"),
            ("SCRAM-SHA-256$4096:c2FsdA==", "`$` before the keys"),
            ("SCRAM-SHA-256$x:c2FsdA==$a:b", "iterations"),
            ("SCRAM-SHA-256$4096:***$a:b", "salt"),
            ("SCRAM-SHA-256$4096:c2FsdA==$YQ==:YQ==", "StoredKey"),
        ] {
            let e = text.parse::<Verifier>().unwrap_err().to_string();
            assert!(e.contains(what), "{text}: {e}");
        }
    }

    #[test]
    fn channel_binding_and_malformed_messages_are_refused() {
        let v = rfc_verifier();
        assert_eq!(
            ScramServer::start(v.clone(), b"p=tls-server-end-point,,n=,r=abc").err(),
            Some(ScramError::ChannelBinding)
        );
        assert!(matches!(
            ScramServer::start(v.clone(), b"n,,n=,").err(),
            Some(ScramError::Malformed(_))
        ));
        // 'y' is accepted; its final message must then bind "y,,".
        let (server, first) = ScramServer::start(v, b"y,,n=,r=abc").unwrap();
        let nonce = first.split(',').next().unwrap();
        let bad = format!("c=biws,{nonce},p={}", B64.encode([0u8; 32]));
        assert!(matches!(
            server.finish(bad.as_bytes()),
            Err(ScramError::Malformed(_))
        ));
    }
}
