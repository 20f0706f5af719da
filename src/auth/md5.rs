//! PostgreSQL's md5 password method against a stored `md5<hex>` hash
//! (`pg_authid.rolpassword`): the proxy checks a client's answer and logs
//! in to the server with the hash alone, never the password.

use md5::{Digest, Md5};

/// Whether `stored` is an md5 hash as Postgres keeps it.
pub fn is_md5_hash(stored: &str) -> bool {
    stored.len() == 35
        && stored.starts_with("md5")
        && stored[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The answer to an AuthenticationMD5Password with `salt`, from the stored
/// hash: `md5` + md5(hex of the stored hash + salt).
pub fn response(stored: &str, salt: [u8; 4]) -> String {
    let mut h = Md5::new();
    h.update(&stored.as_bytes()[3..]);
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

/// Check a client's PasswordMessage body (without its NUL) against the
/// stored hash, in constant time.
pub fn verify(stored: &str, salt: [u8; 4], answer: &[u8]) -> bool {
    let expected = response(stored, salt);
    expected.len() == answer.len()
        && expected
            .bytes()
            .zip(answer)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_libpq() {
        // What Postgres stores for user "u", password "p", and what libpq
        // answers for salt 1,2,3,4 (postgres-protocol implements libpq).
        let stored = format!("md5{}", hex(&Md5::digest(b"pu")));
        assert!(is_md5_hash(&stored));
        let libpq = postgres_protocol::authentication::md5_hash(b"u", b"p", [1, 2, 3, 4]);
        assert_eq!(response(&stored, [1, 2, 3, 4]), libpq);
        assert!(verify(&stored, [1, 2, 3, 4], libpq.as_bytes()));
        assert!(!verify(&stored, [1, 2, 3, 5], libpq.as_bytes()));
        assert!(!is_md5_hash("SCRAM-SHA-256$4096:x$y:z"));
    }
}
