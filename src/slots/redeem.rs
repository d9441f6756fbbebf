//! Redeeming a slot: the PUT that presents its ticket, checked against the
//! slot's terms before a byte of the body is stored.
//!
//! The slot was granted over XMPP, maybe long before, and the only record of
//! it is the ticket in the URL (see [`super::ticket`]). So when the upload
//! arrives, the ticket is opened and everything is checked again: that we
//! sealed it for this id, that the request declares the size and type the
//! slot was granted for, that the slot has not expired, and that the user's
//! quota still has room, since a user may hold many slots granted under the
//! same usage. The file's retention follows from the purpose the slot was
//! asked for.
//!
//! The checks run in a fixed order, and the refusal names the first that
//! fails. Expiry comes after the headers: a client whose tries failed on
//! its headers until the slot expired still learns the real reason.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::quota::{Exceeded, QuotaLimits};
use super::terms::SlotTerms;
use super::ticket::TicketKeys;
use crate::config::{LiveConfig, Retention};
use crate::media::media_type_essence;
use crate::storage::{FileId, Purpose, QuotaCheck, StorageError, Store, UploadWriter};

/// The type stored for an upload that names none.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// A PUT into a slot, as it arrived: what its URL and the headers the slot's
/// terms govern say.
#[derive(Debug, Clone)]
pub struct PutRequest {
    pub id: FileId,
    pub ticket: String,
    pub content_length: Option<HeaderValue>,
    pub content_type: Option<HeaderValue>,
}

/// Why a PUT may not upload into its slot, in the order the checks run.
/// The text is what the client is told.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("invalid upload token")]
    InvalidTicket,
    #[error("Content-Length is required")]
    LengthMissing,
    #[error("malformed Content-Length")]
    LengthMalformed,
    #[error("Content-Length differs from the size of the slot")]
    LengthDiffers,
    #[error("malformed Content-Type")]
    ContentTypeMalformed,
    #[error("Content-Type differs from the slot request")]
    ContentTypeDiffers,
    #[error("upload slot expired")]
    Expired,
    #[error("{}", .0.reason())]
    OverQuota(Exceeded),
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
}

/// Redeems the tickets a [`SlotService`](super::SlotService) seals (see
/// [`SlotService::redeemer`](super::SlotService::redeemer)). Cheap to clone;
/// [`Redeemer::redeem`] blocks on the store.
#[derive(Clone)]
pub struct Redeemer {
    store: Store,
    tickets: Arc<TicketKeys>,
    /// The quotas and retention in force, which SIGHUP may change.
    settings: LiveConfig,
}

impl Redeemer {
    /// Redeems the tickets sealed with `tickets`, under the quotas and
    /// retention in force when each PUT comes.
    pub(super) fn new(settings: LiveConfig, store: Store, tickets: Arc<TicketKeys>) -> Redeemer {
        Redeemer {
            store,
            tickets,
            settings,
        }
    }

    /// Checks `put` against the slot its ticket seals and, if it may go
    /// ahead, begins its upload: the writer the body goes into.
    pub fn redeem(&self, put: &PutRequest, now: u64) -> Result<UploadWriter, RedeemError> {
        let slot = self
            .tickets
            .open(&put.id, &put.ticket)
            .ok_or(RedeemError::InvalidTicket)?;
        check_length(&slot, put.content_length.as_ref())?;
        let content_type = type_to_store(&slot, put.content_type.as_ref())?;
        if now > slot.expires {
            return Err(RedeemError::Expired);
        }
        let settings = self.settings.get();
        let expires =
            now.saturating_add(retention_for(&settings.retention, slot.purpose).as_secs());
        // The store checks the quota as it claims the upload, with the
        // user's other uploads in progress counted, and after whether the
        // upload is complete: a retry of a completed upload hears that
        // rather than that it no longer fits.
        let quota = QuotaCheck {
            limits: QuotaLimits::from_config(&settings),
            now,
        };
        let begun = self
            .store
            .begin_upload(&slot.new_upload(content_type, expires), Some(quota));
        match begun {
            Ok(writer) => Ok(writer),
            Err(StorageError::OverQuota(over)) => Err(RedeemError::OverQuota(over)),
            Err(err) => Err(RedeemError::Storage(err)),
        }
    }
}

/// How long a file uploaded for `purpose` is kept.
fn retention_for(retention: &Retention, purpose: Purpose) -> Duration {
    match purpose {
        Purpose::Ephemeral => retention.ephemeral,
        Purpose::Message => retention.message,
        Purpose::Permanent => retention.permanent,
    }
}

