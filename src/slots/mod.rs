//! Slots: the decision to let a user upload one file, and the URLs for it.
//!
//! This is the policy half of XEP-0363, kept apart from the XML and from
//! HTTP so that it can be tested, benchmarked and reasoned about on its own:
//! who may upload (`allowed_domains`), what ([`filename`], size), how much
//! ([`quota`]), and the PUT URL that carries the permission, the slot's
//! [`terms`] sealed in it ([`ticket`]). A grant writes nothing: the ticket is
//! the only record of a slot, and the PUT that presents it is checked
//! against it again ([`redeem`]).

pub mod filename;
pub mod quota;
pub mod redeem;
pub mod terms;
pub mod ticket;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jid::BareJid;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::{Limits, LiveConfig};
use crate::rate_limit::RateLimiter;
use crate::storage::{DiskSpace, FileId, Purpose, StorageError, Store};
use filename::{check_filename, FilenameError};
use quota::{check_user_quota, time_when_freed, QuotaLimits};
use redeem::Redeemer;
use terms::SlotTerms;
use ticket::TicketKeys;

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    pub filename: String,
    pub size: u64,
    /// `None` when absent or empty.
    pub content_type: Option<String>,
    pub purpose: Purpose,
}

/// A granted slot.
#[derive(Debug, Clone)]
pub struct Slot {
    pub id: FileId,
    pub put_url: String,
    pub get_url: String,
}

/// Why no slot was granted.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("File too large. The maximum file size is {max} bytes")]
    TooLarge { max: u64 },
    #[error("{0}")]
    BadFilename(#[from] FilenameError),
    #[error("The content type is not a valid HTTP header value")]
    BadContentType,
    #[error("Only users of this service's domains may upload files")]
    NotAllowed,
    #[error("{reason}")]
    OverQuota {
        limit: Limit,
        reason: &'static str,
        retry_at: u64,
    },
    #[error("Uploads are paused for maintenance; downloads go on")]
    Paused,
    #[error("storage failure")]
    Storage(#[from] StorageError),
}

/// Which limit an [`SlotError::OverQuota`] refusal hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Slot requests a minute.
    Rate,
    /// The uploader's daily or stored bytes.
    UserQuota,
    /// The free share of the store's disk.
    Disk,
}

impl SlotError {
    /// A short name of the refusal, from a fixed list (the metrics' label).
    pub fn kind(&self) -> &'static str {
        match self {
            SlotError::TooLarge { .. } => "too-large",
            SlotError::BadFilename(_) => "bad-filename",
            SlotError::BadContentType => "bad-content-type",
            SlotError::NotAllowed => "not-allowed",
            SlotError::OverQuota { limit, .. } => match limit {
                Limit::Rate => "rate-limited",
                Limit::UserQuota => "quota",
                Limit::Disk => "disk-full",
            },
            SlotError::Paused => "paused",
            SlotError::Storage(_) => "storage",
        }
    }
}

/// Characters left as they are in a URL path segment (RFC 3986 unreserved).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a file name for use as the last segment of a URL.
pub fn encode_filename(name: &str) -> String {
    utf8_percent_encode(name, PATH_SEGMENT).to_string()
}

/// Grants slots. Cheap to clone; its methods block on the store.
#[derive(Clone)]
pub struct SlotService {
    store: Store,
    /// The limits, quotas and domains in force, which SIGHUP may change:
    /// read once per request.
    settings: LiveConfig,
    public_url: String,
    limiter: Arc<RateLimiter>,
    tickets: Arc<TicketKeys>,
    redeemer: Redeemer,
    /// Set by an admin (`admin/pause`): no slot is granted until cleared.
    paused: Arc<AtomicBool>,
}

impl SlotService {
    /// Grants slots under `settings`: a [`LiveConfig`] the service reloads,
    /// or a plain `&Config` that stays as it is.
    pub fn new(settings: impl Into<LiveConfig>, store: Store) -> SlotService {
        let settings = settings.into();
        let config = settings.get();
        let tickets = {
            let (current, previous) = store.master_keys();
            Arc::new(TicketKeys::derive(current, previous))
        };
        SlotService {
            public_url: config.http.public_url.clone(),
            limiter: Arc::new(RateLimiter::new(
                config.limits.slot_requests_per_minute,
                Duration::from_secs(60),
            )),
            redeemer: Redeemer::new(settings.clone(), store.clone(), tickets.clone()),
            settings,
            tickets,
            store,
            paused: Arc::default(),
        }
    }

