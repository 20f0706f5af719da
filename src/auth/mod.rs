//! Authentication the proxy performs itself: the admin console's
//! SCRAM-SHA-256 login, and pooled logins, where the proxy checks the
//! client against the verifier the server keeps (looked up by auth_query)
//! and logs in to the server with what the exchange revealed (SCRAM
//! ClientKey, md5 hash), never a password. Pure: messages in, messages out.

pub mod md5;
pub mod scram;
