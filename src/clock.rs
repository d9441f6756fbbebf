//! Time as Satchel counts it: wall-clock unix seconds and UTC days.
//!
//! Expiry stamps, quota days and upload start times are all unix seconds,
//! so that a record written by one process means the same to the next.
//! Anything that only measures how long something took uses `Instant`.

use std::time::{SystemTime, UNIX_EPOCH};

pub const SECONDS_PER_DAY: u64 = 86_400;

/// Wall-clock unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The UTC day number that unix second `at` falls on: what daily quotas count.
pub fn utc_day(at: u64) -> u64 {
    at / SECONDS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_midnight_utc() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(SECONDS_PER_DAY - 1), 0);
        assert_eq!(utc_day(SECONDS_PER_DAY), 1);
    }
}
