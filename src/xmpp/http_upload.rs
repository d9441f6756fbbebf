//! XEP-0363 HTTP File Upload 1.2: the slot request and its answers.
//!
//! The request is parsed here rather than with `xmpp_parsers::http_upload`,
//! which (in 0.23) refuses requests without `content-type`: the attribute is
//! optional in the XEP and real clients omit it. Parsing also tells apart the
//! ways a request can be malformed, so that the client gets a precise
//! `bad-request` text instead of silence.

use minidom::Element;
use xmpp_parsers::http_upload::{Get, Put, SlotResult};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::slots::{Slot, SlotError, SlotRequest};
use crate::storage::Purpose;

/// Namespace of the XEP-0363 1.2 purpose elements.
pub const PURPOSE_NS: &str = "urn:xmpp:http:upload:purpose:0";

/// A slot request that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("The request has no filename attribute")]
    MissingFilename,
    #[error("The request has no size attribute")]
    MissingSize,
    #[error("The size must be a whole number of bytes greater than 0")]
    BadSize,
    #[error("The request names more than one purpose")]
    SeveralPurposes,
    #[error("Unknown upload purpose <{0}/>")]
    UnknownPurpose(String),
}

/// Reads `<request xmlns='urn:xmpp:http:upload:0' filename=.. size=.. [content-type=..]/>`.
///
/// The file name itself is checked by the slot policy, which owns the rules.
pub fn parse_request(element: &Element) -> Result<SlotRequest, RequestError> {
    let filename = element
        .attr("filename")
        .ok_or(RequestError::MissingFilename)?;
    let size = element.attr("size").ok_or(RequestError::MissingSize)?;
    // Digits only: `u64::from_str` would also take a leading '+'.
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RequestError::BadSize);
    }
    let size: u64 = size.parse().map_err(|_| RequestError::BadSize)?;
    if size == 0 {
        return Err(RequestError::BadSize);
    }
    let content_type = element
        .attr("content-type")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);

    let mut purposes = element.children().filter(|c| c.ns() == PURPOSE_NS);
    let purpose = match (purposes.next(), purposes.next()) {
        (None, _) => Purpose::Message,
        (Some(_), Some(_)) => return Err(RequestError::SeveralPurposes),
        (Some(only), None) => match only.name() {
            "message" => Purpose::Message,
            "ephemeral" => Purpose::Ephemeral,
            "permanent" => Purpose::Permanent,
            other => return Err(RequestError::UnknownPurpose(truncate(other, 64))),
        },
    };
    Ok(SlotRequest {
        filename: filename.to_owned(),
        size,
        content_type,
        purpose,
    })
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// The `<slot/>` answer; no headers, since the PUT URL carries the token.
pub fn slot_result(slot: &Slot) -> SlotResult {
    SlotResult {
        put: Put {
            url: slot.put_url.clone(),
            headers: Vec::new(),
        },
        get: Get {
            url: slot.get_url.clone(),
        },
    }
}

/// The error for a request that could not be parsed.
pub fn request_error(error: &RequestError) -> StanzaError {
    StanzaError::new(
        ErrorType::Modify,
        DefinedCondition::BadRequest,
        "en",
        error.to_string(),
    )
}

/// The error for a refused slot, in the shapes XEP-0363 §5 gives.
pub fn slot_error(error: &SlotError) -> StanzaError {
    let (kind, condition, details) = match error {
        SlotError::TooLarge { max } => (
            ErrorType::Modify,
            DefinedCondition::NotAcceptable,
            Some(file_too_large(*max)),
        ),
        SlotError::BadFilename(_) | SlotError::BadContentType => {
            (ErrorType::Modify, DefinedCondition::BadRequest, None)
        }
        SlotError::NotAllowed => (ErrorType::Cancel, DefinedCondition::NotAllowed, None),
        SlotError::Paused => (ErrorType::Wait, DefinedCondition::ResourceConstraint, None),
        SlotError::OverQuota { retry_at, .. } => (
            ErrorType::Wait,
            DefinedCondition::ResourceConstraint,
            Some(retry(*retry_at)),
        ),
        SlotError::Storage(_) => {
            return StanzaError::new(
                ErrorType::Wait,
                DefinedCondition::InternalServerError,
                "en",
                "The upload service cannot store files right now",
            )
        }
    };
    let mut stanza_error = StanzaError::new(kind, condition, "en", error.to_string());
    stanza_error.other = details;
    stanza_error
}

/// `<file-too-large><max-file-size>MAX</max-file-size></file-too-large>`
fn file_too_large(max: u64) -> Element {
    Element::builder("file-too-large", ns::HTTP_UPLOAD)
        .append(
            Element::builder("max-file-size", ns::HTTP_UPLOAD)
                .append(max.to_string())
                .build(),
        )
        .build()
}

/// `<retry stamp='…'/>`: when a request refused for a quota would fit.
fn retry(at: u64) -> Element {
    Element::builder("retry", ns::HTTP_UPLOAD)
        .attr(
            minidom::rxml::xml_ncname!("stamp").to_owned(),
            xep0082_stamp(at),
        )
        .build()
}

