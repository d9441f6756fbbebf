//! Routes each stanza from the server to the code that answers it.
//!
//! The rule that matters most: an IQ request always gets an answer. A request
//! we do not understand is `service-unavailable`, a malformed one is
//! `bad-request`, a failure on our side is `internal-server-error`; silence
//! would leave a client waiting for a timeout. Errors and results addressed to
//! us are never answered, so two entities can never loop on errors.
//!
//! What is not an IQ request (messages, presences, answers to Satchel's own
//! queries) goes to the [`Delegate`], unread.

use std::sync::Arc;

use jid::{BareJid, Jid};
use minidom::Element;
use tracing::{debug, info, warn, Instrument};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::delegate::Delegate;
use super::{adhoc, disco, http_upload};
use crate::clock::unix_now;
use crate::logging::LoggedJid;
use crate::metrics::metrics;
use crate::slots::{SlotError, SlotService};

/// Answers stanzas addressed to the component, and passes on to `D` those
/// it does not answer itself.
pub struct Router<D> {
    jid: BareJid,
    slots: SlotService,
    delegate: Arc<D>,
}

/// Largest request (in attribute bytes) echoed back in an error reply.
const MAX_ECHOED_ATTRIBUTE_BYTES: usize = 1024;

/// What an IQ request turned into.
type IqOutcome = Result<Option<Element>, (StanzaError, Option<Element>)>;

impl<D: Delegate> Router<D> {
    /// The router of the component `jid`, granting slots with `slots`.
    pub fn new(jid: BareJid, slots: SlotService, delegate: Arc<D>) -> Router<D> {
        Router {
            jid,
            slots,
            delegate,
        }
    }

    /// The link came up: the stanzas to send first.
    pub fn link_up(&self) -> Vec<Element> {
        self.delegate.link_up()
    }

    /// The link went down.
    pub fn link_down(&self) {
        self.delegate.link_down()
    }

    /// Whether `handle` answers `stanza` without waiting on anything: IQ
    /// requests other than commands (slot requests, disco, ping, and the
    /// errors for malformed requests). The link answers these on its reading
    /// task, sparing the hand-offs to a task of their own, which cost far
    /// more than the answer; messages, presences, answers to Satchel's own
    /// queries and commands go to the delegate, which may wait, so they get a
    /// task of their own.
    pub fn answers_at_once(stanza: &Element) -> bool {
        stanza.name() == "iq"
            && matches!(stanza.attr("type"), Some("get" | "set"))
            && !stanza
                .children()
                .any(|payload| payload.is("command", adhoc::NS))
    }

    /// The reply to `stanza`, if it calls for one.
    pub async fn handle(&self, stanza: Element) -> Option<Element> {
        match stanza.name() {
            "iq" => self.handle_iq(stanza).await,
            "message" => self.delegate.handle_message(stanza).await,
            "presence" => {
                self.delegate.handle_presence(&stanza).await;
                None
            }
            other => {
                debug!(name = other, "ignoring unknown top-level element");
                None
            }
        }
    }

    /// The answer to a stanza too large to read: an IQ request still gets one.
    pub fn refuse_oversized(&self, head: &Element) -> Option<Element> {
        if head.name() != "iq" || !matches!(head.attr("type"), Some("get" | "set")) {
            return None;
        }
        let from = head.attr("from")?.parse::<Jid>().ok()?;
        Some(
            Iq::Error {
                from: Some(self.jid.clone().into()),
                to: Some(from),
                id: head.attr("id").unwrap_or_default().to_owned(),
                error: StanzaError::new(
                    ErrorType::Modify,
                    DefinedCondition::PolicyViolation,
                    "en",
                    "The stanza is too large",
                ),
                payload: None,
            }
            .into(),
        )
    }