/// The body must be exactly as long as the slot allows: a plain decimal
/// `Content-Length` equal to its size (chunked bodies declare none).
fn check_length(slot: &SlotTerms, declared: Option<&HeaderValue>) -> Result<(), RedeemError> {
    let declared = declared.ok_or(RedeemError::LengthMissing)?;
    let length: u64 = declared
        .to_str()
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse().ok())
        .ok_or(RedeemError::LengthMalformed)?;
    if length != slot.size {
        return Err(RedeemError::LengthDiffers);
    }
    Ok(())
}

/// The type to store: the slot's, if its request named one (a PUT that sends
/// a type must then send the same media type); otherwise whatever the PUT
/// sends, or `application/octet-stream`.
fn type_to_store(slot: &SlotTerms, sent: Option<&HeaderValue>) -> Result<String, RedeemError> {
    let sent = match sent {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| RedeemError::ContentTypeMalformed)?
                .trim(),
        ),
        None => None,
    }
    .filter(|sent| !sent.is_empty());
    match (&slot.content_type, sent) {
        (Some(expected), Some(sent))
            if media_type_essence(expected) == media_type_essence(sent) =>
        {
            Ok(expected.clone())
        }
        // XEP-0363: reject a type that does not match the one given
        // beforehand; a PUT without one (Libervia sends none) is no mismatch.
        (Some(expected), None) => Ok(expected.clone()),
        (Some(_), Some(_)) => Err(RedeemError::ContentTypeDiffers),
        (None, Some(sent)) => Ok(sent.to_owned()),
        (None, None) => Ok(DEFAULT_CONTENT_TYPE.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::test_support::TestSlots;

    const NOW: u64 = 1_800_000_000;

    fn terms(content_type: Option<&str>) -> SlotTerms {
        SlotTerms {
            id: FileId::random(),
            uploader: "alice@example.org".into(),
            filename: "a.png".into(),
            size: 10,
            content_type: content_type.map(str::to_owned),
            purpose: Purpose::Message,
            created: NOW,
            expires: NOW + 300,
        }
    }

    fn header(value: &str) -> Option<HeaderValue> {
        Some(value.parse().unwrap())
    }

    /// The PUT a client makes for `slot`: its ticket, its size, its type.
    fn put_for(slots: &TestSlots, slot: &SlotTerms) -> PutRequest {
        PutRequest {
            id: slot.id,
            ticket: slots.service.tickets.seal(slot),
            content_length: header(&slot.size.to_string()),
            content_type: slot.content_type.as_deref().and_then(header),
        }
    }

    /// Uploads the slot's size in bytes through `writer`.
    fn upload(writer: UploadWriter, size: u64) -> crate::storage::FileRecord {
        let mut writer = writer;
        writer
            .write_pieces(&[bytes::Bytes::from(vec![7; size as usize])])
            .unwrap();
        writer.finish(NOW).unwrap()
    }

    #[test]
    fn length_must_be_present_and_equal() {
        let slot = terms(None);
        let check = |length: Option<&str>| check_length(&slot, length.and_then(header).as_ref());
        assert!(check(Some("10")).is_ok());
        assert!(matches!(check(None), Err(RedeemError::LengthMissing)));
        for other in ["11", "9", "0"] {
            assert!(
                matches!(check(Some(other)), Err(RedeemError::LengthDiffers)),
                "{other}"
            );
        }
        for bad in ["-10", "+10", "ten", "1e1", " 10", "99999999999999999999999"] {
            assert!(
                matches!(check(Some(bad)), Err(RedeemError::LengthMalformed)),
                "{bad}"
            );
        }
    }

    #[test]
    fn content_type_follows_the_slot() {
        let stored = |slot_type: Option<&str>, sent: Option<&str>| {
            type_to_store(&terms(slot_type), sent.and_then(header).as_ref())
        };
        let png = Some("image/png");
        assert_eq!(stored(png, png).unwrap(), "image/png");
        assert_eq!(stored(png, Some("Image/PNG")).unwrap(), "image/png");
        assert_eq!(
            stored(Some("text/plain; charset=utf-8"), Some("text/plain")).unwrap(),
            "text/plain; charset=utf-8",
            "the slot's type is kept"
        );
        assert!(matches!(
            stored(png, Some("text/html")),
            Err(RedeemError::ContentTypeDiffers)
        ));
        for unsaid in [None, Some(""), Some("  ")] {
            assert_eq!(
                stored(png, unsaid).unwrap(),
                "image/png",
                "no type sent ({unsaid:?}) is no mismatch: the slot's is served"
            );
        }
        assert_eq!(stored(None, Some(" text/plain ")).unwrap(), "text/plain");
        assert_eq!(stored(None, Some("")).unwrap(), DEFAULT_CONTENT_TYPE);
        assert_eq!(stored(None, None).unwrap(), DEFAULT_CONTENT_TYPE);
        let not_text = HeaderValue::from_bytes(b"image/\xffpng").unwrap();
        assert!(matches!(
            type_to_store(&terms(None), Some(&not_text)),
            Err(RedeemError::ContentTypeMalformed)
        ));
    }

    #[test]
    fn a_redeemed_slot_is_kept_as_long_as_its_purpose_asks() {
        let slots = TestSlots::new();
        let redeemer = slots.service.redeemer();
        for (purpose, kept) in [
            (Purpose::Ephemeral, slots.config.retention.ephemeral),
            (Purpose::Message, slots.config.retention.message),
            (Purpose::Permanent, slots.config.retention.permanent),
        ] {
            let slot = SlotTerms {
                purpose,
                ..terms(Some("image/png"))
            };
            let writer = redeemer.redeem(&put_for(&slots, &slot), NOW).unwrap();
            let file = upload(writer, slot.size);
            assert_eq!(file.expires, NOW + kept.as_secs(), "{purpose:?}");
            assert_eq!(file.content_type, "image/png");
            assert_eq!(file.uploader, slot.uploader);
        }
    }

    #[test]
    fn a_ticket_opens_only_for_its_own_id() {
        let slots = TestSlots::new();
        let redeemer = slots.service.redeemer();
        let put = put_for(&slots, &terms(None));
        for forged in [
            PutRequest {
                id: FileId::random(),
                ..put.clone()
            },
            PutRequest {
                ticket: "A".repeat(80),
                ..put.clone()
            },
        ] {
            assert!(matches!(
                redeemer.redeem(&forged, NOW),
                Err(RedeemError::InvalidTicket)
            ));
        }
    }

    #[test]
    fn the_first_failed_check_is_the_one_reported() {
        let slots = TestSlots::new();
        let redeemer = slots.service.redeemer();
        let slot = terms(Some("image/png"));
        let put = put_for(&slots, &slot);
        let expired = slot.expires + 1;
        let refusal = |put: &PutRequest| match redeemer.redeem(put, expired) {
            Ok(_) => panic!("redeemed"),
            Err(refusal) => refusal,
        };
        let forged_and_headless = PutRequest {
            id: FileId::random(),
            content_length: None,
            ..put.clone()
        };
        assert!(matches!(
            refusal(&forged_and_headless),
            RedeemError::InvalidTicket
        ));
        let wrong_length_and_type = PutRequest {
            content_length: header("11"),
            content_type: Some(HeaderValue::from_bytes(b"\xff").unwrap()),
            ..put.clone()
        };
        assert!(matches!(
            refusal(&wrong_length_and_type),
            RedeemError::LengthDiffers
        ));
        let wrong_type = PutRequest {
            content_type: header("text/html"),
            ..put.clone()
        };
        assert!(matches!(
            refusal(&wrong_type),
            RedeemError::ContentTypeDiffers
        ));
        assert!(matches!(refusal(&put), RedeemError::Expired));
        assert!(
            redeemer.redeem(&put, slot.expires).is_ok(),
            "valid up to its expiry"
        );
    }

    #[test]
    fn the_quota_is_checked_again_when_the_upload_begins() {
        let slots = TestSlots::new();
        let mut config = slots.config.clone();
        config.limits.daily_upload_bytes = 15;
        let settings = LiveConfig::new(config.clone());
        let redeemer = Redeemer {
            settings: settings.clone(),
            ..slots.service.redeemer()
        };
        let (first, second) = (terms(None), terms(None));
        let writer = redeemer.redeem(&put_for(&slots, &first), NOW).unwrap();
        upload(writer, first.size);
        assert!(matches!(
            redeemer.redeem(&put_for(&slots, &second), NOW),
            Err(RedeemError::OverQuota(Exceeded::Daily))
        ));
        // A completed slot says so, whatever the quota.
        assert!(matches!(
            redeemer.redeem(&put_for(&slots, &first), NOW),
            Err(RedeemError::Storage(StorageError::AlreadyUploaded))
        ));
        // The refused slot was not taken: it can be uploaded once there is
        // room, here by a reload that raises the quota.
        config.limits.daily_upload_bytes = 20;
        settings.set_for_tests(config);
        let writer = redeemer.redeem(&put_for(&slots, &second), NOW).unwrap();
        upload(writer, second.size);
    }

    #[test]
    fn the_retention_in_force_when_the_put_comes_sets_the_expiry() {
        let slots = TestSlots::new();
        let mut config = slots.config.clone();
        let settings = LiveConfig::new(config.clone());
        let redeemer = Redeemer {
            settings: settings.clone(),
            ..slots.service.redeemer()
        };
        // Sealed into the ticket before the reload, redeemed after it.
        let slot = terms(None);
        let put = put_for(&slots, &slot);
        config.retention.message = Duration::from_secs(42);
        settings.set_for_tests(config);
        let file = upload(redeemer.redeem(&put, NOW).unwrap(), slot.size);
        assert_eq!(file.expires, NOW + 42);
    }
}