/// Unix seconds as an XEP-0082 DateTime in UTC, e.g. `2017-12-03T23:42:05Z`.
pub fn xep0082_stamp(unix_secs: u64) -> String {
    let secs = i64::try_from(unix_secs).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(xml: &str) -> Result<SlotRequest, RequestError> {
        parse_request(&xml.parse::<Element>().unwrap())
    }

    /// XEP-0363 example 5.
    #[test]
    fn parses_the_xep_example() {
        let parsed = request(
            "<request xmlns='urn:xmpp:http:upload:0' filename='my-juliet.jpg' size='23456' content-type='image/jpeg'/>",
        )
        .unwrap();
        assert_eq!(
            parsed,
            SlotRequest {
                filename: "my-juliet.jpg".into(),
                size: 23456,
                content_type: Some("image/jpeg".into()),
                purpose: Purpose::Message,
            }
        );
    }

    #[test]
    fn content_type_is_optional_and_empty_counts_as_absent() {
        let without = request("<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'/>");
        assert_eq!(without.unwrap().content_type, None);
        let empty = request(
            "<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1' content-type=''/>",
        );
        assert_eq!(empty.unwrap().content_type, None);
    }

    #[test]
    fn purposes_are_read() {
        let parsed = request(
            "<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'><ephemeral xmlns='urn:xmpp:http:upload:purpose:0'/></request>",
        );
        assert_eq!(parsed.unwrap().purpose, Purpose::Ephemeral);
        let parsed = request(
            "<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'><permanent xmlns='urn:xmpp:http:upload:purpose:0'/></request>",
        );
        assert_eq!(parsed.unwrap().purpose, Purpose::Permanent);
        let two = request(
            "<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'><permanent xmlns='urn:xmpp:http:upload:purpose:0'/><message xmlns='urn:xmpp:http:upload:purpose:0'/></request>",
        );
        assert_eq!(two, Err(RequestError::SeveralPurposes));
        let unknown = request(
            "<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'><forever xmlns='urn:xmpp:http:upload:purpose:0'/></request>",
        );
        assert_eq!(unknown, Err(RequestError::UnknownPurpose("forever".into())));
    }

    #[test]
    fn bad_sizes_are_refused() {
        for size in [
            "0",
            "-1",
            "abc",
            "",
            "+5",
            "1.5",
            " 5",
            "99999999999999999999999",
            "0x10",
        ] {
            let xml =
                format!("<request xmlns='urn:xmpp:http:upload:0' filename='a' size='{size}'/>");
            assert_eq!(request(&xml), Err(RequestError::BadSize), "size {size:?}");
        }
        assert_eq!(
            request("<request xmlns='urn:xmpp:http:upload:0' filename='a'/>"),
            Err(RequestError::MissingSize)
        );
        assert_eq!(
            request("<request xmlns='urn:xmpp:http:upload:0' size='3'/>"),
            Err(RequestError::MissingFilename)
        );
    }

    /// XEP-0363 example 7: too large carries `<file-too-large><max-file-size>`.
    #[test]
    fn too_large_error_matches_the_xep_example() {
        let error = Element::from(slot_error(&SlotError::TooLarge { max: 20000 }));
        assert_eq!(error.attr("type"), Some("modify"));
        assert!(error.has_child("not-acceptable", ns::XMPP_STANZAS));
        let max = error
            .get_child("file-too-large", ns::HTTP_UPLOAD)
            .and_then(|f| f.get_child("max-file-size", ns::HTTP_UPLOAD))
            .unwrap();
        assert_eq!(max.text(), "20000");
    }

    /// XEP-0363 example 8: a quota refusal carries `<retry stamp>`.
    #[test]
    fn quota_error_matches_the_xep_example() {
        let error = Element::from(slot_error(&SlotError::OverQuota {
            limit: crate::slots::Limit::UserQuota,
            reason: "Quota reached",
            retry_at: 1_512_344_525,
        }));
        assert_eq!(error.attr("type"), Some("wait"));
        assert!(error.has_child("resource-constraint", ns::XMPP_STANZAS));
        let retry = error.get_child("retry", ns::HTTP_UPLOAD).unwrap();
        assert_eq!(retry.attr("stamp"), Some("2017-12-03T23:42:05Z"));
    }

    /// XEP-0363 example 9: a user who may not upload gets `not-allowed`.
    #[test]
    fn not_allowed_error_is_a_cancel() {
        let error = Element::from(slot_error(&SlotError::NotAllowed));
        assert_eq!(error.attr("type"), Some("cancel"));
        assert!(error.has_child("not-allowed", ns::XMPP_STANZAS));
    }

    #[test]
    fn refused_names_are_bad_requests_and_storage_failures_are_temporary() {
        let error = Element::from(slot_error(&SlotError::BadContentType));
        assert_eq!(error.attr("type"), Some("modify"));
        assert!(error.has_child("bad-request", ns::XMPP_STANZAS));
        let error = Element::from(slot_error(&SlotError::Storage(
            crate::storage::StorageError::DiskFull,
        )));
        assert_eq!(error.attr("type"), Some("wait"));
        assert!(error.has_child("internal-server-error", ns::XMPP_STANZAS));
        assert!(!error.has_child("retry", ns::HTTP_UPLOAD));
    }

    /// XEP-0363 example 6: the slot carries a put and a get URL.
    #[test]
    fn slot_result_matches_the_xep_example() {
        let slot = Slot {
            id: crate::storage::FileId([7; 16]),
            put_url: "https://upload.montague.tld/upload/x/t/my-juliet.jpg".into(),
            get_url: "https://upload.montague.tld/file/x/my-juliet.jpg".into(),
        };
        let element = Element::from(slot_result(&slot));
        assert!(element.is("slot", ns::HTTP_UPLOAD));
        assert_eq!(
            element
                .get_child("put", ns::HTTP_UPLOAD)
                .unwrap()
                .attr("url"),
            Some(slot.put_url.as_str())
        );
        assert_eq!(
            element
                .get_child("get", ns::HTTP_UPLOAD)
                .unwrap()
                .attr("url"),
            Some(slot.get_url.as_str())
        );
    }
}
