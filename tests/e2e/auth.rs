//! Authentication is relayed byte for byte: every method the server asks
//! for works through the proxy, and a wrong password is the server's 28P01.

use crate::harness::{
    CLEAR_PASSWORD, MD5_PASSWORD, SCRAM_PASSWORD, connect, simple_value, sqlstate, start_proxy,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_md5_scram_and_cleartext_authenticate_through_the_proxy() {
    let proxy = start_proxy("tokens").await;
    for (user, password) in [
        ("trust_user", None),
        ("md5_user", Some(MD5_PASSWORD)),
        ("scram_user", Some(SCRAM_PASSWORD)),
        ("clear_user", Some(CLEAR_PASSWORD)),
    ] {
        let mut cfg = proxy.config("heal7");
        cfg.user(user);
        if let Some(p) = password {
            cfg.password(p);
        }
        let c = connect(&cfg)
            .await
            .unwrap_or_else(|e| panic!("{user} through the proxy: {e:?}"));
        assert_eq!(simple_value(&c, "SELECT current_user").await, user);
        // And the session is a rewriting one.
        assert_eq!(
            simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
            "fresh-alice",
            "{user}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_the_servers_28p01() {
    let proxy = start_proxy("tokens").await;
    for user in ["md5_user", "scram_user", "clear_user"] {
        let mut cfg = proxy.config("heal7");
        cfg.user(user).password("not-the-password");
        let e = connect(&cfg)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user}: a wrong password was accepted"));
        assert_eq!(sqlstate(&e), "28P01", "{user}: {e:?}");
    }
    // A failed login does not affect the next session.
    let mut cfg = proxy.config("heal7");
    cfg.user("scram_user").password(SCRAM_PASSWORD);
    let c = connect(&cfg)
        .await
        .expect("right password after a wrong one");
    assert_eq!(simple_value(&c, "SELECT 1").await, "1");
}
