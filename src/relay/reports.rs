//! What the sender of a relay hears back: the XEP-0184 receipt once the
//! relay is stored, a message error when the request is refused, and one
//! when delivery to a recipient failed for good.
//!
//! Errors reuse the id of the sender's request, so that the client can tie
//! them to the message it sent; the receipt names it in `<received/>`.

use jid::{BareJid, Jid};
use minidom::Element;
use xmpp_parsers::message::{Id, Message, MessageType};
use xmpp_parsers::receipts::Received;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::record::RelayRecord;
use super::request::Refusal;

/// The XEP-0184 receipt for an accepted relay.
pub fn receipt(component: &BareJid, to: &str, request_id: &str) -> Element {
    let mut message = Message::new(to.parse::<Jid>().ok()).with_payload(Received {
        id: request_id.to_owned(),
    });
    message.from = Some(component.clone().into());
    message.id = Some(Id(format!(
        "receipt-{}",
        hex::encode(rand::random::<[u8; 8]>())
    )));
    message.into()
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

/// Tells the sender of `relay` that delivery to recipient `index` failed
/// for good, with the condition the recipient's server gave.
pub fn failure(component: &BareJid, relay: &RelayRecord, index: usize, condition: &str) -> Element {
    let text = format!(
        "Delivery of {} to {} failed: {condition}",
        relay.url, relay.recipients[index].jid
    );
    error_message(
        component,
        &relay.sender_full,
        &relay.request_id,
        ErrorType::Cancel,
        defined_condition(condition),
        &text,
    )
}

fn error_message(
    component: &BareJid,
    to: &str,
    request_id: &str,
    kind: ErrorType,
    condition: DefinedCondition,
    text: &str,
) -> Element {
    let mut message = Message::new_with_type(MessageType::Error, to.parse::<Jid>().ok())
        .with_payload(StanzaError::new(kind, condition, "en", text));
    message.from = Some(component.clone().into());
    message.id = Some(Id(request_id.to_owned()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::record::samples::relay_to;

    fn component() -> BareJid {
        "upload.example.org".parse().unwrap()
    }

    /// XEP-0184 §5.1, "A message with a receipt": the `<received/>` of the
    /// example, for the request Satchel stored.
    #[test]
    fn the_receipt_is_the_xep_0184_example() {
        let receipt = receipt(
            &component(),
            "northumberland@shakespeare.lit/westminster",
            "richard2-4.1.247",
        );
        let expected: Element = "<received xmlns='urn:xmpp:receipts' id='richard2-4.1.247'/>"
            .parse()
            .unwrap();
        assert_eq!(receipt.children().collect::<Vec<_>>(), [&expected]);
        assert_eq!(receipt.attr("from"), Some("upload.example.org"));
        assert_eq!(
            receipt.attr("to"),
            Some("northumberland@shakespeare.lit/westminster")
        );
        assert!(receipt
            .attr("id")
            .is_some_and(|id| id.starts_with("receipt-")));
        assert_ne!(receipt.attr("type"), Some("error"));
    }

    #[test]
    fn a_refusal_is_an_error_with_the_request_id() {
        let answer = refusal(
            &component(),
            "alice@example.org/phone",
            "m1",
            &Refusal::TooManyRecipients(50),
        );
        let message = Message::try_from(answer).unwrap();
        assert_eq!(message.type_, MessageType::Error);
        assert_eq!(message.id, Some(Id("m1".into())));
        let error = StanzaError::try_from(message.payloads[0].clone()).unwrap();
        assert_eq!(error.type_, ErrorType::Modify);
        assert_eq!(error.defined_condition, DefinedCondition::NotAcceptable);
    }

    #[test]
    fn a_failure_names_the_recipient_and_the_condition() {
        let relay = relay_to(&["bob@example.org"]);
        let report = failure(&component(), &relay, 0, "item-not-found");
        let message = Message::try_from(report).unwrap();
        assert_eq!(message.to, Some("alice@example.org/phone".parse().unwrap()));
        let error = StanzaError::try_from(message.payloads[0].clone()).unwrap();
        assert_eq!(error.type_, ErrorType::Cancel);
        assert_eq!(error.defined_condition, DefinedCondition::ItemNotFound);
        let text = &error.texts["en"];
        assert!(
            text.contains("bob@example.org") && text.contains(&relay.url),
            "{text}"
        );
    }
}
