//! The quota rule: which limit a user's next upload would cross.
//!
//! It lives with the store because the store applies it when an upload
//! begins, in the same step that claims the upload and reserves its size
//! (see `claims`): checked and reserved apart, concurrent uploads, on one
//! instance or several, could each see the same room and all take it. The
//! slot layer asks the same rule earlier, when a slot is requested, and
//! turns a refusal into XEP-0363's `<retry stamp>` (`crate::slots::quota`).

use super::records::UserUsage;

/// The limits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub daily_upload_bytes: u64,
    pub user_storage_bytes: u64,
}

/// The quota an upload must fit when it begins, and the time it begins at
/// (which UTC day's allowance it draws on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaCheck {
    pub limits: QuotaLimits,
    pub now: u64,
}

/// The quota `size` more bytes would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Daily,
    Storage,
}

impl Exceeded {
    pub fn reason(self) -> &'static str {
        match self {
            Exceeded::Daily => "Daily upload quota reached",
            Exceeded::Storage => "Storage quota reached",
        }
    }
}

/// Which quota, if any, a user with `usage` would exceed by `size` more bytes.
///
/// Asked twice per upload: when the slot is requested, and again when its
/// PUT starts (with the uploads in progress counted in `usage`), since a
/// user may hold many slots granted under the same usage.
pub fn exceeded(limits: QuotaLimits, usage: UserUsage, size: u64) -> Option<Exceeded> {
    if usage.day_bytes.saturating_add(size) > limits.daily_upload_bytes {
        Some(Exceeded::Daily)
    } else if usage.stored_bytes.saturating_add(size) > limits.user_storage_bytes {
        Some(Exceeded::Storage)
    } else {
        None
    }
}

impl UserUsage {
    /// This usage with `reserved` more bytes counted as uploaded today and
    /// stored: what it will be if the uploads in progress all complete.
    pub fn with_reserved(mut self, reserved: u64) -> UserUsage {
        self.day_bytes = self.day_bytes.saturating_add(reserved);
        self.stored_bytes = self.stored_bytes.saturating_add(reserved);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QuotaLimits = QuotaLimits {
        daily_upload_bytes: 1000,
        user_storage_bytes: 2000,
    };

    fn usage(stored_bytes: u64, day_bytes: u64) -> UserUsage {
        UserUsage {
            stored_bytes,
            day: 20_000,
            day_bytes,
        }
    }

    #[test]
    fn the_daily_quota_is_checked_before_the_storage_quota() {
        assert_eq!(exceeded(LIMITS, usage(1000, 500), 500), None);
        assert_eq!(
            exceeded(LIMITS, usage(1999, 1000), 1),
            Some(Exceeded::Daily)
        );
        assert_eq!(exceeded(LIMITS, usage(1999, 0), 2), Some(Exceeded::Storage));
        assert_eq!(
            exceeded(LIMITS, usage(0, 0), u64::MAX),
            Some(Exceeded::Daily)
        );
    }

    #[test]
    fn reserved_bytes_count_against_both_quotas() {
        assert_eq!(exceeded(LIMITS, usage(0, 0).with_reserved(600), 400), None);
        assert_eq!(
            exceeded(LIMITS, usage(0, 0).with_reserved(601), 400),
            Some(Exceeded::Daily)
        );
        assert_eq!(
            exceeded(LIMITS, usage(1500, 0).with_reserved(400), 101),
            Some(Exceeded::Storage)
        );
        assert_eq!(
            usage(u64::MAX, 0).with_reserved(1).stored_bytes,
            u64::MAX,
            "saturates"
        );
    }
}
