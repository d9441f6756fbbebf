//! The message each recipient gets, and the reports the sender gets.
//!
//! The body is exactly the URL: Conversations and Dino show an image inline
//! only then. The caption rides in the OOB description; the XEP-0447 share
//! carries the XEP-0446 metadata (type, name, size, dimensions, SHA-256) and
//! an XEP-0264 thumbnail whose bytes travel in the same message as XEP-0231
//! data, so the preview needs no round trip, also for a recipient who was
//! offline. The parts common to all recipients are built once, when the
//! relay is accepted, and stored with it.

use jid::{BareJid, Jid};
use minidom::Element;
use xmpp_parsers::disco::DiscoInfoQuery;
use xmpp_parsers::hashes::{Algo, Hash};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jingle_thumbnails::Thumbnail as ThumbnailRef;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;
use xmpp_parsers::oob::Oob;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::delivery::{Capabilities, Composer};
use super::outbox::RelayRecord;
use super::request::{Refusal, RelayRequest};
use super::thumbnail::Thumbnail;
use crate::media::is_inline_safe;
use crate::storage::downloads::personal_url;
use crate::xmpp::addresses::Addresses;
use crate::xmpp::bob::Data as BobData;
use crate::xmpp::file_metadata::File;
use crate::xmpp::hints::Hint;
use crate::xmpp::privilege::send_as;
use crate::xmpp::sfs::{Disposition, FileSharing, Sources, UrlData};

/// How long a recipient's client may cache the thumbnail (XEP-0231 max-age).
const THUMBNAIL_MAX_AGE_SECS: u32 = 86_400;

/// What Satchel knows of the file being relayed.
#[derive(Debug, Clone, Default)]
pub struct FileFacts {
    pub media_type: Option<String>,
    pub name: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<[u8; 32]>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub thumbnail: Option<Thumbnail>,
}

/// The children every recipient's message carries.
pub fn common_payload(request: &RelayRequest, facts: &FileFacts) -> Vec<Element> {
    let mut payload = vec![
        Element::builder("body", ns::DEFAULT_NS)
            .append(request.url.as_str())
            .build(),
        Oob {
            url: request.url.clone(),
            desc: request.caption.clone(),
        }
        .into(),
    ];

    let thumbnail = match (&facts.thumbnail, &request.sender_thumbnail) {
        (Some(made), _) => BobData::new(
            made.media_type.to_owned(),
            Some(THUMBNAIL_MAX_AGE_SECS),
            made.bytes.clone(),
        )
        .ok()
        .map(|data| {
            (
                data,
                u16::try_from(made.width).ok(),
                u16::try_from(made.height).ok(),
            )
        }),
        (None, Some(sent)) => Some((sent.data.clone(), sent.width, sent.height)),
        (None, None) => None,
    };
    let mut file = File {
        media_type: facts.media_type.clone(),
        name: facts.name.clone(),
        size: facts.size,
        width: facts.width,
        height: facts.height,
        hashes: facts
            .sha256
            .map(|digest| Hash::new(Algo::Sha_256, digest.to_vec()))
            .into_iter()
            .collect(),
        ..File::default()
    };
    if let Some((data, width, height)) = &thumbnail {
        file.thumbnails.push(ThumbnailRef {
            uri: format!("cid:{}", data.cid),
            media_type: Some(data.media_type.clone()),
            width: width.and_then(std::num::NonZeroU16::new),
            height: height.and_then(std::num::NonZeroU16::new),
        });
    }
    let disposition = match &facts.media_type {
        Some(media_type) if is_inline_safe(media_type) => Disposition::Inline,
        _ => Disposition::Attachment,
    };
    payload.push(
        FileSharing {
            disposition: Some(disposition),
            id: None,
            file,
            sources: Sources {
                url_data: vec![UrlData {
                    target: request.url.clone(),
                }],
            },
        }
        .into(),
    );
    if let Some((data, _, _)) = thumbnail {
        payload.push(data.into());
    }
    payload.push(Hint::Store.into());
    payload
}

/// The payload as stored in the outbox.
pub fn payload_to_text(payload: &[Element]) -> String {
    let mut bytes = Vec::new();
    for element in payload {
        // Writing to a Vec cannot fail.
        let _ = element.write_to(&mut bytes);
    }
    String::from_utf8(bytes).unwrap_or_default()
}

/// The stored payload as elements again.
pub fn payload_from_text(text: &str) -> Vec<Element> {
    format!("<payload xmlns='{}'>{text}</payload>", ns::DEFAULT_NS)
        .parse::<Element>()
        .map(|wrapper| wrapper.children().cloned().collect())
        .unwrap_or_default()
}

