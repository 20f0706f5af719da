//! Authentication the proxy performs itself (today: the admin console's
//! SCRAM-SHA-256 login). Pure: messages in, messages out, so the console,
//! pooled logins and TLS channel binding can all build on it.

pub mod scram;
