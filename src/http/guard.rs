//! Who may use the admin endpoint: the host a request names (a browser
//! tricked by DNS rebinding names the attacker's host), its Origin (a
//! cross-site request from a page), and the bearer token when one is
//! configured.

use std::net::IpAddr;

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, HOST, ORIGIN};

use crate::config::AdminHttp;

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 403: a Host that is not an IP address, `localhost` or a configured
    /// name.
    Host,
    /// 403: an Origin of another host.
    Origin,
    /// 401: the path needs the token, and the request does not carry it.
    Token,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::Host | Refusal::Origin => 403,
            Refusal::Token => 401,
        }
    }

    pub fn body(self) -> &'static str {
        match self {
            Refusal::Host => "forbidden: unknown host\n",
            Refusal::Origin => "forbidden: cross-origin request\n",
            Refusal::Token => "unauthorized: Authorization: Bearer <token> required\n",
        }
    }
}

/// Whether a request for `path` with `headers` may be served.
pub fn check(path: &str, headers: &HeaderMap, rules: &AdminHttp) -> Result<(), Refusal> {
    let host = match headers.get(HOST) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| Refusal::Host)?),
    };
    if let Some(host) = host
        && !allowed_host(host, rules)
    {
        return Err(Refusal::Host);
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().map_err(|_| Refusal::Origin)?;
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .ok_or(Refusal::Origin)?;
        let same_host = host.is_some_and(|h| h.eq_ignore_ascii_case(authority));
        if !same_host || !allowed_host(authority, rules) {
            return Err(Refusal::Origin);
        }
    }
    if let Some(token) = &rules.token
        && !rules.open_paths.iter().any(|p| p == path)
    {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().as_bytes());
        if !presented.is_some_and(|t| token.matches(t)) {
            return Err(Refusal::Token);
        }
    }
    Ok(())
}

/// An IP address, `localhost`, or a configured name, with or without a port.
fn allowed_host(authority: &str, rules: &AdminHttp) -> bool {
    let name = if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((v6, _)) => v6,
            None => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => authority,
        }
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || rules.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminToken;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn rules(token: Option<&str>) -> AdminHttp {
        AdminHttp {
            token: token.map(|t| AdminToken::new(t.as_bytes())),
            open_paths: vec!["/metrics".into(), "/healthz".into(), "/readyz".into()],
            hosts: vec!["proxy.internal".into()],
        }
    }

    #[test]
    fn hosts_must_be_addresses_localhost_or_configured() {
        let r = rules(None);
        for ok in [
            "127.0.0.1:9187",
            "localhost",
            "LOCALHOST:1",
            "[::1]:9187",
            "10.0.0.7",
            "proxy.internal:9187",
        ] {
            assert_eq!(
                check("/mapping", &headers(&[("host", ok)]), &r),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "evil.example:9187",
            "evil.example",
            "127.0.0.1.evil.example",
            "[::1",
        ] {
            assert_eq!(
                check("/mapping", &headers(&[("host", bad)]), &r),
                Err(Refusal::Host),
                "{bad}"
            );
        }
        assert_eq!(check("/metrics", &HeaderMap::new(), &r), Ok(()));
    }

    #[test]
    fn a_cross_origin_request_is_refused() {
        let r = rules(None);
        let same = headers(&[
            ("host", "127.0.0.1:9187"),
            ("origin", "http://127.0.0.1:9187"),
        ]);
        assert_eq!(check("/reload", &same, &r), Ok(()));
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:8080",
            "null",
            "file://",
        ] {
            let h = headers(&[("host", "127.0.0.1:9187"), ("origin", origin)]);
            assert_eq!(check("/reload", &h, &r), Err(Refusal::Origin), "{origin}");
        }
    }

    #[test]
    fn the_token_guards_every_path_but_the_open_ones() {
        let r = rules(Some("0123456789abcdef-token"));
        let host = ("host", "127.0.0.1");
        assert_eq!(check("/metrics", &headers(&[host]), &r), Ok(()));
        for path in ["/mapping", "/unmapped", "/reload"] {
            assert_eq!(check(path, &headers(&[host]), &r), Err(Refusal::Token));
            let wrong = headers(&[host, ("authorization", "Bearer 0123456789abcdef-tokeN")]);
            assert_eq!(check(path, &wrong, &r), Err(Refusal::Token));
            let right = headers(&[host, ("authorization", "bearer 0123456789abcdef-token")]);
            assert_eq!(check(path, &right, &r), Ok(()));
        }
        assert_eq!(format!("{:?}", r.token), "Some(AdminToken(..))");
    }
}
