//! Console login throttle: a failed login is answered later the more
//! failures its address had before (0, 200 ms, 400 ms, ... up to 2 s), so
//! guessing passwords one connection after another gets slow, while an
//! admin's typo costs a fraction of a second. A success, or
//! [`IDLE_RESET`] without failures, forgets the address.
//!
//! Addresses are IPv4 addresses or IPv6 /64 prefixes (one host usually
//! owns a whole /64). The table is bounded: past [`MAX_ADDRESSES`], idle
//! entries are dropped, and if it is still full, new addresses share one
//! entry (so flooding it from many addresses neither grows memory nor
//! resets an address already tracked).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Added to the delay per earlier failure.
pub(super) const STEP: Duration = Duration::from_millis(200);
/// The longest delay.
pub(super) const MAX_DELAY: Duration = Duration::from_secs(2);
/// Failures older than this are forgotten.
pub(super) const IDLE_RESET: Duration = Duration::from_secs(5 * 60);
/// Addresses tracked at most (plus the shared overflow entry).
pub(super) const MAX_ADDRESSES: usize = 10_000;

/// The entry of addresses that found the table full: no client connects
/// from the unspecified address.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[derive(Debug, Default)]
pub(super) struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl LoginThrottle {
    /// Count a failed login from `ip` at `now`; how long to wait before
    /// answering it.
    pub(super) fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let ip = address_key(ip);
        let mut table = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !table.contains_key(&ip) && table.len() >= MAX_ADDRESSES {
            table.retain(|_, f| now.saturating_duration_since(f.last) < IDLE_RESET);
        }
        let key = if table.contains_key(&ip) || table.len() < MAX_ADDRESSES {
            ip
        } else {
            OVERFLOW
        };
        let entry = table.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(entry.last) >= IDLE_RESET {
            entry.count = 0;
        }
        let delay = STEP.saturating_mul(entry.count).min(MAX_DELAY);
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        delay
    }

    /// A login from `ip` succeeded: its failures are forgotten.
    pub(super) fn succeeded(&self, ip: IpAddr) {
        let ip = address_key(ip);
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.failures.lock().unwrap().len()
    }
}

/// The address a failure counts against: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn delays_grow_per_failure_up_to_the_cap() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let delays: Vec<u64> = (0..13)
            .map(|_| t.failed(A, now).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [
                0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2000, 2000
            ]
        );
        // Another address starts from nothing.
        assert_eq!(t.failed(B, now), Duration::ZERO);
    }

    #[test]
    fn a_success_or_an_idle_period_forgets_the_address() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        t.failed(A, now);
        t.failed(A, now);
        t.succeeded(A);
        assert_eq!(t.failed(A, now), Duration::ZERO);
        assert_eq!(t.failed(A, now), STEP);
        let later = now + IDLE_RESET;
        assert_eq!(t.failed(A, later), Duration::ZERO);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other_host: IpAddr = "2001:db8:1:2:ffff::7".parse().unwrap();
        t.failed(one, now);
        assert_eq!(t.failed(other_host, now), STEP);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        t.failed(A, now);
        assert_eq!(t.failed(mapped, now), STEP);
    }

    #[test]
    fn the_table_is_bounded_and_overflow_shares_one_entry() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..MAX_ADDRESSES as u32 {
            t.failed(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), now);
        }
        assert_eq!(t.len(), MAX_ADDRESSES);
        // Full of recent failures: new addresses share the overflow entry.
        assert_eq!(t.failed(B, now), Duration::ZERO);
        assert_eq!(t.failed(A, now), STEP);
        assert_eq!(t.len(), MAX_ADDRESSES + 1);
        // Once they are idle, a new address takes a fresh entry again.
        let later = now + IDLE_RESET;
        assert_eq!(t.failed(B, later), Duration::ZERO);
        assert_eq!(t.len(), 1);
    }
}