/// Builds recipients' messages and sender reports for the delivery task.
pub struct RelayComposer {
    pub component: BareJid,
    pub server: BareJid,
}

impl Composer for RelayComposer {
    fn message(
        &self,
        relay: &RelayRecord,
        index: usize,
        message_id: &str,
        capabilities: Capabilities,
    ) -> Element {
        let recipient: Option<Jid> = relay.recipients[index].jid.parse().ok();
        let sender: Option<BareJid> = relay.sender.parse().ok();
        let mut message = Message::new_with_type(MessageType::Chat, recipient);
        message.id = Some(xmpp_parsers::message::Id(message_id.to_owned()));
        message.payloads = match &relay.recipients[index].download_token {
            // The URL appears in the body, the OOB and the share; all become
            // this recipient's own. No character of a URL is escaped in XML
            // text but '&', which ours never contain.
            Some(token) => payload_from_text(
                &relay
                    .payload
                    .replace(&relay.url, &personal_url(&relay.url, token)),
            ),
            None => payload_from_text(&relay.payload),
        };
        match (capabilities.send_as, sender) {
            (Some(version), Some(sender)) => send_as(
                version,
                self.component.clone().into(),
                self.server.clone().into(),
                sender,
                message,
            )
            .into(),
            (_, sender) => {
                message.from = Some(self.component.clone().into());
                if let Some(sender) = sender {
                    let nick = sender
                        .node()
                        .map(|node| node.as_str().to_owned())
                        .unwrap_or_else(|| sender.to_string());
                    message
                        .payloads
                        .push(Addresses::original_sender(sender.into()).into());
                    message
                        .payloads
                        .push(Element::builder("nick", ns::NICK).append(nick).build());
                }
                message.into()
            }
        }
    }

    fn probe(&self, recipient: &str, query_id: &str) -> Element {
        let mut iq = Iq::from_get(query_id, DiscoInfoQuery { node: None })
            .with_from(self.component.clone().into());
        if let Ok(recipient) = recipient.parse::<Jid>() {
            iq = iq.with_to(recipient);
        }
        iq.into()
    }

    fn failure_report(&self, relay: &RelayRecord, index: usize, condition: &str) -> Element {
        let text = format!(
            "Delivery of {} to {} failed: {condition}",
            relay.url, relay.recipients[index].jid
        );
        error_message(
            &self.component,
            &relay.sender_full,
            &relay.request_id,
            ErrorType::Cancel,
            defined_condition(condition),
            &text,
        )
    }
}

/// The error message answering a refused relay request.
pub fn refusal(component: &BareJid, to: &str, request_id: &str, refusal: &Refusal) -> Element {
    let (condition, kind) = refusal.condition();
    let kind = match kind {
        "modify" => ErrorType::Modify,
        "auth" => ErrorType::Auth,
        "wait" => ErrorType::Wait,
        _ => ErrorType::Cancel,
    };
    error_message(
        component,
        to,
        request_id,
        kind,
        defined_condition(condition),
        &refusal.to_string(),
    )
}

/// The XEP-0184 receipt for an accepted relay.
pub fn receipt(component: &BareJid, to: &str, request_id: &str) -> Element {
    let mut message = Message::new(to.parse::<Jid>().ok());
    message.from = Some(component.clone().into());
    message.id = Some(xmpp_parsers::message::Id(format!(
        "receipt-{}",
        hex::encode(rand::random::<[u8; 8]>())
    )));
    message.payloads.push(
        Element::builder("received", ns::RECEIPTS)
            .attr(minidom::rxml::xml_ncname!("id").to_owned(), request_id)
            .build(),
    );
    message.into()
}

fn error_message(
    component: &BareJid,
    to: &str,
    request_id: &str,
    kind: ErrorType,
    condition: DefinedCondition,
    text: &str,
) -> Element {
    let mut message = Message::new_with_type(MessageType::Error, to.parse::<Jid>().ok());
    message.from = Some(component.clone().into());
    message.id = Some(xmpp_parsers::message::Id(request_id.to_owned()));
    message
        .payloads
        .push(StanzaError::new(kind, condition, "en", text).into());
    message.into()
}

fn defined_condition(condition: &str) -> DefinedCondition {
    match condition {
        "bad-request" => DefinedCondition::BadRequest,
        "item-not-found" => DefinedCondition::ItemNotFound,
        "forbidden" => DefinedCondition::Forbidden,
        "not-acceptable" => DefinedCondition::NotAcceptable,
        "not-allowed" => DefinedCondition::NotAllowed,
        "policy-violation" => DefinedCondition::PolicyViolation,
        "jid-malformed" => DefinedCondition::JidMalformed,
        "internal-server-error" => DefinedCondition::InternalServerError,
        _ => DefinedCondition::UndefinedCondition,
    }
}
