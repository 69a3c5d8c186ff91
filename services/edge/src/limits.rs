//! Rate limits on session creation (token buckets, per API key and per
//! client address): a burst above the limit gets 429 with `Retry-After`,
//! never a 5xx or a hang, and never costs anyone else their stream.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::ApiError;

/// Keys remembered before idle buckets are dropped.
const MAX_KEYS: usize = 100_000;

pub struct CreateLimits {
    by_key: DefaultKeyedRateLimiter<String>,
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl CreateLimits {
    /// `rate` creations a second with bursts of `burst`; `None` for rate 0.
    pub fn new(rate: u32, burst: u32) -> Option<CreateLimits> {
        let rate = NonZeroU32::new(rate)?;
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(CreateLimits {
            by_key: DefaultKeyedRateLimiter::keyed(quota),
            by_address: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one creation for `key` (the API key presented, if any) and
    /// `address`, or says how long to wait.
    pub fn check(&self, key: Option<&str>, address: Option<IpAddr>) -> Result<(), ApiError> {
        self.tidy();
        let wait = |not_until: governor::NotUntil<_>, by: &'static str| {
            let wait = not_until.wait_time_from(self.clock.now());
            metrics::counter!(weir_telemetry::names::SESSIONS_RATE_LIMITED, "by" => by)
                .increment(1);
            ApiError::TooManyRequests {
                message: format!("too many sessions created from this {by}; retry later"),
                retry_after: wait.max(Duration::from_secs(1)),
            }
        };
        if let Some(ip) = address {
            self.by_address
                .check_key(&ip)
                .map_err(|n| wait(n, "address"))?;
        }
        if let Some(k) = key {
            self.by_key
                .check_key(&k.to_owned())
                .map_err(|n| wait(n, "api_key"))?;
        }
        Ok(())
    }

    /// Forgets buckets that are full again once many keys were seen.
    fn tidy(&self) {
        if self.by_address.len() > MAX_KEYS {
            self.by_address.retain_recent();
        }
        if self.by_key.len() > MAX_KEYS {
            self.by_key.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_over_the_limit_is_told_when_to_come_back() {
        assert!(CreateLimits::new(0, 10).is_none());
        let l = CreateLimits::new(1, 2).unwrap();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(l.check(None, Some(a)).is_ok());
        assert!(l.check(None, Some(a)).is_ok());
        match l.check(None, Some(a)) {
            Err(ApiError::TooManyRequests { retry_after, .. }) => {
                assert!(retry_after >= Duration::from_secs(1), "{retry_after:?}")
            }
            other => panic!("{other:?}"),
        }
        // Another address has its own bucket; the same key shares one.
        assert!(l.check(Some("k"), Some(b)).is_ok());
        assert!(l.check(Some("k"), Some(b)).is_ok());
        assert!(l.check(Some("k"), None).is_err());
    }
}
