//! Quotas: how much one user, and the service as a whole, may take.
//!
//! A refusal is temporary (`resource-constraint`), so it comes with the time
//! at which the request would fit, for the XEP-0363 `<retry stamp>`: the next
//! UTC midnight for the daily allowance, the expiry of enough of the user's
//! files for stored bytes, the next expiry for the disk.

use crate::config::Config;
use crate::storage::UserUsage;

use crate::clock::SECONDS_PER_DAY;

pub use crate::storage::{exceeded, Exceeded, QuotaLimits};

impl QuotaLimits {
    pub fn from_config(config: &Config) -> QuotaLimits {
        QuotaLimits {
            daily_upload_bytes: config.limits.daily_upload_bytes,
            user_storage_bytes: config.limits.user_storage_bytes,
        }
    }
}

/// A request that does not fit, and when it will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverQuota {
    /// Unix seconds.
    pub retry_at: u64,
    pub reason: &'static str,
}

/// Checks a user's request for `size` more bytes.
///
/// `files_by_expiry` lists the user's stored files as (expires, size), soonest
/// first; it is only read when the storage quota is exceeded.
pub fn check_user_quota(
    limits: QuotaLimits,
    usage: UserUsage,
    files_by_expiry: &[(u64, u64)],
    size: u64,
    now: u64,
) -> Result<(), OverQuota> {
    let Some(over) = exceeded(limits, usage, size) else {
        return Ok(());
    };
    let retry_at = match over {
        Exceeded::Daily => (now / SECONDS_PER_DAY + 1) * SECONDS_PER_DAY,
        Exceeded::Storage => {
            let excess = usage.stored_bytes.saturating_add(size) - limits.user_storage_bytes;
            time_when_freed(files_by_expiry, excess, now)
        }
    };
    Err(OverQuota {
        retry_at,
        reason: over.reason(),
    })
}

/// The earliest expiry after which at least `needed` bytes are freed.
///
/// When expiring everything would not be enough, the last expiry is still the
/// best honest answer: the situation changes then.
pub fn time_when_freed(files_by_expiry: &[(u64, u64)], needed: u64, now: u64) -> u64 {
    let mut freed = 0u64;
    let mut last = now + SECONDS_PER_DAY;
    for &(expires, size) in files_by_expiry {
        freed = freed.saturating_add(size);
        last = expires.max(now);
        if freed >= needed {
            break;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QuotaLimits = QuotaLimits {
        daily_upload_bytes: 1000,
        user_storage_bytes: 2000,
    };
    const NOW: u64 = 20_000 * SECONDS_PER_DAY + 3600;

    fn usage(stored_bytes: u64, day_bytes: u64) -> UserUsage {
        UserUsage {
            stored_bytes,
            day: NOW / SECONDS_PER_DAY,
            day_bytes,
        }
    }

    #[test]
    fn within_limits_passes() {
        assert_eq!(
            check_user_quota(LIMITS, usage(1000, 500), &[], 500, NOW),
            Ok(())
        );
    }

    #[test]
    fn daily_quota_retries_at_next_midnight() {
        let refusal = check_user_quota(LIMITS, usage(0, 900), &[], 101, NOW).unwrap_err();
        assert_eq!(refusal.retry_at, 20_001 * SECONDS_PER_DAY);
    }

    #[test]
    fn storage_quota_retries_when_enough_expires() {
        let files = [(NOW + 10, 100), (NOW + 20, 400), (NOW + 30, 1000)];
        // 1900 stored + 500 asked = 2400: 400 over, freed by the first two files.
        let refusal = check_user_quota(LIMITS, usage(1900, 0), &files, 500, NOW).unwrap_err();
        assert_eq!(refusal.retry_at, NOW + 20);
        assert_eq!(refusal.reason, "Storage quota reached");
    }

    #[test]
    fn freed_time_never_lies_in_the_past() {
        assert_eq!(time_when_freed(&[(NOW - 5, 10)], 5, NOW), NOW);
        assert_eq!(time_when_freed(&[], 5, NOW), NOW + SECONDS_PER_DAY);
    }
}