    async fn handle_iq(&self, iq: Element) -> Option<Element> {
        let id = iq.attr("id").unwrap_or_default().to_owned();
        let kind = iq.attr("type").unwrap_or_default().to_owned();
        if matches!(kind.as_str(), "result" | "error") {
            if !self.delegate.handle_iq_response(&iq).await {
                debug!(%id, "ignoring an answer to nothing we asked");
            }
            return None;
        }
        let Some(from) = iq.attr("from").and_then(|from| from.parse::<Jid>().ok()) else {
            warn!(%id, "IQ without a usable 'from': cannot answer it");
            return None;
        };
        let span = tracing::info_span!("iq", %id, from = %LoggedJid(from.as_str()));
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
            ("get", "query", ns::DISCO_INFO) => match payload.attr("node") {
                // Made for each query: a reload may change the largest upload.
                None => Ok(Some(disco::info(self.slots.max_file_size()).into())),
                Some(adhoc::NS) => Ok(Some(adhoc::node_info(adhoc::NS, None).into())),
                Some(node) => {
                    // Only the commands the asker may run have a node.
                    let listed = self.delegate.command_items(from);
                    let command = listed.iter().find(|command| command.node == node);
                    match command {
                        Some(command) => Ok(Some(adhoc::node_info(node, Some(command)).into())),
                        None => Err((cancel(DefinedCondition::ItemNotFound, "No such node"), None)),
                    }
                }
            },
            ("get", "query", ns::DISCO_ITEMS) => match payload.attr("node") {
                None => Ok(Some(disco::items().into())),
                Some(adhoc::NS) => {
                    let listed = self.delegate.command_items(from);
                    Ok(Some(adhoc::items(&self.jid, &listed).into()))
                }
                Some(_) => Err((cancel(DefinedCondition::ItemNotFound, "No such node"), None)),
            },
            ("set", "command", adhoc::NS) => {
                let request = adhoc::parse(payload).map_err(|error| {
                    info!(%error, "malformed command");
                    (error.to_stanza_error(), None)
                })?;
                let node = request.node.clone();
                match self.delegate.execute_command(from, request).await {
                    Ok(response) => Ok(Some(response.into())),
                    Err(error) => {
                        info!(node = %node.chars().take(64).collect::<String>(), condition = ?error.defined_condition, "command refused");
                        Err((error, None))
                    }
                }
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
        // The XEP's error examples echo the request; a huge one is not worth sending back.
        let attribute_bytes: usize = payload.attrs().iter().map(|(_, value)| value.len()).sum();
        let echo = (attribute_bytes <= MAX_ECHOED_ATTRIBUTE_BYTES
            && payload.children().count() <= 1)
            .then(|| payload.clone());
        let _timer = metrics().slot_timer();
        let request = http_upload::parse_request(payload).map_err(|error| {
            info!(%error, "malformed slot request");
            metrics().slot_refused("bad-request");
            (http_upload::request_error(&error), echo.clone())
        })?;
        let size = request.size;
        // The checks read the metadata database, whose reads are served
        // from its cache: quick enough for the reading task.
        let granted = self.slots.grant(&from.to_bare(), request, unix_now());
        match granted {
            Ok(slot) => {
                info!(file = %slot.id, size, "slot granted");
                metrics().slots_granted.inc();
                Ok(Some(http_upload::slot_result(&slot).into()))
            }
            Err(error) => {
                metrics().slot_refused(error.kind());
                match &error {
                    SlotError::Storage(cause) => warn!(%cause, "slot refused: storage failure"),
                    refusal => info!(reason = %refusal, "slot refused"),
                }
                Err((http_upload::slot_error(&error), echo))
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

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::slots::test_support::TestSlots;
    use crate::xmpp::connection::MAX_STANZA_BYTES;
    use crate::xmpp::stream::{Incoming, StanzaReader};

    /// Stands in for the relay: notes what the router passes on, answers the
    /// message `question` with the message `answer`, and asks the server
    /// `<iq id='hello'/>` when the link comes up.
    #[derive(Default)]
    pub(crate) struct Recorder {
        passed_on: Mutex<Vec<String>>,
    }

    impl Recorder {
        fn note(&self, what: String) {
            self.passed_on.lock().unwrap().push(what);
        }

        fn passed_on(&self) -> Vec<String> {
            self.passed_on.lock().unwrap().clone()
        }
    }

    /// The id of `stanza`, to tell recorded stanzas apart.
    fn id_of(stanza: &Element) -> &str {
        stanza.attr("id").unwrap_or_default()
    }

    impl Delegate for Recorder {
        async fn handle_message(&self, message: Element) -> Option<Element> {
            self.note(format!("message {}", id_of(&message)));
            (id_of(&message) == "question").then(|| {
                "<message xmlns='jabber:component:accept' id='answer'/>"
                    .parse()
                    .unwrap()
            })
        }

        async fn handle_presence(&self, presence: &Element) {
            self.note(format!("presence {}", id_of(presence)));
        }

        async fn handle_iq_response(&self, iq: &Element) -> bool {
            self.note(format!("iq {}", id_of(iq)));
            id_of(iq) == "hello"
        }

        fn link_up(&self) -> Vec<Element> {
            self.note("up".into());
            vec![
                "<iq xmlns='jabber:component:accept' type='get' id='hello'/>"
                    .parse()
                    .unwrap(),
            ]
        }

        fn link_down(&self) {
            self.note("down".into());
        }
    }

    pub(crate) struct Fixture {
        pub(crate) router: Router<Recorder>,
        recorder: Arc<Recorder>,
        _slots: TestSlots,
    }

    /// A router for `upload.example.org`, serving `example.org`, files up to 1000 bytes.
    pub(crate) fn fixture() -> Fixture {
        let slots = TestSlots::new();
        let recorder = Arc::new(Recorder::default());
        Fixture {
            router: Router::new(
                slots.config.component.jid.clone(),
                slots.service.clone(),
                recorder.clone(),
            ),
            recorder,
            _slots: slots,
        }
    }

    async fn answer(xml: &str) -> Option<Element> {
        let stanza: Element = xml.parse().unwrap();
        fixture().router.handle(stanza).await
    }

    fn condition(reply: &Element) -> (String, String) {
        assert_eq!(reply.attr("type"), Some("error"), "{reply:?}");
        let error = reply.get_child("error", ns::DEFAULT_NS).unwrap();
        let condition = error
            .children()
            .find(|c| c.ns() == ns::XMPP_STANZAS && c.name() != "text")
            .unwrap();
        (
            error.attr("type").unwrap().to_owned(),
            condition.name().to_owned(),
        )
    }

    const FROM: &str = "from='alice@example.org/phone' to='upload.example.org'";

    #[tokio::test]
    async fn disco_info_is_answered_to_the_sender() {
        let reply = answer(&format!(
            "<iq xmlns='jabber:component:accept' type='get' id='d1' {FROM}><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await
        .unwrap();
        assert_eq!(reply.attr("type"), Some("result"));
        assert_eq!(reply.attr("id"), Some("d1"));
        assert_eq!(reply.attr("to"), Some("alice@example.org/phone"));
        assert!(reply.has_child("query", ns::DISCO_INFO));
    }

    #[tokio::test]
    async fn ping_gets_an_empty_result() {
        let reply = answer(&format!(
            "<iq xmlns='jabber:component:accept' type='get' id='p1' {FROM}><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await
        .unwrap();
        assert_eq!(reply.attr("type"), Some("result"));
        assert_eq!(reply.children().count(), 0);
    }

    #[tokio::test]
    async fn a_slot_is_granted_with_urls_under_the_public_url() {
        let reply = answer(&format!(
            "<iq xmlns='jabber:component:accept' type='get' id='s1' {FROM}><request xmlns='urn:xmpp:http:upload:0' filename='a b.png' size='10'/></iq>"
        ))
        .await
        .unwrap();
        let slot = reply.get_child("slot", ns::HTTP_UPLOAD).unwrap();
        let put = slot
            .get_child("put", ns::HTTP_UPLOAD)
            .unwrap()
            .attr("url")
            .unwrap();
        let get = slot
            .get_child("get", ns::HTTP_UPLOAD)
            .unwrap()
            .attr("url")
            .unwrap();
        assert!(
            put.starts_with("https://upload.example.org/upload/"),
            "{put}"
        );
        assert!(get.starts_with("https://upload.example.org/file/"), "{get}");
        assert!(get.ends_with("/a%20b.png"), "{get}");
    }

    #[tokio::test]
    async fn iqs_with_no_or_several_children_are_bad_requests() {
        // Prosody answers these itself, in the component's name; ejabberd passes them on.
        let request = "<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'/>";
        for payload in [
            String::new(),
            "<ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/>".to_owned(),
            format!("{request}{request}"),
            format!("{request}<ping xmlns='urn:xmpp:ping'/>"),
        ] {
            let reply = answer(&format!(
                "<iq xmlns='jabber:component:accept' type='get' id='x' {FROM}>{payload}</iq>"
            ))
            .await
            .unwrap();
            assert_eq!(condition(&reply), ("modify".into(), "bad-request".into()));
        }
    }

    #[tokio::test]
    async fn unknown_requests_are_service_unavailable() {
        for (kind, payload) in [
            ("get", "<query xmlns='jabber:iq:version'/>"),
            (
                "set",
                "<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'/>",
            ),
            (
                "set",
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            ),
        ] {
            let reply = answer(&format!(
                "<iq xmlns='jabber:component:accept' type='{kind}' id='u' {FROM}>{payload}</iq>"
            ))
            .await
            .unwrap();
            assert_eq!(
                condition(&reply),
                ("cancel".into(), "service-unavailable".into())
            );
        }
    }

    #[tokio::test]
    async fn bad_types_and_missing_ids_are_bad_requests() {
        for attributes in [
            "type='fetch' id='t'",
            "type='get'",
            "type='get' id=''",
            "id='t'",
        ] {
            let reply = answer(&format!(
                "<iq xmlns='jabber:component:accept' {attributes} {FROM}><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await
            .unwrap();
            assert_eq!(
                condition(&reply),
                ("modify".into(), "bad-request".into()),
                "{attributes}"
            );
        }
    }

    #[tokio::test]
    async fn results_errors_and_unaddressable_iqs_are_never_answered() {
        for stanza in [
            format!("<iq xmlns='jabber:component:accept' type='result' id='r' {FROM}/>"),
            format!("<iq xmlns='jabber:component:accept' type='error' id='r' {FROM}><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"),
            "<iq xmlns='jabber:component:accept' type='get' id='n'><ping xmlns='urn:xmpp:ping'/></iq>".to_owned(),
            "<iq xmlns='jabber:component:accept' type='get' id='n' from='@@@'><ping xmlns='urn:xmpp:ping'/></iq>".to_owned(),
            format!("<message xmlns='jabber:component:accept' {FROM}><body>hi</body></message>"),
            format!("<presence xmlns='jabber:component:accept' {FROM}/>"),
        ] {
            assert_eq!(answer(&stanza).await, None, "{stanza}");
        }
    }

    #[tokio::test]
    async fn what_is_not_an_iq_request_goes_to_the_delegate() {
        let fixture = fixture();
        let router = &fixture.router;
        for stanza in [
            format!("<message xmlns='jabber:component:accept' id='m1' {FROM}><body>hi</body></message>"),
            format!("<presence xmlns='jabber:component:accept' id='p1' {FROM}/>"),
            format!("<iq xmlns='jabber:component:accept' type='result' id='hello' {FROM}/>"),
            format!("<iq xmlns='jabber:component:accept' type='error' id='r1' {FROM}><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"),
            format!("<iq xmlns='jabber:component:accept' type='get' id='q1' {FROM}><ping xmlns='urn:xmpp:ping'/></iq>"),
        ] {
            router.handle(stanza.parse().unwrap()).await;
        }
        assert_eq!(
            fixture.recorder.passed_on(),
            ["message m1", "presence p1", "iq hello", "iq r1"],
            "IQ requests are the router's own"
        );
    }

    #[tokio::test]
    async fn the_delegate_answers_messages_and_speaks_first_on_a_new_link() {
        let fixture = fixture();
        let message = format!("<message xmlns='jabber:component:accept' id='question' {FROM}/>");
        let reply = fixture.router.handle(message.parse().unwrap()).await;
        assert_eq!(reply.as_ref().map(id_of), Some("answer"));
        let first = fixture.router.link_up();
        assert_eq!(first.iter().map(id_of).collect::<Vec<_>>(), ["hello"]);
        fixture.router.link_down();
        assert_eq!(
            fixture.recorder.passed_on(),
            ["message question", "up", "down"]
        );
    }

    #[tokio::test]
    async fn commands_go_to_the_delegate_which_has_none_by_default() {
        let items = answer(&format!(
            "<iq xmlns='jabber:component:accept' type='get' id='c1' {FROM}><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>"
        ))
        .await
        .unwrap();
        assert_eq!(items.attr("type"), Some("result"));
        let query = items.get_child("query", ns::DISCO_ITEMS).unwrap();
        assert_eq!(query.attr("node"), Some(adhoc::NS));
        assert_eq!(query.children().count(), 0);
        let run = answer(&format!(
            "<iq xmlns='jabber:component:accept' type='set' id='c2' {FROM}><command xmlns='http://jabber.org/protocol/commands' node='usage'/></iq>"
        ))
        .await
        .unwrap();
        assert_eq!(condition(&run), ("cancel".into(), "item-not-found".into()));
        let malformed = answer(&format!(
            "<iq xmlns='jabber:component:accept' type='set' id='c3' {FROM}><command xmlns='http://jabber.org/protocol/commands' node='usage' action='boom'/></iq>"
        ))
        .await
        .unwrap();
        assert_eq!(
            condition(&malformed),
            ("modify".into(), "bad-request".into())
        );
        let other_node = answer(&format!(
            "<iq xmlns='jabber:component:accept' type='get' id='c4' {FROM}><query xmlns='http://jabber.org/protocol/disco#items' node='elsewhere'/></iq>"
        ))
        .await
        .unwrap();
        assert_eq!(
            condition(&other_node),
            ("cancel".into(), "item-not-found".into())
        );
    }

    #[tokio::test]
    async fn users_of_other_domains_get_no_slot() {
        let reply = answer(
            "<iq xmlns='jabber:component:accept' type='get' id='o' from='mallory@evil.example/x' to='upload.example.org'><request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'/></iq>",
        )
        .await
        .unwrap();
        assert_eq!(condition(&reply), ("cancel".into(), "not-allowed".into()));
    }

    #[tokio::test]
    async fn huge_attributes_get_a_clear_error() {
        // The link's reader takes attribute values far longer than rxml's
        // default 8 KiB, up to its token limit: the stanza cap, below that,
        // is what bounds them. Requests this large reach the router.
        let huge = MAX_STANZA_BYTES - 1024;
        let fixture = fixture();
        let (name, size) = ("a".repeat(huge), "9".repeat(huge));
        for attributes in [
            format!("filename='{name}' size='1'"),
            format!("filename='a' size='{size}'"),
        ] {
            let stanza = read_as_the_link_does(&format!(
                "<iq type='get' id='h' {FROM}><request xmlns='urn:xmpp:http:upload:0' {attributes}/></iq>"
            ))
            .await;
            let reply = fixture.router.handle(stanza).await.unwrap();
            assert_eq!(condition(&reply), ("modify".into(), "bad-request".into()));
            assert!(
                !reply.has_child("request", ns::HTTP_UPLOAD),
                "a huge request is not echoed"
            );
        }
    }

    /// `stanza` as the link reads it from the server, within its limits.
    async fn read_as_the_link_does(stanza: &str) -> Element {
        let stream = format!(
            "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='s'>{stanza}"
        );
        let mut reader = StanzaReader::new(stream.as_bytes(), MAX_STANZA_BYTES);
        reader.read_header().await.unwrap();
        match reader.next().await.unwrap() {
            Some(Incoming::Stanza(stanza)) => stanza,
            other => panic!("not read whole: {other:?}"),
        }
    }

    #[tokio::test]
    async fn oversized_iq_requests_get_policy_violation() {
        let fixture = fixture();
        let head: Element =
            format!("<iq xmlns='jabber:component:accept' type='set' id='big' {FROM}/>")
                .parse()
                .unwrap();
        let reply = fixture.router.refuse_oversized(&head).unwrap();
        assert_eq!(reply.attr("id"), Some("big"));
        assert_eq!(
            condition(&reply),
            ("modify".into(), "policy-violation".into())
        );
        for quiet in [
            format!("<iq xmlns='jabber:component:accept' type='result' id='r' {FROM}/>"),
            format!("<message xmlns='jabber:component:accept' {FROM}/>"),
            "<iq xmlns='jabber:component:accept' type='get' id='n'/>".to_owned(),
        ] {
            assert_eq!(
                fixture.router.refuse_oversized(&quiet.parse().unwrap()),
                None
            );
        }
    }

    #[tokio::test]
    async fn a_file_over_the_limit_is_not_acceptable() {
        let reply = answer(&format!(
            "<iq xmlns='jabber:component:accept' type='get' id='b' {FROM}><request xmlns='urn:xmpp:http:upload:0' filename='a' size='1001'/></iq>"
        ))
        .await
        .unwrap();
        assert_eq!(
            condition(&reply),
            ("modify".into(), "not-acceptable".into())
        );
        // The request is echoed, as in the XEP's examples.
        assert!(reply.has_child("request", ns::HTTP_UPLOAD));
    }
}
