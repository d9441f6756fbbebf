//! How one attempt to reach one recipient goes out: the route decision, a
//! pure function of what Satchel knows of the server and of the recipient.
//!
//! Bounces alone cannot prove delivery: a server may swallow a message for
//! an offline user (Prosody 0.12 with `mod_privilege` and no offline storage
//! drops a privileged one silently; ejabberd 23.01 bounces it to the sender
//! whose name it carries, not to Satchel). A message from Satchel's own JID
//! bounces back to Satchel instead. Hence the table (one test per row):
//!
//! | Offline storage | Recipient | Route |
//! |---|---|---|
//! | yes | anyone | as the sender if permitted, else from Satchel |
//! | no, presence visible | known offline | hold until they come online |
//! | no, sending as the sender permitted | answered a probe just now | as the sender |
//! | no, sending as the sender permitted | a resource seen online | probe that resource |
//! | no, sending as the sender permitted | no resource known | from Satchel: it can bounce |
//! | no, not permitted | not held | from Satchel |

use crate::xmpp::privilege::PrivilegeVersion;

/// What Satchel knows of its server on the current link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// XEP-0356 outgoing message permission, in the server's version of the
    /// protocol: messages may go out as the sender.
    pub send_as: Option<PrivilegeVersion>,
    /// XEP-0356 presence permission: Satchel sees who is online.
    pub sees_presence: bool,
    /// The server keeps messages for offline users (`msgoffline`).
    pub stores_offline: bool,
}

/// What Satchel knows of one recipient (see
/// [`super::whereabouts::Whereabouts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecipientKnowledge<'a> {
    /// Seen leaving, or a message to them bounced, while presence is visible.
    pub known_offline: bool,
    /// One of their resources answered a probe, and no message used that yet.
    pub answered_probe: bool,
    /// A resource seen online that no probe found gone yet.
    pub resource_to_probe: Option<&'a str>,
}

/// How an attempt goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// Nothing now: the recipient's coming online releases the job.
    Hold,
    /// A disco#info query from Satchel to this resource of the recipient,
    /// before anything is sent as the sender.
    Probe { resource: &'a str },
    /// The message, as the sender (XEP-0356), in the server's version.
    AsSender(PrivilegeVersion),
    /// The message from Satchel's own JID, naming the sender.
    FromSatchel(Fallback),
}

/// Why a message goes from Satchel's own JID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The server does not let Satchel send as its users.
    NotPermitted,
    /// Permitted, but the server keeps no offline messages and no resource
    /// of the recipient is known to be there: a message as the sender
    /// could vanish, one from Satchel bounces if they are away.
    NobodyKnownOnline,
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fallback::NotPermitted => "the server grants no permission to send as the sender",
            Fallback::NobodyKnownOnline => {
                "no resource of the recipient is known to be online and the server keeps no \
                 offline messages: a message from Satchel can bounce, one as the sender could vanish"
            }
        })
    }
}

/// The route of the next attempt to a recipient.
pub fn route<'a>(server: Capabilities, recipient: RecipientKnowledge<'a>) -> Route<'a> {
    if server.stores_offline {
        return match server.send_as {
            Some(version) => Route::AsSender(version),
            None => Route::FromSatchel(Fallback::NotPermitted),
        };
    }
    if server.sees_presence && recipient.known_offline {
        return Route::Hold;
    }
    let Some(version) = server.send_as else {
        return Route::FromSatchel(Fallback::NotPermitted);
    };
    if recipient.answered_probe {
        return Route::AsSender(version);
    }
    match recipient.resource_to_probe {
        Some(resource) => Route::Probe { resource },
        None => Route::FromSatchel(Fallback::NobodyKnownOnline),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: PrivilegeVersion = PrivilegeVersion::V2;

    fn server(send_as: bool, sees_presence: bool, stores_offline: bool) -> Capabilities {
        Capabilities {
            send_as: send_as.then_some(V2),
            sees_presence,
            stores_offline,
        }
    }

    fn unknown() -> RecipientKnowledge<'static> {
        RecipientKnowledge::default()
    }

    fn offline() -> RecipientKnowledge<'static> {
        RecipientKnowledge {
            known_offline: true,
            ..unknown()
        }
    }

    fn seen_on(resource: &str) -> RecipientKnowledge<'_> {
        RecipientKnowledge {
            resource_to_probe: Some(resource),
            ..unknown()
        }
    }

    fn answered() -> RecipientKnowledge<'static> {
        RecipientKnowledge {
            answered_probe: true,
            resource_to_probe: Some("phone"),
            ..unknown()
        }
    }

    #[test]
    fn with_offline_storage_as_the_sender_whoever_the_recipient() {
        for recipient in [unknown(), offline(), seen_on("phone"), answered()] {
            assert_eq!(
                route(server(true, true, true), recipient),
                Route::AsSender(V2)
            );
        }
    }

    #[test]
    fn with_offline_storage_and_no_permission_from_satchel() {
        for recipient in [unknown(), offline(), seen_on("phone")] {
            assert_eq!(
                route(server(false, true, true), recipient),
                Route::FromSatchel(Fallback::NotPermitted)
            );
        }
    }

    #[test]
    fn without_offline_storage_a_recipient_known_offline_is_held() {
        for send_as in [true, false] {
            assert_eq!(route(server(send_as, true, false), offline()), Route::Hold);
        }
    }

    #[test]
    fn without_offline_storage_a_recipient_who_answered_a_probe_gets_it_as_the_sender() {
        assert_eq!(
            route(server(true, true, false), answered()),
            Route::AsSender(V2)
        );
    }

    #[test]
    fn without_offline_storage_a_resource_seen_online_is_probed_first() {
        assert_eq!(
            route(server(true, true, false), seen_on("phone")),
            Route::Probe { resource: "phone" }
        );
    }

    #[test]
    fn without_offline_storage_and_nobody_known_online_from_satchel() {
        assert_eq!(
            route(server(true, true, false), unknown()),
            Route::FromSatchel(Fallback::NobodyKnownOnline)
        );
        // Without presence, "known offline" cannot be known: not held.
        assert_eq!(
            route(server(true, false, false), offline()),
            Route::FromSatchel(Fallback::NobodyKnownOnline)
        );
    }

    #[test]
    fn without_offline_storage_and_no_permission_from_satchel() {
        for recipient in [unknown(), seen_on("phone"), answered()] {
            assert_eq!(
                route(server(false, true, false), recipient),
                Route::FromSatchel(Fallback::NotPermitted)
            );
        }
        assert_eq!(
            route(server(false, false, false), offline()),
            Route::FromSatchel(Fallback::NotPermitted)
        );
    }
}
