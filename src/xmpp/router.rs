//! Routes each stanza from the server to the code that answers it.
//!
//! The rule that matters most: an IQ request always gets an answer. A request
//! we do not understand is `service-unavailable`, a malformed one is
//! `bad-request`, a failure on our side is `internal-server-error`; silence
//! would leave a client waiting for a timeout. Errors and results addressed to
//! us are never answered, so two entities can never loop on errors.

use jid::{BareJid, Jid};
use minidom::Element;
use tracing::{debug, info, warn, Instrument};
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{disco, upload};
use crate::slots::{unix_now, SlotError, SlotService};

/// Answers stanzas addressed to the component.
pub struct Router {
    jid: BareJid,
    slots: SlotService,
    disco_info: DiscoInfoResult,
}

/// What an IQ request turned into.
type IqOutcome = Result<Option<Element>, (StanzaError, Option<Element>)>;

impl Router {
    pub fn new(jid: BareJid, slots: SlotService) -> Router {
        let disco_info = disco::info(slots.max_file_size());
        Router {
            jid,
            slots,
            disco_info,
        }
    }

    /// The reply to `stanza`, if it calls for one.
    pub async fn handle(&self, stanza: Element) -> Option<Element> {
        match stanza.name() {
            "iq" => self.handle_iq(stanza).await,
            "message" | "presence" => {
                debug!(kind = stanza.name(), "ignoring stanza");
                None
            }
            other => {
                debug!(name = other, "ignoring unknown top-level element");
                None
            }
        }
    }

    async fn handle_iq(&self, iq: Element) -> Option<Element> {
        let id = iq.attr("id").unwrap_or_default().to_owned();
        let kind = iq.attr("type").unwrap_or_default().to_owned();
        if matches!(kind.as_str(), "result" | "error") {
            return None;
        }
        let Some(from) = iq.attr("from").and_then(|from| from.parse::<Jid>().ok()) else {
            warn!(%id, "IQ without a usable 'from': cannot answer it");
            return None;
        };
        let span = tracing::info_span!("iq", %id, from = %from);
        let outcome = self
            .answer_iq(&kind, &iq, &from)
            .instrument(span.clone())
            .await;
        let reply = match outcome {
            Ok(payload) => Iq::Result {
                from: Some(self.jid.clone().into()),
                to: Some(from),
                id,
                payload,
            },
            Err((error, payload)) => {
                span.in_scope(
                    || debug!(condition = ?error.defined_condition, "answering with an error"),
                );
                Iq::Error {
                    from: Some(self.jid.clone().into()),
                    to: Some(from),
                    id,
                    error,
                    payload,
                }
            }
        };
        Some(reply.into())
    }

    async fn answer_iq(&self, kind: &str, iq: &Element, from: &Jid) -> IqOutcome {
        if kind != "get" && kind != "set" {
            return Err((
                modify_bad_request("The IQ type must be get, set, result or error"),
                None,
            ));
        }
        if iq.attr("id").is_none_or(str::is_empty) {
            return Err((modify_bad_request("The IQ has no id"), None));
        }
        let mut children = iq.children();
        let payload = match (children.next(), children.next()) {
            (Some(only), None) => only,
            _ => {
                return Err((
                    modify_bad_request("An IQ request carries exactly one child element"),
                    None,
                ))
            }
        };
        let namespace = payload.ns();
        match (kind, payload.name(), namespace.as_str()) {
            ("get", "query", ns::DISCO_INFO) => {
                if payload.attr("node").is_some() {
                    return Err((cancel(DefinedCondition::ItemNotFound, "No such node"), None));
                }
                Ok(Some(self.disco_info.clone().into()))
            }
            ("get", "query", ns::DISCO_ITEMS) => {
                if payload.attr("node").is_some() {
                    return Err((cancel(DefinedCondition::ItemNotFound, "No such node"), None));
                }
                Ok(Some(disco::items().into()))
            }
            ("get", "ping", ns::PING) => Ok(None),
            ("get", "request", ns::HTTP_UPLOAD) => self.answer_slot_request(payload, from).await,
            _ => Err((
                cancel(
                    DefinedCondition::ServiceUnavailable,
                    "This service does not answer that request",
                ),
                None,
            )),
        }
    }

    async fn answer_slot_request(&self, payload: &Element, from: &Jid) -> IqOutcome {
        let echo = Some(payload.clone());
        let request = upload::parse_request(payload).map_err(|error| {
            info!(%error, "malformed slot request");
            (upload::request_error(&error), echo.clone())
        })?;
        let requester = from.to_bare();
        let size = request.size;
        let slots = self.slots.clone();
        let granted =
            tokio::task::spawn_blocking(move || slots.grant(&requester, request, unix_now()))
                .await
                .map_err(|join_error| {
                    warn!(%join_error, "slot task failed");
                    (
                        StanzaError::new(
                            ErrorType::Wait,
                            DefinedCondition::InternalServerError,
                            "en",
                            "Internal error",
                        ),
                        echo.clone(),
                    )
                })?;
        match granted {
            Ok(slot) => {
                info!(file = %slot.id, size, "slot granted");
                Ok(Some(upload::slot_result(&slot).into()))
            }
            Err(error) => {
                match &error {
                    SlotError::Storage(cause) => warn!(%cause, "slot refused: storage failure"),
                    refusal => info!(reason = %refusal, "slot refused"),
                }
                Err((upload::slot_error(&error), echo))
            }
        }
    }
}

fn modify_bad_request(text: &str) -> StanzaError {
    StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest, "en", text)
}

fn cancel(condition: DefinedCondition, text: &str) -> StanzaError {
    StanzaError::new(ErrorType::Cancel, condition, "en", text)
}
