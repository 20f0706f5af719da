//! The harness itself, checked over DIRECT connections (no proxy): if these
//! fail, the proxy tests below them prove nothing.

use crate::harness::{self, CLEAR_PASSWORD, MD5_PASSWORD, SCRAM_PASSWORD, pg, sqlstate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_has_fresh_rows_in_schemas_and_stale_rows_in_public() {
    let pg = pg().await;
    let c = pg.direct("heal7").await;
    let fresh =
        harness::simple_value(&c, "SELECT name FROM shared_common.users WHERE id = 1").await;
    let stale = harness::simple_value(&c, "SELECT name FROM public.users WHERE id = 1").await;
    assert_eq!(fresh, "fresh-alice");
    assert_eq!(stale, "STALE-alice");
    // Without the proxy a bare name reads the stale copy: exactly what the
    // proxy tests rely on to notice a missed qualification.
    let bare = harness::simple_value(&c, "SELECT name FROM users WHERE id = 1").await;
    assert_eq!(bare, "STALE-alice");
    let korean =
        harness::simple_value(&c, "SELECT name FROM shared_common.users WHERE id = 3").await;
    assert_eq!(korean, "김민수");
    let plain = pg.direct("heal7_plain").await;
    assert_eq!(
        harness::simple_value(&plain, "SELECT name FROM users WHERE id = 1").await,
        "plain-alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_auth_methods_work_as_configured() {
    let pg = pg().await;
    for (user, password) in [
        ("trust_user", None),
        ("md5_user", Some(MD5_PASSWORD)),
        ("scram_user", Some(SCRAM_PASSWORD)),
        ("clear_user", Some(CLEAR_PASSWORD)),
    ] {
        let mut cfg = pg.direct_config("heal7");
        cfg.user(user);
        if let Some(p) = password {
            cfg.password(p);
        }
        let c = harness::connect(&cfg)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(harness::simple_value(&c, "SELECT current_user").await, user);
    }
    for user in ["md5_user", "scram_user", "clear_user"] {
        let mut cfg = pg.direct_config("heal7");
        cfg.user(user).password("wrong");
        let e = harness::connect(&cfg)
            .await
            .map(|_| ())
            .expect_err("wrong password refused");
        assert_eq!(sqlstate(&e), "28P01", "{user}");
    }
}