    /// Stops granting slots (clones share the flag); downloads and PUTs of
    /// slots already granted go on. True if it was not paused already.
    pub fn pause(&self) -> bool {
        !self.paused.swap(true, Ordering::Relaxed)
    }

    /// Grants slots again. True if it was paused.
    pub fn resume(&self) -> bool {
        self.paused.swap(false, Ordering::Relaxed)
    }

    /// Whether slot requests are refused for maintenance.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// The per-user quotas slots are granted within.
    pub fn quota_limits(&self) -> QuotaLimits {
        QuotaLimits::from_config(&self.settings.get())
    }

    /// What redeems the tickets this service seals, for the PUT side.
    pub fn redeemer(&self) -> Redeemer {
        self.redeemer.clone()
    }

    /// The largest upload now, as disco#info advertises it.
    pub fn max_file_size(&self) -> u64 {
        self.settings.get().limits.max_file_size
    }

    /// Checks `request` from `requester` and, if it may go ahead, seals the
    /// slot into its PUT URL.
    pub fn grant(
        &self,
        requester: &BareJid,
        request: SlotRequest,
        now: u64,
    ) -> Result<Slot, SlotError> {
        let settings = self.settings.get();
        let limits = &settings.limits;
        self.check_requester(limits, requester, now)?;
        if self.is_paused() {
            return Err(SlotError::Paused);
        }
        check_request(limits, &request)?;
        let uploader = requester.to_string();
        self.check_quota(
            QuotaLimits::from_config(&settings),
            &uploader,
            request.size,
            now,
        )?;
        self.check_disk(limits, request.size, now)?;
        Ok(self.seal(SlotTerms {
            id: FileId::random(),
            uploader,
            filename: request.filename,
            size: request.size,
            content_type: request.content_type,
            purpose: request.purpose,
            created: now,
            expires: now + limits.slot_lifetime.as_secs(),
        }))
    }

    /// Only users of the served domains get slots, and only so many a minute.
    fn check_requester(
        &self,
        limits: &Limits,
        requester: &BareJid,
        now: u64,
    ) -> Result<(), SlotError> {
        let domain = requester.domain().as_str();
        if requester.node().is_none()
            || !crate::domains::is_allowed(&limits.allowed_domains, domain)
        {
            return Err(SlotError::NotAllowed);
        }
        let per_minute = limits.slot_requests_per_minute;
        if !self
            .limiter
            .allow_up_to(per_minute, requester.as_str(), Instant::now())
        {
            return Err(SlotError::OverQuota {
                limit: Limit::Rate,
                reason: "Too many slot requests; slow down",
                retry_at: now + 60,
            });
        }
        Ok(())
    }

    /// `size` more bytes must fit in the uploader's quotas.
    fn check_quota(
        &self,
        quota: QuotaLimits,
        uploader: &str,
        size: u64,
        now: u64,
    ) -> Result<(), SlotError> {
        let usage = self.store.usage(uploader, now)?;
        let over_storage = usage.stored_bytes.saturating_add(size) > quota.user_storage_bytes;
        // Only a refusal for stored bytes needs the files, for its retry time.
        let user_files = if over_storage {
            self.store.user_files_by_expiry(uploader)?
        } else {
            Vec::new()
        };
        check_user_quota(quota, usage, &user_files, size, now).map_err(|over| {
            SlotError::OverQuota {
                limit: Limit::UserQuota,
                reason: over.reason,
                retry_at: over.retry_at,
            }
        })
    }

    /// The slot's URLs, its terms sealed into the PUT URL.
    fn seal(&self, slot: SlotTerms) -> Slot {
        let ticket = self.tickets.seal(&slot);
        let name = encode_filename(&slot.filename);
        Slot {
            id: slot.id,
            put_url: format!("{}/upload/{}/{}/{}", self.public_url, slot.id, ticket, name),
            get_url: format!("{}/file/{}/{}", self.public_url, slot.id, name),
        }
    }

