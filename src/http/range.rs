//! The HTTP `Range` header (RFC 9110 §14), for one range at a time.
//!
//! Resuming a download and seeking in a video need a single range; serving
//! several at once (multipart/byteranges) would cost complexity for no client
//! we know of, and RFC 9110 lets a server ignore a Range header it does not
//! want to honour, so anything but one well-formed byte range gets the whole
//! file.

use std::ops::Range;

/// What to send for a file of a known size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) Range header: the whole file, 200.
    Full,
    /// A satisfiable range, 206.
    Partial(Range<u64>),
    /// A well-formed range that lies outside the file, 416.
    Unsatisfiable,
}

/// Interprets a `Range` header value for a file of `size` bytes.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    match (parse_position(first), parse_position(last)) {
        // bytes=-n: the last n bytes.
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(size - suffix.min(size)..size)
            }
        }
        // bytes=a-
        (Some(start), None) if last.is_empty() => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(start..size)
            }
        }
        // bytes=a-b
        (Some(start), Some(end)) if start <= end => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(start..end.min(size - 1) + 1)
            }
        }
        _ => RangeRequest::Full,
    }
}

/// Digits only, as RFC 9110's `1*DIGIT`; `u64::from_str` would accept a '+'.
fn parse_position(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn the_three_single_range_forms() {
        assert_eq!(parse_range(Some("bytes=0-99"), 1000), Partial(0..100));
        assert_eq!(parse_range(Some("bytes=500-"), 1000), Partial(500..1000));
        assert_eq!(parse_range(Some("bytes=-100"), 1000), Partial(900..1000));
    }

    #[test]
    fn ranges_past_the_end_are_clipped_or_unsatisfiable() {
        assert_eq!(
            parse_range(Some("bytes=900-5000"), 1000),
            Partial(900..1000)
        );
        assert_eq!(parse_range(Some("bytes=-5000"), 1000), Partial(0..1000));
        assert_eq!(parse_range(Some("bytes=1000-"), 1000), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=1000-1001"), 1000), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 1000), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=999-999"), 1000), Partial(999..1000));
    }

    #[test]
    fn hostile_or_unsupported_headers_fall_back_to_the_whole_file() {
        for header in [
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=99999999999999999999999-",
            "bytes=0-99999999999999999999999",
            "bytes=--1",
            "bytes=1--2",
            "\0",
            "",
        ] {
            assert_eq!(parse_range(Some(header), 1000), Full, "{header:?}");
        }
        assert_eq!(parse_range(None, 1000), Full);
    }

    #[test]
    fn huge_positions_do_not_overflow() {
        assert_eq!(
            parse_range(Some(&format!("bytes=0-{}", u64::MAX)), 10),
            Partial(0..10)
        );
        assert_eq!(
            parse_range(Some(&format!("bytes=-{}", u64::MAX)), 10),
            Partial(0..10)
        );
        assert_eq!(
            parse_range(Some(&format!("bytes={}-", u64::MAX)), 10),
            Unsatisfiable
        );
    }
}