    /// Refuses a slot that would leave less than the configured share of the disk free.
    fn check_disk(&self, limits: &Limits, size: u64, now: u64) -> Result<(), SlotError> {
        let DiskSpace { total, available } = self.store.disk_space()?;
        let reserve = total / 100 * u64::from(limits.min_free_disk_percent);
        if available >= size.saturating_add(reserve) {
            return Ok(());
        }
        let needed = size.saturating_add(reserve) - available;
        let soonest = self.store.files_by_expiry(10_000)?;
        Err(SlotError::OverQuota {
            limit: Limit::Disk,
            reason: "The service is out of storage space",
            retry_at: time_when_freed(&soonest, needed, now),
        })
    }
}

/// The file's name, type and size must be fit to serve.
fn check_request(limits: &Limits, request: &SlotRequest) -> Result<(), SlotError> {
    check_filename(&request.filename)?;
    if let Some(content_type) = &request.content_type {
        if http::HeaderValue::from_str(content_type).is_err() || content_type.len() > 255 {
            return Err(SlotError::BadContentType);
        }
    }
    if request.size > limits.max_file_size {
        return Err(SlotError::TooLarge {
            max: limits.max_file_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::test_support::TestSlots;
    use super::*;
    use crate::storage::test_support::service_store_in;

    const NOW: u64 = 1_800_000_000;

    fn request(filename: &str, size: u64, content_type: Option<&str>) -> SlotRequest {
        SlotRequest {
            filename: filename.into(),
            size,
            content_type: content_type.map(str::to_owned),
            purpose: Purpose::Ephemeral,
        }
    }

    fn jid(text: &str) -> BareJid {
        text.parse().unwrap()
    }

    #[test]
    fn a_paused_service_grants_nothing_until_resumed() {
        let slots = TestSlots::new();
        let alice = jid("alice@example.org");
        assert!(slots.service.clone().pause());
        assert!(!slots.service.pause(), "already paused");
        let refused = slots
            .service
            .grant(&alice, request("a.txt", 1, None), NOW)
            .unwrap_err();
        assert!(matches!(refused, SlotError::Paused), "{refused:?}");
        assert!(refused.to_string().contains("paused for maintenance"));
        assert!(slots.service.resume());
        slots
            .service
            .grant(&alice, request("a.txt", 1, None), NOW)
            .unwrap();
    }

    #[test]
    fn a_grant_seals_the_terms_into_the_put_url() {
        let slots = TestSlots::new();
        let slot = slots
            .service
            .grant(
                &jid("alice@example.org"),
                request("my juliet.jpg", 23, Some("image/jpeg")),
                NOW,
            )
            .unwrap();
        let id = slot.id.to_string();
        assert_eq!(
            slot.get_url,
            format!("https://upload.example.org/file/{id}/my%20juliet.jpg")
        );
        let ticket = slot
            .put_url
            .strip_prefix(&format!("https://upload.example.org/upload/{id}/"))
            .and_then(|rest| rest.strip_suffix("/my%20juliet.jpg"))
            .unwrap();
        let terms = slots.service.tickets.open(&slot.id, ticket).unwrap();
        assert_eq!(
            terms,
            SlotTerms {
                id: slot.id,
                uploader: "alice@example.org".into(),
                filename: "my juliet.jpg".into(),
                size: 23,
                content_type: Some("image/jpeg".into()),
                purpose: Purpose::Ephemeral,
                created: NOW,
                expires: NOW + slots.config.limits.slot_lifetime.as_secs(),
            }
        );
    }

    #[test]
    fn only_users_of_the_served_domains_get_slots() {
        let slots = TestSlots::new();
        for stranger in ["mallory@evil.example", "example.org", "upload.example.org"] {
            assert!(
                matches!(
                    slots
                        .service
                        .grant(&jid(stranger), request("a", 1, None), NOW),
                    Err(SlotError::NotAllowed)
                ),
                "{stranger}"
            );
        }
    }

    #[test]
    fn what_cannot_be_served_gets_no_slot() {
        let slots = TestSlots::new();
        let grant = |request| slots.service.grant(&jid("alice@example.org"), request, NOW);
        assert!(matches!(
            grant(request("a", 1001, None)),
            Err(SlotError::TooLarge { max: 1000 })
        ));
        assert!(grant(request("a", 1000, None)).is_ok());
        assert!(matches!(
            grant(request("../a", 1, None)),
            Err(SlotError::BadFilename(_))
        ));
        let long_type = format!("text/{}", "x".repeat(251));
        for content_type in ["text/plain\r\nX: y", &long_type] {
            assert!(
                matches!(
                    grant(request("a", 1, Some(content_type))),
                    Err(SlotError::BadContentType)
                ),
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn each_request_is_judged_by_the_settings_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::for_tests(dir.path());
        let settings = LiveConfig::new(config.clone());
        let service = SlotService::new(&settings, service_store_in(dir.path()));
        let alice = jid("alice@example.org");
        let carol = jid("carol@example.net");
        assert!(service.grant(&alice, request("a", 600, None), NOW).is_ok());
        assert!(matches!(
            service.grant(&carol, request("a", 1, None), NOW),
            Err(SlotError::NotAllowed)
        ));

        // A reload lowers the largest file, shortens the slots and adds a
        // domain.
        config.limits.max_file_size = 500;
        config.limits.slot_lifetime = Duration::from_secs(60);
        config.limits.allowed_domains.push("example.net".into());
        settings.set_for_tests(config.clone());
        assert_eq!(service.max_file_size(), 500);
        assert!(matches!(
            service.grant(&carol, request("a", 600, None), NOW),
            Err(SlotError::TooLarge { max: 500 })
        ));
        let slot = service.grant(&carol, request("a", 500, None), NOW).unwrap();
        let ticket = slot.put_url.split('/').nth_back(1).unwrap();
        assert_eq!(
            service.tickets.open(&slot.id, ticket).unwrap().expires,
            NOW + 60
        );
        // Another allows one request a minute: Alice has asked once already.
        config.limits.slot_requests_per_minute = 1;
        settings.set_for_tests(config);
        assert!(matches!(
            service.grant(&alice, request("a", 1, None), NOW),
            Err(SlotError::OverQuota {
                limit: Limit::Rate,
                ..
            })
        ));
    }

    #[test]
    fn each_refusal_has_a_kind_of_its_own() {
        let over = |limit| SlotError::OverQuota {
            limit,
            reason: "",
            retry_at: 0,
        };
        let refusals = [
            SlotError::TooLarge { max: 1 },
            SlotError::BadFilename(FilenameError::Empty),
            SlotError::BadContentType,
            SlotError::NotAllowed,
            over(Limit::Rate),
            over(Limit::UserQuota),
            over(Limit::Disk),
            SlotError::Paused,
            SlotError::Storage(StorageError::DiskFull),
        ];
        let kinds: std::collections::BTreeSet<_> = refusals.iter().map(SlotError::kind).collect();
        assert_eq!(kinds.len(), refusals.len(), "{kinds:?}");
        for kind in kinds {
            assert!(crate::metrics::SLOT_REFUSALS.contains(&kind), "{kind}");
        }
    }

    #[test]
    fn too_many_requests_are_told_to_retry_in_a_minute() {
        let slots = TestSlots::new();
        let alice = jid("alice@example.org");
        let allowance = slots.config.limits.slot_requests_per_minute;
        for _ in 0..allowance {
            slots
                .service
                .grant(&alice, request("a", 1, None), NOW)
                .unwrap();
        }
        match slots.service.grant(&alice, request("a", 1, None), NOW) {
            Err(
                error @ SlotError::OverQuota {
                    limit: Limit::Rate,
                    retry_at,
                    ..
                },
            ) => {
                assert_eq!(retry_at, NOW + 60);
                assert_eq!(error.kind(), "rate-limited");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            slots
                .service
                .grant(&jid("bob@example.org"), request("a", 1, None), NOW)
                .is_ok(),
            "the allowance is per user"
        );
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A slot service on a throwaway store, for the tests of the slots and of
    //! the code that asks for them.

    use super::*;
    use crate::config::Config;
    use crate::storage::test_support::service_store_in;

    pub(crate) struct TestSlots {
        pub(crate) config: Config,
        pub(crate) service: SlotService,
        _dir: tempfile::TempDir,
    }

    impl TestSlots {
        /// Slots of `upload.example.org` for the users of `example.org`,
        /// files up to 1000 bytes (see [`Config::for_tests`]).
        pub(crate) fn new() -> TestSlots {
            let dir = tempfile::tempdir().unwrap();
            let config = Config::for_tests(dir.path());
            let store = service_store_in(dir.path());
            TestSlots {
                service: SlotService::new(&config, store),
                config,
                _dir: dir,
            }
        }
    }
}
